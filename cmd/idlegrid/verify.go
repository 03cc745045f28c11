package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/node"
	"github.com/idlegrid/idlegrid/internal/verifier"
	"github.com/idlegrid/idlegrid/internal/verify"
)

func newVerifyCmd(a *app) *cobra.Command {
	var (
		gateway, apiKey, backendKind, ollama   string
		rpc, keyFile, dataDir                  string
		models                                 []string
		interval, sampleInterval, caseInterval time.Duration
		caseSize, maxTokens, probationCases    int
		sampledChecks                          int
		budget                                 float64
		dryRun                                 bool
	)
	cmd := &cobra.Command{
		Use:   "verify --gateway URL --api-key KEY",
		Short: "Audit the providers behind a gateway with canaries and post verdicts on the ledger",
		Long: `Run a verifier: send canary requests (greedy, drawn from a realistic prompt
mix) through the gateway's public API with an ordinary API key, learn from each
answer's signed receipt which provider served it with which weights, replay
the answer on a reference model (--backend/--ollama-url: the weights you
vouch for) and, every --case-size canaries of one provider, judge them and
post a verdict transaction signed with --key-file (a registered, staked verifier).
The evidence of every verdict is kept under DATA-DIR/evidence, named by the
hash the verdict carries. A provider (with weights) the verifier has not
judged yet is on probation: it gets --probation-cases cases of canaries back
to back, pinned to it; outside probation providers audited less than the
others get the next canaries. Every --sample-interval the verifier also reads
the gateway's feed of sampled responses (signed with --key-file: only registered
verifiers may) and, when the gateway shares their text, judges them and posts
their verdicts: re-scored on the simulator (--backend sim); on Ollama greedy
ones are replayed like canaries, with the deficits of the provider's tokens
where the reference returns log-probabilities (Ollama 0.12.11 and later), and
sampled ones are checked token by token (--sampled-checks) where it does. Every --case-interval it replays the canary cases other
verifiers opened on the ledger and votes in them: cases are decided by
verifier stake. See docs/verification.md for the statistics.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if gateway == "" || apiKey == "" {
				return errors.New("--gateway and --api-key are required")
			}
			ctx := cmd.Context()
			b, err := node.OpenBackend(ctx, backendKind, ollama, a.log)
			if err != nil {
				return err
			}
			defer b.Close()
			cfg := verifier.Config{Gateway: gateway, APIKey: apiKey, Reference: b.Backend, Models: models, Interval: interval,
				CaseSize: caseSize, MaxTokens: maxTokens, ProbationCases: probationCases, SampledChecks: sampledChecks, Budget: budget, Dir: filepath.Join(dataDir, "evidence"), Logger: a.log,
				OnVerdict: func(p verifier.Posted) {
					state := "PASS"
					if !p.Verdict.Pass {
						state = "FAIL (" + string(p.Verdict.Rule) + ": " + p.Verdict.Reason + ")"
					}
					posted := "posted"
					if dryRun {
						posted = "not posted (--dry-run)"
					}
					if p.Err != "" {
						posted = "NOT posted: " + p.Err
					}
					fmt.Fprintf(a.stdout, "%s provider %s (%s %s): %s; evidence %s, %s\n",
						time.Now().Format(time.TimeOnly), p.Provider, p.Model, p.Digest, state, p.Evidence, posted)
				}}
			if b.Sim != nil {
				cfg.Scorer = verify.SimScorer{Sim: b.Sim}
			}
			if !dryRun {
				if keyFile == "" {
					keyFile = filepath.Join(dataDir, "verifier.key")
				}
				post, l, key, err := verdictPoster(ctx, rpc, keyFile)
				if err != nil {
					return err
				}
				addr := key.Public().Address()
				cfg.Post = post
				// The key also proves to the gateway that a registered
				// verifier reads its sample feed, and names the verifier's
				// own votes among the open cases.
				cfg.Key, cfg.SampleInterval, cfg.NoFeed = key, sampleInterval, sampleInterval <= 0
				if caseInterval > 0 {
					cfg.Cases, cfg.CaseInterval = node.LedgerCases(l), caseInterval
				}
				fmt.Fprintf(a.stdout, "verifier %s posting verdicts to %s\n", addr, rpc)
			}
			v, err := verifier.New(cfg)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "auditing the providers behind %s against %s, a canary every %s, %d per case\n", gateway, b.Description, interval, caseSize)
			return v.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&gateway, "gateway", "", "gateway base URL")
	f.StringVar(&apiKey, "api-key", "", "an API key of the gateway (its account pays for the canaries)")
	f.StringVar(&backendKind, "backend", node.BackendOllama, "reference backend: ollama, sim or auto (not auto by default: judging real models against the simulator would convict honest providers)")
	f.StringVar(&ollama, "ollama-url", node.DefaultOllamaURL(), "reference Ollama base URL (default from OLLAMA_HOST)")
	f.StringSliceVar(&models, "models", nil, "models to verify (default: every model of the reference)")
	f.DurationVar(&interval, "interval", 10*time.Second, "pause between canaries")
	f.IntVar(&caseSize, "case-size", 8, "canaries of one provider judged together")
	f.IntVar(&maxTokens, "max-tokens", 128, "longest canary answer")
	f.IntVar(&probationCases, "probation-cases", 3, "cases of canaries a provider's weights get back to back when the verifier first sees them (-1: none)")
	f.IntVar(&sampledChecks, "sampled-checks", 8, "tokens of a sampled (temperature > 0) response checked, one reference call each")
	f.Float64Var(&budget, "budget", verifier.DefaultBudget, "outside probation, spend on audits (canaries generated and replayed, replays of samples and of others' cases) at most this share of the completion tokens the gateway reports serving; samples beyond it are skipped at random, canaries wait (negative: no budget)")
	f.StringVar(&rpc, "chain-rpc", defaultRPC, "validator RPC URL verdicts are posted to")
	f.StringVar(&dataDir, "data-dir", defaultDataDir(), "directory for the verifier key and the evidence")
	f.StringVar(&keyFile, "key-file", "", "verifier key file (default DATA-DIR/verifier.key); register it with idlegrid ledger register verifier, and stake")
	deprecatedAlias(f, "rpc", "chain-rpc")
	deprecatedAlias(f, "key", "key-file")
	f.BoolVar(&dryRun, "dry-run", false, "judge but post nothing")
	f.DurationVar(&sampleInterval, "sample-interval", 5*time.Second, "read the gateway's sample feed this often, signed with --key-file, and judge shared samples (0: canaries only)")
	f.DurationVar(&caseInterval, "case-interval", 5*time.Second, "look for open canary cases of other verifiers this often, replay them and vote (0: never)")
	return cmd
}

// verdictPoster signs verdicts with the key in keyFile, after checking on
// the ledger that it is a registered verifier.
func verdictPoster(ctx context.Context, rpc, keyFile string) (func(context.Context, ledger.Tx) error, chainrpc.StateReader, keys.PrivateKey, error) {
	key, err := keys.Load(keyFile)
	if err != nil {
		return nil, chainrpc.StateReader{}, keys.PrivateKey{}, fmt.Errorf("verifier key: %w", err)
	}
	c, err := chainrpc.NewHTTPClient(rpc)
	if err != nil {
		return nil, chainrpc.StateReader{}, keys.PrivateKey{}, err
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err := c.Status(sctx)
	if err != nil {
		return nil, chainrpc.StateReader{}, keys.PrivateKey{}, fmt.Errorf("ledger at %s: %w", rpc, err)
	}
	addr := key.Public().Address()
	l := chainrpc.StateReader{Client: c}
	acct, err := l.Account(sctx, addr)
	if err != nil || !acct.Has(ledger.RoleVerifier) {
		return nil, chainrpc.StateReader{}, keys.PrivateKey{}, fmt.Errorf("%s is not a registered verifier on the ledger (%v): `idlegrid ledger --key-file %s register verifier` and stake first", addr, err, keyFile)
	}
	signer := chainrpc.NewSigner(c, key, st.ChainID)
	return func(ctx context.Context, tx ledger.Tx) error {
		res, err := signer.Send(ctx, tx)
		if err != nil {
			return err
		}
		return res.Err()
	}, l, key, nil
}
