package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/gateway"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/limits"
	"github.com/idlegrid/idlegrid/internal/link"
	"github.com/idlegrid/idlegrid/internal/store"
	"github.com/idlegrid/idlegrid/internal/verifier"
	"github.com/idlegrid/idlegrid/internal/verifier/planter"
	"github.com/idlegrid/idlegrid/internal/verify"
)

// UpConfig configures `idlegrid up`.
type UpConfig struct {
	Addr      string
	DataDir   string
	ChainID   string
	Backend   string // auto, ollama, sim
	OllamaURL string
	// DevAPIKey fixes the dev API key (IDLEGRID_DEV_API_KEY); empty: one
	// is created on first start and printed once.
	DevAPIKey string
	Slots     int
	// ReceiptSync: see GatewayConfig.
	ReceiptSync string
	// ChainRPCAddr is where the validator serves its RPC (`idlegrid ledger
	// --chain-rpc`); empty picks a free loopback port.
	ChainRPCAddr string
	// ChainMetricsAddr, when set, serves the validator's Prometheus
	// metrics there.
	ChainMetricsAddr string
	// BackendOverride, when set, is used instead of resolving Backend
	// (tests pass a simulator they control; the network closes it).
	BackendOverride *LocalBackend
	Link            link.Options
	Gateway         gateway.Config
	// Limits bound each API key and client address (zero: off, the
	// default for a local network).
	Limits limits.Config
	// EditGenesis, when set, adjusts the dev chain's genesis (tests); it
	// applies only when the chain is created.
	EditGenesis func(*ledger.Genesis)
	// VerifyEvery, when positive, runs a verifier that sends a canary
	// through the gateway that often, replays it on the local backend and
	// posts verdicts on the ledger (a demonstration: here the reference is
	// the provider's own backend).
	VerifyEvery time.Duration
	// VerifyBudget is the dev verifier's budget: the share of the served
	// completion tokens it spends on audits outside probation
	// (verifier.Config.Budget; 0: its default, negative: none).
	VerifyBudget float64
	// PlantEvery, when positive and the backend is the simulator (whose
	// log-probabilities label the samples), plants a known sample into
	// the gateway's sample feed that often, signed with the local
	// provider's key (see planter.Planter).
	PlantEvery time.Duration
	Version    string
	Logger     *slog.Logger

	// KeylessLoopback serves requests without an API key from loopback
	// clients, billed to the dev account (gateway.Config.Keyless), so
	// that the ollama CLI and local apps work without one; the CLI's
	// --keyless-loopback defaults to true.
	KeylessLoopback bool

	// NoProvider starts no local provider agent (nor its backend): the
	// network waits for providers to dial in, e.g. a browser on
	// /contribute. The verifier needs the local backend, so VerifyEvery
	// must be zero; nothing is planted (PlantEvery is ignored).
	NoProvider bool
}

// DevUpConfig is `idlegrid up`'s configuration before flags: the local
// provider's slots, the dev verifier's canary interval and the gateway's
// sample feed (a share of responses, with their text: the consumer, the
// gateway and the verifier are all the owner's). Benches that measure
// what `up` does start from it.
func DevUpConfig() UpConfig {
	return UpConfig{
		Slots:        4,
		VerifyEvery:  30 * time.Second,
		VerifyBudget: verifier.DefaultBudget,
		PlantEvery:   10 * time.Minute,
		Gateway: gateway.Config{
			DefaultMaxTokens: 1024,
			MaxBodyBytes:     8 << 20,
			SettleBatchSize:  1000,
			SettleInterval:   2 * time.Second,
			KeepSettled:      30 * 24 * time.Hour,
			Samples:          gateway.SampleConfig{Share: 0.01, ShareText: true},
		},
	}
}

// Network is everything `up` runs.
type Network struct {
	Validator *Validator
	Gateway   *Gateway
	Provider  *Provider
	Backend   *LocalBackend
	// Verifier audits the provider when UpConfig.VerifyEvery is set.
	Verifier     *verifier.Verifier
	stopVerifier context.CancelFunc
	verifierDone chan struct{}
	// Account is the dev consumer account the API key bills.
	Account keys.Address
	// APIKey is the dev key when it was created or fixed by this start.
	APIKey string
	// Keyless: loopback clients need no API key (UpConfig.KeylessLoopback).
	Keyless bool
}

// StartUp starts the embedded network: a single-validator ledger, the
// gateway settling on it, a local provider (Ollama or the simulator) and the
// funded dev account with its API key.
func StartUp(ctx context.Context, cfg UpConfig) (*Network, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ChainID == "" {
		cfg.ChainID = DefaultChainID
	}
	if cfg.NoProvider && cfg.VerifyEvery > 0 {
		return nil, errors.New("up: the verifier replays canaries on the local provider's backend; it cannot run without a provider")
	}
	n := &Network{}
	fail := func(err error) (*Network, error) {
		n.Shutdown(context.Background())
		return nil, err
	}
	var ids [4]keys.PrivateKey
	for i, name := range []string{"dev-account.key", "gateway.key", "provider.key", "verifier.key"} {
		k, _, err := keys.LoadOrCreate(filepath.Join(cfg.DataDir, name))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		ids[i] = k
	}
	dev, gwKey, provKey, verKey := ids[0], ids[1], ids[2], ids[3]
	n.Account = dev.Public().Address()
	home := filepath.Join(cfg.DataDir, "chain")
	genesis := DevGenesis(dev.Public(), gwKey.Public(), provKey.Public(), verKey.Public())
	if cfg.EditGenesis != nil {
		cfg.EditGenesis(&genesis)
	}
	if err := initDevChain(home, cfg.ChainID, genesis); err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	rpc := "tcp://127.0.0.1:0"
	if cfg.ChainRPCAddr != "" {
		rpc = "tcp://" + strings.TrimPrefix(strings.TrimPrefix(cfg.ChainRPCAddr, "tcp://"), "http://")
	}
	v, err := StartValidator(ctx, home, rpc, cfg.ChainMetricsAddr, cfg.Logger.With("role", "validator"))
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	n.Validator = v
	if !cfg.NoProvider {
		n.Backend = cfg.BackendOverride
		if n.Backend == nil {
			if n.Backend, err = OpenBackend(ctx, cfg.Backend, cfg.OllamaURL, cfg.Logger); err != nil {
				return fail(err)
			}
		}
	}
	gcfg := cfg.Gateway
	gcfg.Ledger = chainrpc.NewSigner(v.Node.Client(), gwKey, cfg.ChainID)
	if cfg.KeylessLoopback {
		gcfg.Keyless, gcfg.KeylessAccount, n.Keyless = gateway.LoopbackPrefixes, n.Account, true
	}
	var plant planter.Config
	if cfg.PlantEvery > 0 && n.Backend != nil && n.Backend.Sim != nil {
		plant = planter.Config{Every: cfg.PlantEvery, Reference: n.Backend.Sim, Scorer: verify.SimScorer{Sim: n.Backend.Sim}, Provider: provKey}
	}
	// ChainRPC serves the web UI's explorer; the gateway settles through gcfg.Ledger.
	gw, err := StartGateway(ctx, GatewayConfig{Addr: cfg.Addr, DataDir: cfg.DataDir, ChainID: cfg.ChainID, Link: cfg.Link, ReceiptSync: cfg.ReceiptSync, Limits: cfg.Limits,
		ChainRPC: []string{v.RPC()}, Gateway: gcfg, Plant: plant, Version: cfg.Version, Logger: cfg.Logger.With("role", "gateway")})
	if err != nil {
		return fail(err)
	}
	n.Gateway = gw
	if n.APIKey, err = devAPIKey(ctx, gw.Store, cfg.DevAPIKey, n.Account); err != nil {
		return fail(err)
	}
	if cfg.NoProvider {
		return n, nil
	}
	n.Provider, err = StartProvider(ProviderConfig{Gateway: gw.URL(), KeyFile: filepath.Join(cfg.DataDir, "provider.key"),
		Backend: n.Backend, Slots: cfg.Slots, Link: cfg.Link, Version: cfg.Version, Logger: cfg.Logger.With("role", "provider")})
	if err != nil {
		return fail(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := n.Provider.WaitConnected(wctx); err != nil {
		return fail(err)
	}
	if cfg.VerifyEvery > 0 {
		if err := n.startVerifier(ctx, cfg, verKey); err != nil {
			return fail(err)
		}
	}
	return n, nil
}

// devAPIKey makes sure the dev account has an API key: the fixed one when
// given, a new one on first start, otherwise none is created (it was shown
// at its creation and only its hash is stored).
func devAPIKey(ctx context.Context, st *store.Store, fixed string, account keys.Address) (string, error) {
	if fixed != "" {
		if _, err := st.EnsureAPIKey(ctx, fixed, "dev", account); err != nil {
			return "", fmt.Errorf("dev API key: %w", err)
		}
		return fixed, nil
	}
	existing, err := st.ListAPIKeys(ctx)
	if err != nil {
		return "", err
	}
	for _, k := range existing {
		if k.Account == account && k.RevokedAt.IsZero() {
			return "", nil
		}
	}
	secret, _, err := st.CreateAPIKey(ctx, "dev", account)
	return secret, err
}

// Shutdown stops the network: consumers' in-flight requests get until ctx
// ends to finish, then the provider and backend stop.
func (n *Network) Shutdown(ctx context.Context) error {
	var errs []error
	if n.stopVerifier != nil {
		n.stopVerifier()
		<-n.verifierDone
	}
	if n.Gateway != nil {
		errs = append(errs, n.Gateway.Drain(ctx))
	}
	// The provider goes before the hub closes, so it does not see a lost
	// gateway and try to reconnect.
	if n.Provider != nil {
		errs = append(errs, n.Provider.Stop())
	}
	if n.Gateway != nil {
		errs = append(errs, n.Gateway.Close())
	}
	if n.Backend != nil {
		n.Backend.Close()
	}
	if n.Validator != nil {
		errs = append(errs, n.Validator.Stop())
	}
	return errors.Join(errs...)
}

// startVerifier runs the dev verifier: its own API key (billed to its
// account, funded at genesis), canaries replayed on the local backend,
// verdicts posted with its key, evidence under DATA-DIR/evidence.
func (n *Network) startVerifier(ctx context.Context, cfg UpConfig, key keys.PrivateKey) error {
	h := sha256.Sum256(append([]byte("idlegrid/verifier-api-key\n"), key.Seed()...))
	secret := "ig-verifier-" + hex.EncodeToString(h[:16])
	if _, err := n.Gateway.Store.EnsureAPIKey(ctx, secret, "dev verifier", key.Public().Address()); err != nil {
		return fmt.Errorf("verifier API key: %w", err)
	}
	signer := chainrpc.NewSigner(n.Validator.Node.Client(), key, cfg.ChainID)
	log := cfg.Logger.With("role", "verifier")
	var scorer verify.Scorer // sampled responses are re-scored on the simulator only
	if n.Backend.Sim != nil {
		scorer = verify.SimScorer{Sim: n.Backend.Sim}
	}
	v, err := verifier.New(verifier.Config{
		Gateway: n.Gateway.URL(), APIKey: secret, Reference: n.Backend.Backend, Dir: filepath.Join(cfg.DataDir, "evidence"),
		Interval: cfg.VerifyEvery, Logger: log, Key: key, Scorer: scorer, Cases: LedgerCases(chainrpc.StateReader{Client: n.Validator.Node.Client()}),
		// New weights get the cases that end the gateway's probation back
		// to back (both default to gateway.DefaultProbationCases).
		ProbationCases: cfg.Gateway.ProbationCases,
		Budget:         cfg.VerifyBudget,
		Post: func(ctx context.Context, tx ledger.Tx) error {
			res, err := signer.Send(ctx, tx)
			if err != nil {
				return err
			}
			return res.Err()
		},
	})
	if err != nil {
		return err
	}
	vctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	n.Verifier, n.stopVerifier, n.verifierDone = v, cancel, make(chan struct{})
	go func() {
		defer close(n.verifierDone)
		v.Run(vctx)
	}()
	return nil
}

// LedgerCases lists a ledger's open cases for a verifier (Config.Cases).
func LedgerCases(l chainrpc.StateReader) func(context.Context) ([]verifier.OpenCase, error) {
	return func(ctx context.Context) ([]verifier.OpenCase, error) {
		cs, err := l.OpenCases(ctx)
		if err != nil {
			return nil, err
		}
		out := make([]verifier.OpenCase, len(cs))
		for i, c := range cs {
			out[i] = verifier.OpenCase{Evidence: c.Evidence, Case: c.Case, Opening: c.Opening}
		}
		return out, nil
	}
}

// PrintBanner tells the person who ran `up` how to use the network.
func (n *Network) PrintBanner(w io.Writer, dataDir string) {
	url := n.Gateway.URL()
	fmt.Fprintf(w, "\nidlegrid is up.\n\n")
	fmt.Fprintf(w, "  OpenAI API base URL:  %s/v1\n", url)
	fmt.Fprintf(w, "  Ollama API base URL:  %s\n", url)
	fmt.Fprintf(w, "  Dashboard:            %s/ui/\n", url)
	fmt.Fprintf(w, "  Provide from a tab:   %s/contribute\n", url)
	if n.APIKey != "" {
		fmt.Fprintf(w, "  API key:              %s\n", n.APIKey)
	} else {
		fmt.Fprintf(w, "  API key:              created on first start (shown once); make another with\n")
		fmt.Fprintf(w, "                        idlegrid keys create --data-dir %s\n", dataDir)
	}
	fmt.Fprintf(w, "  Dev account:          %s (funded on the local ledger)\n", n.Account)
	if n.Keyless {
		fmt.Fprintf(w, "  Keyless access:       on for loopback clients, billed to the dev account (--keyless-loopback=false turns it off)\n")
	} else {
		fmt.Fprintf(w, "  Keyless access:       off: every request needs an API key\n")
	}
	fmt.Fprintf(w, "  Ledger RPC:           %s (idlegrid ledger balance --chain-rpc %s)\n", n.Validator.RPC(), n.Validator.RPC())
	fmt.Fprintf(w, "  Provider:             %s, serving %s\n", n.Provider.Key, n.Backend.Description)
	fmt.Fprintf(w, "  Data directory:       %s\n\n", dataDir)
	fmt.Fprintf(w, "Try:\n  curl %s/v1/chat/completions -H 'Authorization: Bearer <API key>' \\\n", url)
	fmt.Fprintf(w, "    -H 'Content-Type: application/json' -d '{\"model\":\"<model from /v1/models>\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}'\n\n")
	fmt.Fprintf(w, "Press Ctrl-C to stop.\n")
}
