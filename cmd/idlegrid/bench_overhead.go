package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/idlegrid/idlegrid/internal/bench"
)

// benchOverheadArgs are the flags of `idlegrid bench overhead`: the
// harness's configuration.
type benchOverheadArgs struct {
	cfg bench.OverheadConfig
}

func newBenchOverheadCmd(a *app) *cobra.Command {
	opts := &benchOverheadArgs{cfg: bench.DefaultOverhead()}
	cfg := &opts.cfg
	cmd := &cobra.Command{
		Use:   "overhead",
		Short: "What the gateway, hub and provider agent add to calling the simulator directly",
		Long: `Start a local network in this process with an instant simulator upstream and
compare, in the same run: non-streaming latency and requests/s at each
concurrency (the upstream directly, two bare reverse proxies, the Portkey AI
gateway when Node.js is present, and the network), time to first token, the most requests per second each side sustains, and
per-token relay delay for many concurrent streams (backend emission →
consumer arrival). The network's provider has --slots slots, as up's does.
Prints a verdict on the saturation targets and a summary line at the end.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBenchOverhead(cmd.Context(), a, opts)
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Requests, "requests", cfg.Requests, "requests per latency measurement and side")
	f.IntSliceVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "concurrency levels for the latency comparison")
	f.IntVar(&cfg.Streams, "streams", cfg.Streams, "concurrent streams for the relay delay measurement")
	f.Float64Var(&cfg.StreamRate, "stream-rate", cfg.StreamRate, "tokens per second per stream")
	f.IntVar(&cfg.StreamTokens, "stream-tokens", cfg.StreamTokens, "tokens per stream")
	f.DurationVar(&cfg.RPSDuration, "rps-duration", cfg.RPSDuration, "duration of each max-throughput run")
	f.StringVar(&cfg.ReceiptSync, "receipt-sync", "disk", "gateway receipt durability: disk (fsync) or process")
	f.IntVar(&cfg.Slots, "slots", cfg.Slots, "jobs the network's provider runs at once (up's default; the relay measurement gets at least one per stream)")
	f.BoolVar(&cfg.Peer, "peer", cfg.Peer, "also run the Portkey AI gateway (npm @portkey-ai/gateway@"+bench.PortkeyVersion+
		", installed into the user cache directory) in front of the same upstream, when node and npm are present: non-streaming latency and time to first token")
	return cmd
}

func runBenchOverhead(ctx context.Context, a *app, opts *benchOverheadArgs) error {
	cfg := opts.cfg
	cfg.Out = a.stdout
	res, err := bench.Overhead(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintln(a.stdout, res.Summary())
	return nil
}
