package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/idlegrid/idlegrid/internal/bench"
)

// benchRoutingArgs are the flags of `idlegrid bench routing`: the harness's
// configuration.
type benchRoutingArgs struct {
	cfg bench.RoutingConfig
}

func newBenchRoutingCmd(a *app) *cobra.Command {
	opts := &benchRoutingArgs{cfg: bench.DefaultRouting()}
	cfg := &opts.cfg
	cmd := &cobra.Command{
		Use:   "routing",
		Short: "Routing quality: the marketplace policy against round-robin and least-loaded on simulated providers",
		Long: `Start a gateway in this process with simulated providers of mixed speed, each
with a prefix cache and a per-token prompt processing cost, and compare in the
same run the marketplace scheduling policy with round-robin and least-loaded
baselines (a fresh network per policy, so every cache starts cold):

  (a) a chat workload where every conversation has its own long context and
      follow-up turns: requests per second and the share of prompt tokens
      served from cache (targets: at least 1.5x and 3x round-robin);
  (b) unique prompts without any reuse: requests per second (target: within
      5% of least-loaded).

Prints a summary line at the end.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBenchRouting(cmd.Context(), a, opts)
		},
	}
	f := cmd.Flags()
	f.Float64SliceVar(&cfg.Speeds, "speeds", cfg.Speeds, "relative speed of each simulated provider")
	f.IntVar(&cfg.Slots, "slots", cfg.Slots, "slots per provider")
	f.IntVar(&cfg.CacheTokens, "cache-tokens", cfg.CacheTokens, "prefix cache size per provider, in tokens")
	f.IntVar(&cfg.Conversations, "conversations", cfg.Conversations, "concurrent conversations in the chat workload")
	f.IntVar(&cfg.Turns, "turns", cfg.Turns, "turns per conversation")
	f.IntVar(&cfg.ContextTokens, "context-tokens", cfg.ContextTokens, "tokens of each conversation's own system prompt")
	f.DurationVar(&cfg.Think, "think", cfg.Think, "mean think time between the turns of a conversation")
	f.DurationVar(&cfg.ChatDuration, "chat-duration", cfg.ChatDuration, "duration of the chat workload per policy")
	f.IntVar(&cfg.Clients, "clients", cfg.Clients, "concurrent clients in the no-reuse workload")
	f.DurationVar(&cfg.NoReuseDuration, "no-reuse-duration", cfg.NoReuseDuration, "duration of the no-reuse workload per policy")
	return cmd
}

func runBenchRouting(ctx context.Context, a *app, opts *benchRoutingArgs) error {
	cfg := opts.cfg
	cfg.Out = a.stdout
	res, err := bench.Routing(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintln(a.stdout, res.Summary())
	return nil
}
