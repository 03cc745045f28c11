package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/node"
	"github.com/idlegrid/idlegrid/internal/onboard"
	"github.com/idlegrid/idlegrid/internal/provider"
)

// provideInitArgs are the flags of `idlegrid provide init`.
type provideInitArgs struct {
	gateway            string
	backend, ollamaURL string
	models             []string
	runs, maxTokens    int
	dataDir, keyFile   string
	rpc                string
	stake              string
	noLedger           bool
}

// newProvideInitCmd is the guided onboarding: hardware, models, a
// benchmark, a suggested price, and registration with stake on the ledger.
func newProvideInitCmd(a *app) *cobra.Command {
	opts := &provideInitArgs{}
	cmd := &cobra.Command{
		Use:   "init --gateway URL",
		Short: "Set this machine up as a provider: hardware, models, benchmark, price, ledger registration and stake",
		Long: `A guided start in one command:

 1. detect the hardware (CPU, memory, GPUs via nvidia-smi);
 2. check that the model server has the models (--models, default all);
 3. benchmark each model (time to first token, tokens per second);
 4. suggest prices from what the network pays on --gateway and the
    measured speed;
 5. create the provider key (DATA-DIR/provider.key), register it as a
    provider on the ledger (--chain-rpc) and stake --stake (default the chain's
    minimum), unless --no-ledger;
 6. print the ` + "`idlegrid provide`" + ` command that starts serving.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runProvideInit(cmd.Context(), a, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.gateway, "gateway", "", "gateway base URL, for the network's prices")
	f.StringVar(&opts.backend, "backend", node.BackendOllama, "model backend: ollama, sim or auto (not auto by default: the benchmark and prices are for the Ollama you will serve)")
	f.StringVar(&opts.ollamaURL, "ollama-url", node.DefaultOllamaURL(), "Ollama base URL (default from OLLAMA_HOST)")
	f.StringSliceVar(&opts.models, "models", nil, "models to offer (default: all local models)")
	f.IntVar(&opts.runs, "runs", 5, "benchmark generations per model")
	f.IntVar(&opts.maxTokens, "max-tokens", 64, "tokens per benchmark generation")
	f.StringVar(&opts.dataDir, "data-dir", defaultDataDir(), "directory for the provider key")
	f.StringVar(&opts.keyFile, "key-file", "", "provider key file (default DATA-DIR/provider.key)")
	f.StringVar(&opts.rpc, "chain-rpc", defaultRPC, "validator RPC URL")
	deprecatedAlias(f, "rpc", "chain-rpc")
	f.StringVar(&opts.stake, "stake", "", "tokens to stake (default: the chain's minimum provider stake)")
	f.BoolVar(&opts.noLedger, "no-ledger", false, "skip registration and stake")
	return cmd
}

// runProvideInit walks through the six steps, printing each.
func runProvideInit(ctx context.Context, a *app, opts *provideInitArgs) error {
	out := a.stdout
	fmt.Fprintln(out, "1. Hardware")
	hw := onboard.DetectHardware(ctx, "")
	fmt.Fprint(out, indent(onboard.DescribeHardware(hw)))

	fmt.Fprintln(out, "2. Models")
	b, err := node.OpenBackend(ctx, opts.backend, opts.ollamaURL, a.log)
	if err != nil {
		return err
	}
	defer b.Close()
	fmt.Fprintf(out, "   backend %s\n", b.Description)
	have, err := onboard.CheckModels(ctx, b.Backend, opts.models)
	if err != nil {
		return err
	}
	for _, m := range have {
		fmt.Fprintf(out, "   %s (%s)\n", m.Name, modelIDs(m))
	}

	fmt.Fprintln(out, "3. Benchmark")
	var results []onboard.BenchResult
	for _, m := range have {
		bar := progressbar.NewOptions(opts.runs, progressbar.OptionSetWriter(a.stderr), progressbar.OptionSetDescription("   "+m.Name),
			progressbar.OptionShowCount(), progressbar.OptionClearOnFinish())
		res, err := onboard.Benchmark(ctx, b.Backend, m.Name, opts.runs, opts.maxTokens, func(int) { bar.Add(1) })
		bar.Finish()
		if err != nil {
			return err
		}
		results = append(results, res)
		fmt.Fprintf(out, "   %-24s first token %6s   %7.1f tokens/s delivered\n", m.Name, res.FirstToken.Round(time.Millisecond), res.TokensPerSecond)
	}

	fmt.Fprintln(out, "4. Prices")
	var market map[string]onboard.Market
	if opts.gateway != "" {
		if market, err = onboard.FetchMarket(ctx, opts.gateway, nil); err != nil {
			fmt.Fprintf(out, "   could not read the network's prices (%v): defaults\n", err)
		}
	}
	priceIn, priceOut := money.Amount(0), money.Amount(0)
	for _, res := range results {
		var m *onboard.Market
		if mk, ok := market[res.Model]; ok {
			m = &mk
		}
		s := onboard.SuggestPrice(m, res, provider.DefaultPricePrompt, provider.DefaultPriceCompletion)
		fmt.Fprintf(out, "   %-24s %s in, %s out per million tokens: %s\n", res.Model, s.Prompt, s.Completion, s.Why)
		// One price per agent: the highest suggestion, so no model
		// is offered below what the network pays for it.
		priceIn, priceOut = max(priceIn, s.Prompt), max(priceOut, s.Completion)
	}

	fmt.Fprintln(out, "5. Ledger")
	keyFile := opts.keyFile
	if keyFile == "" {
		keyFile = filepath.Join(opts.dataDir, "provider.key")
	}
	key, created, err := keys.LoadOrCreate(keyFile)
	if err != nil {
		return fmt.Errorf("provider key: %w", err)
	}
	verb := "using"
	if created {
		verb = "created"
	}
	fmt.Fprintf(out, "   %s key %s: provider %s, ledger address %s\n", verb, keyFile, key.Public(), key.Public().Address())
	if opts.noLedger {
		fmt.Fprintln(out, "   skipped (--no-ledger)")
	} else if err := registerProvider(ctx, a, opts.rpc, key, opts.stake); err != nil {
		return err
	}

	fmt.Fprintln(out, "6. Start serving")
	g := opts.gateway
	if g == "" {
		g = "URL"
	}
	fmt.Fprintf(out, "   idlegrid provide --gateway %s --key-file %s --price-in %s --price-out %s\n", g, keyFile, priceIn, priceOut)
	return nil
}

// registerProvider registers key as a provider and stakes up to the
// amount asked, saying what is missing when the account cannot pay.
func registerProvider(ctx context.Context, a *app, rpc string, key keys.PrivateKey, stakeFlag string) error {
	out := a.stdout
	c, err := chainrpc.NewHTTPClient(rpc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	st, err := c.Status(ctx)
	if err != nil {
		return fmt.Errorf("ledger at %s: %w (--chain-rpc, or --no-ledger to skip)", rpc, err)
	}
	l := chainrpc.StateReader{Client: c}
	params, err := l.Params(ctx)
	if err != nil {
		return err
	}
	want := params.MinProviderStake
	if stakeFlag != "" {
		if want, err = money.Parse(stakeFlag); err != nil {
			return fmt.Errorf("--stake: %w", err)
		}
	}
	addr := key.Public().Address()
	acct, err := l.Account(ctx, addr)
	if err != nil && !errors.Is(err, chainrpc.ErrNotFound) {
		return err
	}
	if acct.Has(ledger.RoleProvider) && acct.Stake >= want {
		fmt.Fprintf(out, "   already registered, staked %s (minimum %s)\n", acct.Stake, params.MinProviderStake)
		return nil
	}
	need := want - min(want, acct.Stake)
	if errors.Is(err, chainrpc.ErrNotFound) || acct.Balance < need {
		return fmt.Errorf("the account %s holds %s and needs %s to stake: send it tokens first (`idlegrid ledger send %s %s` from a funded key), then run this again",
			addr, acct.Balance, need, addr, need)
	}
	signer := chainrpc.NewSigner(c, key, st.ChainID)
	if !acct.Has(ledger.RoleProvider) {
		res, err := signer.Send(ctx, ledger.Tx{Kind: ledger.KindRegister, Role: ledger.RoleProvider, Info: "idlegrid provide"})
		if err == nil {
			err = res.Err()
		}
		if err != nil {
			return fmt.Errorf("register: %w", err)
		}
		fmt.Fprintf(out, "   registered as a provider at height %d\n", res.Height)
	}
	if need > 0 {
		res, err := signer.Send(ctx, ledger.Tx{Kind: ledger.KindStake, Amount: need})
		if err == nil {
			err = res.Err()
		}
		if err != nil {
			return fmt.Errorf("stake: %w", err)
		}
		fmt.Fprintf(out, "   staked %s at height %d (slashable if verification convicts this provider)\n", need, res.Height)
	}
	return nil
}

// modelIDs names a model's identity digest (what receipts carry and
// verifiers look up) and Ollama's own digest (/api/tags) beside it, which
// may differ between machines with the same weights.
func modelIDs(m backend.Model) string {
	s := "identity " + m.Digest
	if m.BackendDigest != "" && m.BackendDigest != m.Digest {
		s += ", Ollama digest " + m.BackendDigest
	}
	if m.ParameterSize != "" {
		s += ", " + m.ParameterSize
	}
	return s
}

func indent(s string) string {
	var out []byte
	start := true
	for i := 0; i < len(s); i++ {
		if start {
			out = append(out, "   "...)
		}
		out = append(out, s[i])
		start = s[i] == '\n'
	}
	return string(out)
}
