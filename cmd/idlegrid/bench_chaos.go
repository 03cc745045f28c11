package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/idlegrid/idlegrid/internal/bench"
	"github.com/idlegrid/idlegrid/internal/faults"
)

// benchChaosArgs are the flags of `idlegrid bench chaos`: the in-process
// harness's configuration, and --processes.
type benchChaosArgs struct {
	cfg       bench.ChaosConfig
	processes bool
}

func newBenchChaosCmd(a *app) *cobra.Command {
	opts := &benchChaosArgs{cfg: bench.DefaultChaos()}
	cfg := &opts.cfg
	cmd := &cobra.Command{
		Use:   "chaos",
		Short: "Failover under chaos: simulated providers killed at steady load, every request must complete and be billed once",
		Long: `Start a gateway in this process with simulated providers and stream requests
at steady load while one provider is killed every 10 s (its connection dropped
mid-answer) and restarted a few seconds later. Requests whose provider dies
before the first token move to another provider; those cut mid-answer are
continued on another provider from the text already sent.

Reports the share of requests completed (target: 100%, each equal to the
uninterrupted answer), the p99 time to first token, and the billing check: per
request, every receipt covers exactly a run of the tokens its provider
generated (a killed provider's receipt is its last checkpoint), no token is
in two receipts, the tokens delivered against those in stored receipts, and
the tokens in no receipt: relayed by a killed provider after its last
checkpoint (unbilled, not paid for).

The default runs 30 s; --duration 2m is the full run.

With --processes, the network runs as separate processes of this binary
instead: four validators, two gateways, four provider agents and their
simulators, SIGKILLed one at a time at random and restarted while requests
flow; at the end every answered request must be billed by settled
receipts (in segments when a provider died mid-answer) with no token billed
twice, the accounts must move exactly what the receipts say, the
validators must agree and ` + "`idlegrid audit`" + ` must pass
(--duration 10m is the long run).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBenchChaos(cmd.Context(), a, opts)
		},
	}
	f := cmd.Flags()
	f.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long the load runs")
	f.IntVar(&cfg.Providers, "providers", cfg.Providers, "simulated providers")
	f.IntVar(&cfg.Clients, "clients", cfg.Clients, "concurrent streaming clients")
	f.IntVar(&cfg.AnswerTokens, "answer-tokens", cfg.AnswerTokens, "tokens per answer")
	f.DurationVar(&cfg.KillEvery, "kill-every", cfg.KillEvery, "interval between provider kills")
	f.DurationVar(&cfg.RestartAfter, "restart-after", cfg.RestartAfter, "how long a killed provider stays down")
	f.DurationVar(&cfg.CheckpointEvery, "checkpoint-every", cfg.CheckpointEvery, "the providers' least interval between checkpoints (0: the agent's default, every chunk; e.g. 200ms signs less and leaves up to that much of a killed provider's output unbilled)")
	f.BoolVar(&opts.processes, "processes", false, "kill real processes: validators, gateways, providers and simulators (see above)")
	return cmd
}

func runBenchChaos(ctx context.Context, a *app, opts *benchChaosArgs) error {
	if opts.processes {
		return runProcessChaos(ctx, a, opts.cfg.Duration)
	}
	cfg := opts.cfg
	cfg.Out = a.stdout
	res, err := bench.Chaos(ctx, cfg)
	if err != nil {
		return err
	}
	for _, msg := range slices.Sorted(maps.Keys(res.Failures)) {
		fmt.Fprintf(a.stdout, "  failed %d×: %s\n", res.Failures[msg], msg)
	}
	fmt.Fprintln(a.stdout, res.Summary())
	if !res.OK() {
		return errors.New("chaos benchmark: checks failed")
	}
	return nil
}

// runProcessChaos is `bench chaos --processes`: the fault run of package
// faults with this executable as every process. The run's directory (process
// logs included) is kept when a check fails.
func runProcessChaos(ctx context.Context, a *app, d time.Duration) error {
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := faults.TempDir()
	if err != nil {
		return err
	}
	fcfg := faults.DefaultConfig()
	fcfg.Binary, fcfg.Dir, fcfg.Duration, fcfg.Out = bin, dir, d, a.stdout
	res, err := faults.Run(ctx, fcfg)
	if err != nil {
		return fmt.Errorf("%w (logs in %s)", err, dir)
	}
	fmt.Fprintln(a.stdout, res.Summary())
	if !res.OK() {
		return fmt.Errorf("process chaos: checks failed (logs in %s)", dir)
	}
	return os.RemoveAll(dir)
}
