package main

import (
	"context"
	"errors"
	"fmt"
	"io"
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

// verifyArgs are the flags of `idlegrid verify`.
type verifyArgs struct {
	gateway, apiKey    string
	backend, ollamaURL string
	models             []string
	interval           time.Duration
	caseSize           int
	maxTokens          int
	probationCases     int
	sampledChecks      int
	budget             float64
	canaryFloor        time.Duration
	rpc                string
	dataDir, keyFile   string
	dryRun             bool
	sampleInterval     time.Duration
	caseInterval       time.Duration
}

func newVerifyCmd(a *app) *cobra.Command {
	opts := &verifyArgs{}
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
			return runVerify(cmd.Context(), a, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.gateway, "gateway", "", "gateway base URL")
	f.StringVar(&opts.apiKey, "api-key", "", "an API key of the gateway (its account pays for the canaries)")
	f.StringVar(&opts.backend, "backend", node.BackendOllama, "reference backend: ollama, sim or auto (not auto by default: judging real models against the simulator would convict honest providers)")
	f.StringVar(&opts.ollamaURL, "ollama-url", node.DefaultOllamaURL(), "reference Ollama base URL (default from OLLAMA_HOST)")
	f.StringSliceVar(&opts.models, "models", nil, "models to verify (default: every model of the reference)")
	f.DurationVar(&opts.interval, "interval", 10*time.Second, "pause between canaries")
	f.IntVar(&opts.caseSize, "case-size", 8, "canaries of one provider judged together")
	f.IntVar(&opts.maxTokens, "max-tokens", 128, "longest canary answer")
	f.IntVar(&opts.probationCases, "probation-cases", 3, "cases of canaries a provider's weights get back to back when the verifier first sees them (-1: none)")
	f.IntVar(&opts.sampledChecks, "sampled-checks", 8, "tokens of a sampled (temperature > 0) response checked, one reference call each")
	f.DurationVar(&opts.canaryFloor, "canary-floor", verifier.DefaultCanaryFloor, "the longest a periodic canary waits for the budget: a gateway that under-reports what it served cannot stop the audits")
	f.Float64Var(&opts.budget, "budget", verifier.DefaultBudget, "outside probation, spend on audits (canaries generated and replayed, replays of samples and of others' cases) at most this share of the completion tokens the gateway reports serving; samples beyond it are skipped at random, canaries wait (negative: no budget)")
	f.StringVar(&opts.rpc, "chain-rpc", defaultRPC, "validator RPC URL verdicts are posted to")
	f.StringVar(&opts.dataDir, "data-dir", defaultDataDir(), "directory for the verifier key and the evidence")
	f.StringVar(&opts.keyFile, "key-file", "", "verifier key file (default DATA-DIR/verifier.key); register it with idlegrid ledger register verifier, and stake")
	deprecatedAlias(f, "rpc", "chain-rpc")
	deprecatedAlias(f, "key", "key-file")
	f.BoolVar(&opts.dryRun, "dry-run", false, "judge but post nothing")
	f.DurationVar(&opts.sampleInterval, "sample-interval", 5*time.Second, "read the gateway's sample feed this often, signed with --key-file, and judge shared samples (0: canaries only)")
	f.DurationVar(&opts.caseInterval, "case-interval", 5*time.Second, "look for open canary cases of other verifiers this often, replay them and vote (0: never)")
	return cmd
}

// runVerify audits the providers behind --gateway until ctx ends.
func runVerify(ctx context.Context, a *app, opts *verifyArgs) error {
	if opts.gateway == "" || opts.apiKey == "" {
		return errors.New("--gateway and --api-key are required")
	}
	b, err := node.OpenBackend(ctx, opts.backend, opts.ollamaURL, a.log)
	if err != nil {
		return err
	}
	defer b.Close()
	cfg := verifier.Config{Gateway: opts.gateway, APIKey: opts.apiKey, Reference: b.Backend, Models: opts.models, Interval: opts.interval,
		CaseSize: opts.caseSize, MaxTokens: opts.maxTokens, ProbationCases: opts.probationCases, SampledChecks: opts.sampledChecks, Budget: opts.budget, CanaryFloor: opts.canaryFloor, Dir: filepath.Join(opts.dataDir, "evidence"), Logger: a.log,
		OnVerdict: func(p verifier.Posted) { printVerdict(a.stdout, p, opts.dryRun) }}
	if b.Sim != nil {
		cfg.Scorer = verify.SimScorer{Sim: b.Sim}
	}
	if !opts.dryRun {
		keyFile := opts.keyFile
		if keyFile == "" {
			keyFile = filepath.Join(opts.dataDir, "verifier.key")
		}
		post, l, key, err := verdictPoster(ctx, opts.rpc, keyFile)
		if err != nil {
			return err
		}
		addr := key.Public().Address()
		cfg.Post = post
		// The key also proves to the gateway that a registered
		// verifier reads its sample feed, and names the verifier's
		// own votes among the open cases.
		cfg.Key, cfg.SampleInterval, cfg.NoFeed = key, opts.sampleInterval, opts.sampleInterval <= 0
		if opts.caseInterval > 0 {
			cfg.Cases, cfg.CaseInterval = node.LedgerCases(l), opts.caseInterval
		}
		fmt.Fprintf(a.stdout, "verifier %s posting verdicts to %s\n", addr, opts.rpc)
	}
	v, err := verifier.New(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "auditing the providers behind %s against %s, a canary every %s, %d per case\n", opts.gateway, b.Description, opts.interval, opts.caseSize)
	return v.Run(ctx)
}

// printVerdict prints one verdict of the verifier and whether it went to
// the ledger.
func printVerdict(w io.Writer, p verifier.Posted, dryRun bool) {
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
	fmt.Fprintf(w, "%s provider %s (%s %s): %s; evidence %s, %s\n",
		time.Now().Format(time.TimeOnly), p.Provider, p.Model, p.Digest, state, p.Evidence, posted)
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
