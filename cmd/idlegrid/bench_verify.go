package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/idlegrid/idlegrid/internal/verify"
)

func newBenchVerifyCmd(a *app) *cobra.Command {
	cfg := verify.DefaultBench()
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
docs/verification.md for the rules and the cost model.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Out = a.stdout
			res, err := verify.Bench(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, res.Summary())
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Trials, "trials", cfg.Trials, "independent audit streams per cheater and mode")
	f.IntVar(&cfg.Horizon, "horizon", cfg.Horizon, "audited requests per cheater stream (the conviction target's horizon)")
	f.IntVar(&cfg.HonestAudits, "honest-audits", cfg.HonestAudits, "audited requests per honest control and mode")
	f.IntVar(&cfg.CanaryBatch, "canary-batch", cfg.CanaryBatch, "canaries per canary case (one verdict)")
	f.Float64Var(&cfg.RescoreShare, "rescore-share", cfg.RescoreShare, "share of served requests re-scored")
	f.Float64Var(&cfg.CanaryShare, "canary-share", cfg.CanaryShare, "share of served requests that are canaries")
	f.Float64Var(&cfg.PrefillSpeedup, "prefill-speedup", cfg.PrefillSpeedup, "prompt tokens a backend prefills in the time of one decoded token")
	f.BoolVar(&cfg.Sweep, "sweep", false, "also sweep the logit noise of the perturbed model, audited as honest and as a cheater (about a minute more)")
	f.Float64SliceVar(&cfg.SweepHonest, "sweep-honest", cfg.SweepHonest, "noise levels audited as honest controls in the sweep")
	f.Float64SliceVar(&cfg.SweepCheat, "sweep-cheat", cfg.SweepCheat, "noise levels audited as cheaters in the sweep")
	f.Uint64Var(&cfg.BlocksPerAudit, "blocks-per-audit", cfg.BlocksPerAudit, "ledger blocks between audits of one provider (fewer is harsher on honest providers)")
	return cmd
}
