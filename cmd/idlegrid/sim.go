package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/idlegrid/idlegrid/internal/backend/sim"
)

// simArgs are the flags of `idlegrid sim`.
type simArgs struct {
	flags       *pflag.FlagSet // to keep the model's speed where no flag sets it
	addr        string
	firstToken  time.Duration
	tokPerSec   float64
	promptRate  float64
	cacheTokens int
}

func newSimCmd(a *app) *cobra.Command {
	opts := &simArgs{}
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Serve the deterministic simulator model over the Ollama API",
		Long: `Serve the built-in simulator as a standalone Ollama-compatible server: a
deterministic "model" (same prompt and seed, same tokens) with configurable
speed, per-token logprobs and CORS headers. Useful for trying a provider
without a GPU and as a zero-cost upstream for benchmarks.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runSim(cmd.Context(), a, opts)
		},
	}
	f := cmd.Flags()
	opts.flags = f
	f.StringVar(&opts.addr, "addr", "127.0.0.1:11435", "address to listen on")
	f.DurationVar(&opts.firstToken, "first-token", 0, "time to first token (default: the model's)")
	f.Float64Var(&opts.tokPerSec, "tokens-per-second", 0, "generation speed, 0 = instant (default: the model's)")
	f.Float64Var(&opts.promptRate, "prompt-tokens-per-second", 0, "prompt processing speed for tokens not in the prefix cache, 0 = free")
	f.IntVar(&opts.cacheTokens, "prefix-cache-tokens", 0, "size of the simulated prefix cache in tokens, 0 = none")
	return cmd
}

// runSim serves the simulator until ctx ends.
func runSim(ctx context.Context, a *app, opts *simArgs) error {
	cfg := sim.DefaultConfig()
	for i := range cfg.Models {
		if opts.flags.Changed("first-token") {
			cfg.Models[i].FirstToken = opts.firstToken
		}
		if opts.flags.Changed("tokens-per-second") {
			cfg.Models[i].TokensPerSecond = opts.tokPerSec
		}
		cfg.Models[i].PromptTokensPerSecond, cfg.Models[i].PrefixCacheTokens = opts.promptRate, opts.cacheTokens
	}
	s, err := sim.New(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", opts.addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: sim.NewServer(s), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(a.stdout, "simulator serving the Ollama API at http://%s\n", ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
