package main

import (
	"context"
	"time"

	"github.com/spf13/cobra"

	"github.com/idlegrid/idlegrid/internal/node"
)

// upArgs are the flags of `idlegrid up`: they set the configuration of
// the network it runs, whose defaults are node.DevUpConfig's.
type upArgs struct {
	cfg node.UpConfig
}

func newUpCmd(a *app) *cobra.Command {
	opts := &upArgs{cfg: node.DevUpConfig()}
	cfg := &opts.cfg
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run the whole network locally: a ledger validator, a gateway, a local provider and a funded dev account",
		Long: `Run the whole network in one process with embedded defaults: a single
CometBFT validator running the ledger (RPC on 127.0.0.1:26657), a gateway on
127.0.0.1:8420 that settles receipts on it, a provider agent serving your
local Ollama (or the built-in simulator when no Ollama answers), and a dev
account funded at genesis with an API key.

Requests from loopback clients need no API key: they are billed to the dev
account (--keyless-loopback=false turns this off). Other addresses (with
--addr 0.0.0.0:8420) always need one. Behind a reverse proxy on the same
machine every client looks like loopback: turn keyless access off there.

The API key is printed once, when it is created; set IDLEGRID_DEV_API_KEY (or
--dev-api-key) to fix it for scripts and tests.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runUp(cmd.Context(), a, opts)
		},
	}
	f := cmd.Flags()
	addGatewayFlags(f, gatewayFlags{addr: &cfg.Addr, dataDir: &cfg.DataDir, chainID: &cfg.ChainID, receiptSync: &cfg.ReceiptSync, gateway: &cfg.Gateway})
	f.StringVar(&cfg.ChainRPCAddr, "chain-rpc-addr", "127.0.0.1:26657", "where the local validator serves its RPC (what idlegrid ledger --chain-rpc talks to)")
	f.StringVar(&cfg.Backend, "backend", node.BackendAuto, "model backend: auto (Ollama if reachable, else simulator, so up works on any machine), ollama or sim")
	f.StringVar(&cfg.OllamaURL, "ollama-url", node.DefaultOllamaURL(), "Ollama base URL (default from OLLAMA_HOST)")
	f.StringVar(&cfg.DevAPIKey, "dev-api-key", "", "fix the dev API key instead of generating one (env IDLEGRID_DEV_API_KEY)")
	f.BoolVar(&cfg.KeylessLoopback, "keyless-loopback", true, "serve requests without an API key from loopback clients (127.0.0.0/8, ::1; the connection's address, not a header), billed to the dev account, so the ollama CLI and local apps work without a key")
	f.IntVar(&cfg.Slots, "slots", cfg.Slots, "jobs the local provider runs at once")
	f.StringVar(&cfg.ChainMetricsAddr, "chain-metrics-addr", "", "serve the validator's Prometheus metrics here, e.g. 127.0.0.1:26660 (the gateway's are at /metrics on --addr)")
	f.DurationVar(&cfg.VerifyEvery, "verify-every", cfg.VerifyEvery, "the dev verifier sends a canary this often and posts a verdict every 8 (0: no verifier)")
	f.Float64Var(&cfg.VerifyBudget, "verify-budget", cfg.VerifyBudget, "the dev verifier spends on audits outside probation at most this share of the completion tokens the gateway serves (negative: no budget)")
	f.Float64Var(&cfg.Gateway.Samples.Share, "sample-share", cfg.Gateway.Samples.Share, "share of served responses the gateway samples for verifiers, with their text (0: none)")
	f.DurationVar(&cfg.PlantEvery, "plant-every", cfg.PlantEvery, "plant a known sample this often to test the verifiers, with the simulator backend (0: never)")
	return cmd
}

// runUp runs the network until ctx ends, then drains in-flight requests
// for up to 30 s.
func runUp(ctx context.Context, a *app, opts *upArgs) error {
	cfg := opts.cfg
	cfg.Logger, cfg.Version = a.log, version
	n, err := node.StartUp(ctx, cfg)
	if err != nil {
		return err
	}
	n.PrintBanner(a.stdout, cfg.DataDir)
	<-ctx.Done()
	a.log.Info("shutting down: finishing in-flight requests (up to 30 s)")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return n.Shutdown(sctx)
}
