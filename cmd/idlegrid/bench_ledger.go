package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/idlegrid/idlegrid/internal/bench"
)

// benchLedgerArgs are the flags of `idlegrid bench ledger`: the harness's
// configuration.
type benchLedgerArgs struct {
	cfg bench.LedgerConfig
}

func newBenchLedgerCmd(a *app) *cobra.Command {
	opts := &benchLedgerArgs{cfg: bench.DefaultLedger()}
	cfg := &opts.cfg
	cmd := &cobra.Command{
		Use:   "ledger",
		Short: "Receipts settled per second end to end, on one validator and on a 4-validator loopback network",
		Long: `Sign receipts, then settle them in settle-batch transactions through CometBFT
in this process: once on a single validator and once on a loopback network of
four, measuring receipts settled per second from the first submission to the
last commit and each batch's commit latency. Prints a summary line.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBenchLedger(cmd.Context(), a, opts)
		},
	}
	f := cmd.Flags()
	f.IntSliceVar(&cfg.Validators, "validators", cfg.Validators, "network sizes to measure")
	f.IntVar(&cfg.Receipts, "receipts", cfg.Receipts, "receipts settled per network size")
	f.IntVar(&cfg.BatchSize, "batch", cfg.BatchSize, "receipts per settle-batch transaction")
	f.IntVar(&cfg.InFlight, "in-flight", cfg.InFlight, "batches awaiting commit at once")
	return cmd
}

func runBenchLedger(ctx context.Context, a *app, opts *benchLedgerArgs) error {
	cfg := opts.cfg
	cfg.Out = a.stdout
	res, err := bench.Ledger(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintln(a.stdout, res.Summary())
	return nil
}
