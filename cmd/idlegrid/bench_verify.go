package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/idlegrid/idlegrid/internal/bench"
	"github.com/idlegrid/idlegrid/internal/verify"
)

// benchVerifyArgs are the flags of `idlegrid bench verify`: the
// configurations of the simulated run and of the run on a real Ollama
// (--ollama).
type benchVerifyArgs struct {
	flags  *pflag.FlagSet // to tell --honest-audits given from its default
	cfg    verify.BenchConfig
	ollama bench.VerifyOllamaConfig
}

func newBenchVerifyCmd(a *app) *cobra.Command {
	opts := &benchVerifyArgs{cfg: verify.DefaultBench(), ollama: bench.DefaultVerifyOllama()}
	cfg, ocfg := &opts.cfg, &opts.ollama
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Verification: how fast cheating providers are convicted, that honest ones never are, and what it costs",
		Long: `Audit simulated providers in this process against the reference simulator
model, in both audit modes — re-scoring (teacher-forced log-probabilities of
a served response) and canaries (greedy replay, no log-probabilities) — and
replay each stream of verdicts through the ledger's conviction rule (default
params: 3 failed cases within 10,000 blocks):

  cheaters (each claims the reference's model): a cheaper quantization, another
  model, fabricated text, inflated token counts, replayed answers, answers cut
  short with finish "stop" — per cheater the share of failed cases, the share
  of streams convicted within the horizon of audited requests (target: 99%)
  and the audits it took;
  honest controls (hardware noise of three sizes, random seeds under greedy
  decoding): failed cases and false convictions over --honest-audits audited
  requests per mode (target: none in 10,000);

and the verifier's compute as a share of the providers' at the audit shares
(target: at most 5%). Prints a table and a summary line; see
docs/verification.md for the rules and the cost model.

With --ollama URL, measure on that real Ollama instead: a network started as
` + "`idlegrid up --backend ollama`" + ` starts it (its verifier's canary interval, sample
share and probation), whose own provider serves --model; once that provider
has passed its probation, a second, unmodified provider agent joins in front
of a proxy that runs --cheat-model for every request for --model while
claiming --model's name and identity digest, under steady consumer traffic.
It reports the minutes and consumer requests until the cheater is jailed on
the ledger (targets: 3 minutes, 100 requests) and until the gateway stops
routing to it, its share of traffic before (target: 10%), false convictions
of the honest provider while traffic goes on until the verifier has judged
--honest-audits of its responses (target: none), and the verifier's tokens
(canaries and reference replays) per completion token served once probation
ended (target: at most 5%). Interrupting it (Ctrl-C) ends the honest-only
traffic early and prints what was measured.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBenchVerify(cmd.Context(), a, opts)
		},
	}
	f := cmd.Flags()
	opts.flags = f
	f.IntVar(&cfg.Trials, "trials", cfg.Trials, "independent audit streams per cheater and mode")
	f.IntVar(&cfg.Horizon, "horizon", cfg.Horizon, "audited requests per cheater stream (the conviction target's horizon)")
	f.IntVar(&cfg.HonestAudits, "honest-audits", cfg.HonestAudits, "audited requests per honest control and mode; with --ollama, the honest provider's responses the verifier must judge before the run ends (1,000 unless set)")
	f.IntVar(&cfg.CanaryBatch, "canary-batch", cfg.CanaryBatch, "canaries per canary case (one verdict)")
	f.Float64Var(&cfg.RescoreShare, "rescore-share", cfg.RescoreShare, "share of served requests re-scored")
	f.Float64Var(&cfg.CanaryShare, "canary-share", cfg.CanaryShare, "share of served requests that are canaries")
	f.Float64Var(&cfg.PrefillSpeedup, "prefill-speedup", cfg.PrefillSpeedup, "prompt tokens a backend prefills in the time of one decoded token")
	f.BoolVar(&cfg.Sweep, "sweep", false, "also sweep the logit noise of the perturbed model, audited as honest and as a cheater (about a minute more)")
	f.Float64SliceVar(&cfg.SweepHonest, "sweep-honest", cfg.SweepHonest, "noise levels audited as honest controls in the sweep")
	f.Float64SliceVar(&cfg.SweepCheat, "sweep-cheat", cfg.SweepCheat, "noise levels audited as cheaters in the sweep")
	f.Uint64Var(&cfg.BlocksPerAudit, "blocks-per-audit", cfg.BlocksPerAudit, "ledger blocks between audits of one provider (fewer is harsher on honest providers)")
	f.StringVar(&ocfg.OllamaURL, "ollama", "", "measure on this real Ollama (with --model and --cheat-model) instead of the simulator")
	f.StringVar(&ocfg.Model, "model", ocfg.Model, "with --ollama: the model both providers claim")
	f.StringVar(&ocfg.CheatModel, "cheat-model", ocfg.CheatModel, "with --ollama: the model the cheater runs instead")
	f.IntVar(&ocfg.Clients, "clients", ocfg.Clients, "with --ollama: consumers sending requests back to back")
	f.Float64Var(&ocfg.VerifyBudget, "verify-budget", 0, "with --ollama: the dev verifier's budget instead of up's (negative: none; the compute target is then not judged)")
	f.Float64Var(&ocfg.SampleShare, "sample-share", 0, "with --ollama: the share of responses the gateway samples for the verifier instead of up's (the compute target is then not judged)")
	f.IntVar(&ocfg.MaxTokens, "max-tokens", ocfg.MaxTokens, "with --ollama: max_tokens of each consumer request")
	f.DurationVar(&ocfg.ProbationTimeout, "max-probation", ocfg.ProbationTimeout, "with --ollama: the longest the honest provider's probation may take")
	f.DurationVar(&ocfg.ConvictTimeout, "max-conviction", ocfg.ConvictTimeout, "with --ollama: the longest to wait for the cheater's conviction")
	f.DurationVar(&ocfg.HonestTimeout, "max-honest", ocfg.HonestTimeout, "with --ollama: the longest the honest-only traffic after the conviction runs")
	return cmd
}

// runBenchVerify measures on the simulator, or on the real Ollama of
// --ollama.
func runBenchVerify(ctx context.Context, a *app, opts *benchVerifyArgs) error {
	if opts.ollama.OllamaURL != "" {
		ocfg := opts.ollama
		ocfg.Out, ocfg.Logger = a.stdout, a.log
		if opts.flags.Changed("honest-audits") {
			ocfg.HonestAudits = opts.cfg.HonestAudits
		}
		res, err := bench.VerifyOllama(ctx, ocfg)
		if err != nil {
			return err
		}
		fmt.Fprintln(a.stdout, res.Summary())
		return nil
	}
	cfg := opts.cfg
	cfg.Out = a.stdout
	res, err := verify.Bench(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintln(a.stdout, res.Summary())
	return nil
}
