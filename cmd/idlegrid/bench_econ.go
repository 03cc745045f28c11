package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/idlegrid/idlegrid/internal/econ"
	"github.com/idlegrid/idlegrid/internal/money"
)

// benchEconArgs are the flags of `idlegrid bench econ`: most set the
// simulation's configuration directly; the rest are applied to it by
// runBenchEcon.
type benchEconArgs struct {
	cfg        econ.Config
	providers  int
	emission   string
	svgFile    string
	washLevels []uint
}

func newBenchEconCmd(a *app) *cobra.Command {
	opts := &benchEconArgs{cfg: econ.DefaultConfig()}
	cfg := &opts.cfg
	cmd := &cobra.Command{
		Use:   "econ",
		Short: "Economics simulation on the real ledger: supply, earnings per hardware class, what cheating pays",
		Long: `Run a population of providers (datacenter GPUs, gaming GPUs, laptops) for
hundreds of epochs on the real ledger state machine: a demand curve is routed
to the cheapest online providers, one gateway settles their receipts, and
every epoch's emission is paid by the ledger's reward code. Prints the supply
curve, each class's earnings (fees vs emission, net of energy), the expected
profit of each cheating strategy against honesty, the expected profit per
epoch of self-dealing run on the ledger — wash trading (buying real requests
from oneself) and fabricated receipts (no work) — across honest demand
levels, and the verifier stake an attacker must hold to convict an honest
provider. The simulation runs no verifiers: the --canary, --slash, --jail
and --detect flags set the modelled verdicts. Prices and energy are in US
dollars, converted at --tokens-per-usd. Prints a summary line at the end;
--svg writes a plot.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBenchEcon(cmd.Context(), a, opts)
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Epochs, "epochs", cfg.Epochs, "epochs to simulate")
	f.IntVar(&opts.providers, "providers", cfg.Providers(), "providers; the default mix of classes and strategies is scaled to this many, and demand with it")
	f.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of uptime and canary draws")
	f.Uint64Var(&cfg.TokensPerUSD, "tokens-per-usd", cfg.TokensPerUSD, "assumed exchange rate: ledger tokens per US dollar")
	f.Uint64Var(&cfg.BlockMillis, "block-ms", cfg.BlockMillis, "wall time of a block in milliseconds: turns speeds into tokens per epoch")
	f.Uint64Var(&cfg.Params.EpochBlocks, "epoch-blocks", cfg.Params.EpochBlocks, "ledger param: blocks per epoch")
	f.StringVar(&opts.emission, "emission", cfg.Params.EpochEmission.String(), "ledger param: tokens the first epoch mints")
	f.Uint64Var(&cfg.Params.HalvingEpochs, "halving-epochs", cfg.Params.HalvingEpochs, "ledger param: emission halves every this many epochs (the chain default is 1000)")
	f.Uint64Var(&cfg.Params.VestingBlocks, "vesting-blocks", cfg.Params.VestingBlocks, "ledger param: blocks over which rewards vest")
	f.Uint64Var(&cfg.Params.EscrowBlocks, "escrow-blocks", cfg.Params.EscrowBlocks, "ledger param: blocks a provider's earnings stay in escrow")
	f.Uint32Var(&cfg.Params.RewardMaxPaidBps, "reward-max-paid-bps", cfg.Params.RewardMaxPaidBps, "ledger param: a provider's epoch reward is at most this share (basis points) of what it was paid; must be below --protocol-fee-bps")
	f.Uint32Var(&cfg.Params.GatewayFeeBps, "gateway-fee-bps", cfg.Params.GatewayFeeBps, "ledger param: gateway fee in basis points")
	f.Uint32Var(&cfg.Params.ProtocolFeeBps, "protocol-fee-bps", cfg.Params.ProtocolFeeBps, "ledger param: protocol fee in basis points")
	f.Uint32Var(&cfg.Slashing.CanaryBps, "canary-bps", cfg.Slashing.CanaryBps, "modelled: chance (basis points) that a provider meets a canary in an epoch it serves")
	f.Uint32Var(&cfg.Slashing.SlashBps, "slash-bps", cfg.Slashing.SlashBps, "modelled: share of stake slashed when caught (basis points)")
	f.Uint64Var(&cfg.Slashing.JailEpochs, "jail-epochs", cfg.Slashing.JailEpochs, "modelled: epochs a caught provider earns nothing")
	f.Uint32Var(&cfg.Slashing.QuantizeDetectBps, "detect-quantize-bps", cfg.Slashing.QuantizeDetectBps, "modelled: chance that a canary catches a cheaper quantization")
	f.Uint32Var(&cfg.Slashing.FabricateDetectBps, "detect-fabricate-bps", cfg.Slashing.FabricateDetectBps, "modelled: chance that a canary catches fabricated text")
	f.Uint32Var(&cfg.Slashing.InflateDetectBps, "detect-inflate-bps", cfg.Slashing.InflateDetectBps, "modelled: chance that a canary catches inflated counts (unmetered gateway)")
	f.Uint32Var(&cfg.Slashing.QuantizeCostBps, "quantize-cost-bps", cfg.Slashing.QuantizeCostBps, "energy of a cheaper quantization relative to the real model")
	f.Uint32Var(&cfg.Slashing.FabricateCostBps, "fabricate-cost-bps", cfg.Slashing.FabricateCostBps, "energy of fabricating text relative to serving")
	f.Uint32Var(&cfg.Slashing.InflateBps, "inflate-bps", cfg.Slashing.InflateBps, "how much an inflater adds to its token counts")
	f.StringVar(&cfg.Wash.Class, "wash-class", cfg.Wash.Class, "hardware class (model and price) of the self-dealer")
	f.Uint64Var(&cfg.Wash.TokensPerEpoch, "wash-tokens", cfg.Wash.TokensPerEpoch, "completion tokens the self-dealer settles per epoch (0: its class's capacity)")
	f.IntVar(&cfg.Wash.Epochs, "wash-epochs", cfg.Wash.Epochs, "epochs per honest demand level of the self-dealing sweep")
	levels := make([]uint, len(cfg.Wash.LevelsBps))
	for i, l := range cfg.Wash.LevelsBps {
		levels[i] = uint(l)
	}
	f.UintSliceVar(&opts.washLevels, "wash-levels-bps", levels, "honest demand levels of the self-dealing sweep, in basis points of the default demand")
	f.StringVar(&opts.svgFile, "svg", "", "write the supply curve and income split as SVG to this file")
	return cmd
}

// runBenchEcon runs the simulation; it does not block on the network, so
// ctx goes unused.
func runBenchEcon(_ context.Context, a *app, opts *benchEconArgs) error {
	cfg := opts.cfg
	var err error
	if cfg.Params.EpochEmission, err = money.Parse(opts.emission); err != nil {
		return fmt.Errorf("--emission: %w", err)
	}
	if opts.providers != cfg.Providers() {
		if err := cfg.ScaleProviders(opts.providers); err != nil {
			return err
		}
	}
	cfg.Wash.LevelsBps = cfg.Wash.LevelsBps[:0]
	for _, l := range opts.washLevels {
		cfg.Wash.LevelsBps = append(cfg.Wash.LevelsBps, uint32(min(l, 1<<31)))
	}
	rep, err := econ.Run(cfg)
	if err != nil {
		return err
	}
	if err := rep.Print(a.stdout); err != nil {
		return err
	}
	if opts.svgFile != "" {
		if err := writeEconSVG(opts.svgFile, &rep); err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "plot written to %s\n", opts.svgFile)
	}
	fmt.Fprintln(a.stdout, rep.Summary())
	return nil
}

func writeEconSVG(path string, rep *econ.Report) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := rep.WriteSVG(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
