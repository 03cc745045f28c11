package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/idlegrid/idlegrid/internal/bench"
)

// benchScaleArgs are the flags of `idlegrid bench scale`: the harness's
// configuration.
type benchScaleArgs struct {
	cfg bench.ScaleConfig
}

func newBenchScaleCmd(a *app) *cobra.Command {
	opts := &benchScaleArgs{cfg: bench.DefaultScale()}
	cfg := &opts.cfg
	cmd := &cobra.Command{
		Use:   "scale",
		Short: "Requests/s and receipts settled/s with 1, 2 and 4 gateways sharing one PostgreSQL",
		Long: `Start a throwaway PostgreSQL (Debian's postgresql package; run as the user
"nobody" when root), one validator and, for each number of gateways, that many
gateways sharing the database, the simulated providers spread evenly over them
and closed-loop clients calling them round-robin. Every request is admitted
against the shared reservations and billed by a receipt that must settle.
Prints requests/s and receipts settled/s per run with the ratios to the first
run, then a summary line. Everything shares this machine's cores, so more
gateways do not mean more CPU: the ratios show the cost of sharing, not the
gain of more machines.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBenchScale(cmd.Context(), a, opts)
		},
	}
	f := cmd.Flags()
	f.IntSliceVar(&cfg.Gateways, "gateways", cfg.Gateways, "numbers of gateways to measure")
	f.IntVar(&cfg.Providers, "providers", cfg.Providers, "simulated providers in total, spread over the gateways")
	f.IntVar(&cfg.Slots, "slots", cfg.Slots, "slots per provider")
	f.IntVar(&cfg.Clients, "clients", cfg.Clients, "closed-loop clients in total, spread over the gateways")
	f.DurationVar(&cfg.Duration, "duration", cfg.Duration, "load duration per run")
	f.IntVar(&cfg.MaxTokens, "max-tokens", cfg.MaxTokens, "max_tokens of each request")
	return cmd
}

func runBenchScale(ctx context.Context, a *app, opts *benchScaleArgs) error {
	cfg := opts.cfg
	cfg.Out = a.stdout
	res, err := bench.Scale(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintln(a.stdout, res.Summary())
	return nil
}
