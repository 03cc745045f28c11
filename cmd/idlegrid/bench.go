package main

import (
	"fmt"
	"os"
	"runtime/pprof"
	"runtime/trace"

	"github.com/spf13/cobra"

	"github.com/idlegrid/idlegrid/internal/bench"
)

func newBenchCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Performance harness: measure idlegrid against a baseline in the same run",
	}
	var cpuProfile, memProfile, traceFile string
	cmd.PersistentFlags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the run to this file")
	cmd.PersistentFlags().StringVar(&memProfile, "memprofile", "", "write an allocation profile of the run to this file (go tool pprof -sample_index=alloc_space)")
	cmd.PersistentFlags().StringVar(&traceFile, "trace", "", "write an execution trace of the run to this file (go tool trace)")
	cmd.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		if err := a.configure(cmd); err != nil {
			return err
		}
		if traceFile != "" {
			f, err := os.Create(traceFile)
			if err != nil {
				return err
			}
			if err := trace.Start(f); err != nil {
				return err
			}
		}
		if cpuProfile == "" {
			return nil
		}
		f, err := os.Create(cpuProfile)
		if err != nil {
			return err
		}
		return pprof.StartCPUProfile(f)
	}
	cmd.PersistentPostRun = func(*cobra.Command, []string) {
		if cpuProfile != "" {
			pprof.StopCPUProfile()
		}
		if memProfile != "" {
			if err := writeHeapProfile(memProfile); err != nil {
				fmt.Fprintln(os.Stderr, "memprofile:", err)
			}
		}
		if traceFile != "" {
			trace.Stop()
		}
	}
	cfg := bench.DefaultOverhead()
	overhead := &cobra.Command{
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
			cfg.Out = a.stdout
			res, err := bench.Overhead(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, res.Summary())
			return nil
		},
	}
	f := overhead.Flags()
	f.IntVar(&cfg.Requests, "requests", cfg.Requests, "requests per latency measurement and side")
	f.IntSliceVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "concurrency levels for the latency comparison")
	f.IntVar(&cfg.Streams, "streams", cfg.Streams, "concurrent streams for the relay delay measurement")
	f.Float64Var(&cfg.StreamRate, "stream-rate", cfg.StreamRate, "tokens per second per stream")
	f.IntVar(&cfg.StreamTokens, "stream-tokens", cfg.StreamTokens, "tokens per stream")
	f.DurationVar(&cfg.RPSDuration, "rps-duration", cfg.RPSDuration, "duration of each max-throughput run")
	f.StringVar(&cfg.ReceiptSync, "receipt-sync", "disk", "gateway receipt durability: disk (fsync) or process")
	f.IntVar(&cfg.Slots, "slots", cfg.Slots, "jobs the network's provider runs at once (up's default; the relay measurement gets at least one per stream)")
	f.BoolVar(&cfg.Peer, "peer", cfg.Peer, "also run the Portkey AI gateway (npm @portkey-ai/gateway@"+bench.PortkeyVersion+
		", installed into the user cache directory) in front of the same upstream, when node and npm are present")
	lcfg := bench.DefaultLedger()
	ledgerCmd := &cobra.Command{
		Use:   "ledger",
		Short: "Receipts settled per second end to end, on one validator and on a 4-validator loopback network",
		Long: `Sign receipts, then settle them in settle-batch transactions through CometBFT
in this process: once on a single validator and once on a loopback network of
four, measuring receipts settled per second from the first submission to the
last commit and each batch's commit latency. Prints a summary line.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			lcfg.Out = a.stdout
			res, err := bench.Ledger(cmd.Context(), lcfg)
			if err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, res.Summary())
			return nil
		},
	}
	lf := ledgerCmd.Flags()
	lf.IntSliceVar(&lcfg.Validators, "validators", lcfg.Validators, "network sizes to measure")
	lf.IntVar(&lcfg.Receipts, "receipts", lcfg.Receipts, "receipts settled per network size")
	lf.IntVar(&lcfg.BatchSize, "batch", lcfg.BatchSize, "receipts per settle-batch transaction")
	lf.IntVar(&lcfg.InFlight, "in-flight", lcfg.InFlight, "batches awaiting commit at once")
	cmd.AddCommand(overhead, ledgerCmd, newBenchRoutingCmd(a), newBenchEconCmd(a), newBenchChaosCmd(a), newBenchVerifyCmd(a), newBenchScaleCmd(a))
	return cmd
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
