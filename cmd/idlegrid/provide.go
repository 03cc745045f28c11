package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/node"
	"github.com/idlegrid/idlegrid/internal/provider"
)

// provideArgs are the flags of `idlegrid provide`: most set the agent's
// configuration directly; the rest are parsed by runProvide.
type provideArgs struct {
	cfg                node.ProviderConfig
	backend, ollamaURL string
	dataDir            string
	priceIn, priceOut  string
	gatewayKey         string
	idle               node.IdleConfig
	noControl          bool
}

func newProvideCmd(a *app) *cobra.Command {
	opts := &provideArgs{}
	cfg, idle := &opts.cfg, &opts.idle
	cmd := &cobra.Command{
		Use:   "provide --gateway URL",
		Short: "Sell this machine's idle model capacity through a gateway",
		Long: `Run a provider agent: it dials out to the gateway (no open port needed),
advertises the models of the local Ollama with their digests, serves jobs and
signs a receipt for each. The key is created on first run in the data
directory (mode 0600).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runProvide(cmd.Context(), a, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Gateway, "gateway", "", "gateway base URL, e.g. https://gateway.example:8420")
	f.StringVar(&opts.backend, "backend", node.BackendOllama, "model backend: ollama, sim or auto (not auto by default: a provider that meant to serve its Ollama must not quietly serve the simulator)")
	f.StringVar(&opts.ollamaURL, "ollama-url", node.DefaultOllamaURL(), "Ollama base URL (default from OLLAMA_HOST)")
	f.StringSliceVar(&cfg.Models, "models", nil, "only offer these models (default: all local models)")
	f.IntVar(&cfg.Slots, "slots", 4, "jobs to run at once")
	f.StringVar(&opts.dataDir, "data-dir", defaultDataDir(), "directory for the provider key")
	f.StringVar(&cfg.KeyFile, "key-file", "", "provider key file (default DATA-DIR/provider.key)")
	f.StringVar(&opts.priceIn, "price-in", provider.DefaultPricePrompt.String(), "price floor per million prompt tokens, in tokens")
	f.StringVar(&cfg.ExpectChainID, "chain-id", "", "refuse a gateway on another chain (default: accept any)")
	f.StringVar(&opts.gatewayKey, "gateway-key", "", "refuse a gateway with another key, hex (default: accept any)")
	f.StringVar(&opts.priceOut, "price-out", provider.DefaultPriceCompletion.String(), "price floor per million completion tokens, in tokens")
	f.BoolVar(&idle.GPU, "idle-gpu", true, "pause while another program uses the GPU (nvidia-smi; skipped when absent)")
	f.IntVar(&idle.GPUUtilization, "gpu-busy-percent", 30, "GPU utilization that means the owner uses it, while no job of ours runs (0: off)")
	f.IntVar(&idle.GPUMemoryMiB, "gpu-busy-mib", 256, "GPU memory another program must use to count as using the GPU")
	f.Float64Var(&idle.CPULoad, "cpu-busy-load", 0, "pause while the 1-minute load per core is at least this and no job of ours runs (0: off; the load average lags our own jobs)")
	f.StringVar(&idle.Hours, "hours", "", `serve only during these local hours, e.g. "22:00-08:00,12:00-13:00" (default: any time)`)
	f.BoolVar(&idle.Battery, "idle-battery", true, "pause while the machine runs on battery")
	f.DurationVar(&idle.Interval, "idle-interval", 5*time.Second, "how often to check whether the machine is in use")
	f.DurationVar(&idle.ResumeAfter, "resume-after", time.Minute, "how long the machine must stay idle before serving resumes")
	f.StringVar(&cfg.ControlAddr, "control-addr", node.DefaultControlAddr, "loopback address of the owner's control endpoint (status, pause, resume)")
	f.BoolVar(&opts.noControl, "no-control", false, "do not serve the control endpoint")
	cmd.AddCommand(
		newProvideControlCmd(a, "status", "Show the running provider: connection, pause state and why, jobs and tokens served", 0, controlStatus),
		newProvideControlCmd(a, "pause [REASON]", "Stop taking new jobs (running ones finish) until `provide resume`, across restarts", 1, controlPause),
		newProvideControlCmd(a, "resume", "End a manual pause (the idle checks still apply)", 0, controlResume),
		newProvideInitCmd(a),
	)
	return cmd
}

// runProvide serves jobs from --gateway until ctx ends or the agent stops.
func runProvide(ctx context.Context, a *app, opts *provideArgs) error {
	cfg := opts.cfg
	if cfg.Gateway == "" {
		return fmt.Errorf("--gateway is required, e.g. --gateway http://127.0.0.1:8420")
	}
	var err error
	if cfg.PricePrompt, err = money.Parse(opts.priceIn); err != nil {
		return fmt.Errorf("--price-in: %w", err)
	}
	if cfg.PriceCompletion, err = money.Parse(opts.priceOut); err != nil {
		return fmt.Errorf("--price-out: %w", err)
	}
	if opts.gatewayKey != "" {
		if cfg.ExpectGateway, err = keys.ParsePublicKey(opts.gatewayKey); err != nil {
			return fmt.Errorf("--gateway-key: %w", err)
		}
	}
	b, err := node.OpenBackend(ctx, opts.backend, opts.ollamaURL, a.log)
	if err != nil {
		return err
	}
	defer b.Close()
	cfg.Backend, cfg.Logger, cfg.Version = b, a.log, version
	if cfg.KeyFile == "" {
		cfg.KeyFile = filepath.Join(opts.dataDir, "provider.key")
	}
	idle := opts.idle
	cfg.Idle, cfg.PauseFile = &idle, filepath.Join(opts.dataDir, "paused.json")
	if opts.noControl {
		cfg.ControlAddr = ""
	}
	cfg.Refused = func(err error) {
		fmt.Fprintf(a.stderr, "idlegrid provide: the gateway refuses this provider (%s); trying again in a minute\n", err)
	}
	p, err := node.StartProvider(cfg)
	if err != nil {
		return err
	}
	if p.Created {
		fmt.Fprintf(a.stdout, "created provider key %s\n", cfg.KeyFile)
	}
	fmt.Fprintf(a.stdout, "provider %s (address %s) serving %s via %s\n", p.Key, p.Key.Address(), b.Description, cfg.Gateway)
	if p.ControlURL != "" {
		fmt.Fprintf(a.stdout, "control endpoint %s (idlegrid provide status|pause|resume)\n", p.ControlURL)
	}
	if st := p.ControlStatus(); st.Idle != nil && st.Idle.Paused {
		fmt.Fprintf(a.stdout, "paused: %s\n", st.Idle.Reason)
	}
	select {
	case <-ctx.Done():
	case <-p.Done():
	}
	return p.Stop()
}

// provideControlArgs are the flags of `idlegrid provide status`, `pause`
// and `resume`, which talk to a running `idlegrid provide` on its control
// endpoint.
type provideControlArgs struct {
	control string
	rpc     string
}

// controlCall is what one control subcommand asks the provider, with the
// command's arguments.
type controlCall func(context.Context, node.ControlClient, []string) (node.ControlStatus, error)

func newProvideControlCmd(a *app, use, short string, nargs int, call controlCall) *cobra.Command {
	opts := &provideControlArgs{}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.MaximumNArgs(nargs),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runProvideControl(cmd.Context(), a, opts, call, args)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.control, "control", "http://"+node.DefaultControlAddr, "the provider's control endpoint")
	f.StringVar(&opts.rpc, "chain-rpc", "", "also show earnings, stake and verification record from the ledger at this validator RPC URL")
	deprecatedAlias(f, "rpc", "chain-rpc")
	return cmd
}

// runProvideControl makes call and prints the provider's status it
// answers with, and its record on the ledger with --chain-rpc.
func runProvideControl(ctx context.Context, a *app, opts *provideControlArgs, call controlCall, args []string) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	st, err := call(ctx, node.ControlClient{URL: opts.control}, args)
	if err != nil {
		return err
	}
	printProviderStatus(a.stdout, st)
	if opts.rpc != "" {
		printProviderLedger(ctx, a.stdout, opts.rpc, keys.Address(st.Address))
	}
	return nil
}

// controlStatus is `provide status`.
func controlStatus(ctx context.Context, c node.ControlClient, _ []string) (node.ControlStatus, error) {
	return c.Status(ctx)
}

// controlPause is `provide pause [REASON]`.
func controlPause(ctx context.Context, c node.ControlClient, args []string) (node.ControlStatus, error) {
	reason := ""
	if len(args) == 1 {
		reason = args[0]
	}
	return c.Pause(ctx, reason)
}

// controlResume is `provide resume`.
func controlResume(ctx context.Context, c node.ControlClient, _ []string) (node.ControlStatus, error) {
	return c.Resume(ctx)
}

// printProviderLedger shows what the ledger holds for the provider:
// earnings (balance, escrow, vesting), stake and verification record.
func printProviderLedger(ctx context.Context, w io.Writer, rpc string, addr keys.Address) {
	c, err := chainrpc.NewHTTPClient(rpc)
	if err != nil {
		fmt.Fprintf(w, "ledger    %v\n", err)
		return
	}
	l := chainrpc.StateReader{Client: c}
	acct, err := l.Account(ctx, addr)
	if err != nil {
		fmt.Fprintf(w, "ledger    %v\n", err)
		return
	}
	var escrow money.Amount
	for _, e := range acct.Escrow {
		escrow += e.Amount
	}
	fmt.Fprintf(w, "earnings  %s settled (balance), %s in escrow, %s vested to claim, %s still vesting\n", acct.Balance, escrow, acct.Claimable, acct.Unvested)
	fmt.Fprintf(w, "stake     %s\n", acct.Stake)
	p, err := l.Provider(ctx, addr)
	if err != nil {
		fmt.Fprintf(w, "verification: %v\n", err)
		return
	}
	jailed := ""
	if p.Jailed {
		jailed = ", JAILED"
	}
	fmt.Fprintf(w, "reputation %d/1000 (%d audits, %d failed, %d convictions%s)\n", p.Reputation, p.Audits, p.Failures, p.Convictions, jailed)
	for _, v := range p.Last {
		verdict := "passed"
		if !v.Pass {
			verdict = "FAILED"
		}
		fmt.Fprintf(w, "verdict   %s at height %d (evidence %s)\n", verdict, v.Height, v.Evidence)
	}
}

func printProviderStatus(w io.Writer, st node.ControlStatus) {
	conn := "connected"
	if !st.Agent.Connected {
		conn = "NOT connected"
	}
	fmt.Fprintf(w, "provider  %s (address %s)\n", st.Provider, st.Address)
	fmt.Fprintf(w, "gateway   %s, %s\n", st.Gateway, conn)
	fmt.Fprintf(w, "backend   %s\n", st.Backend)
	state := "serving"
	if st.Agent.Paused {
		state = "paused: " + st.Agent.Reason
	}
	fmt.Fprintf(w, "state     %s\n", state)
	fmt.Fprintf(w, "jobs      %d served, %d failed, %d running; %d tokens\n", st.Agent.Served, st.Agent.Failed, st.Agent.Active, st.Agent.Tokens)
	if st.Idle != nil {
		for _, r := range st.Idle.Results {
			fmt.Fprintf(w, "check     %s\n", r)
		}
		if st.Idle.Paused && !st.Idle.ClearSince.IsZero() {
			fmt.Fprintf(w, "idle since %s; serving resumes after the quiet period\n", st.Idle.ClearSince.Format(time.TimeOnly))
		}
	}
}
