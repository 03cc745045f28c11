package verify

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// Met reports whether the targets hold: every cheater convicted within
// the horizon in at least 99% of streams (measured, and by the binomial
// estimate) in both modes, no honest control ever convicted, and
// verifier compute at most 5% of served compute.
func (r *BenchResult) Met() bool {
	ok := r.VerifyShare <= 0.05
	for i := range r.Rows {
		row := &r.Rows[i]
		switch {
		case row.Honest:
			ok = ok && row.Convictions == 0
		default:
			ok = ok && row.ConvictedShare() >= 0.99 && row.Binomial >= 0.99
		}
	}
	return ok
}

// Summary is the one-line outcome.
func (r *BenchResult) Summary() string {
	minConv := map[Mode]float64{ModeRescore: 1, ModeCanary: 1}
	worst := map[Mode]string{}
	honestAudits, honestFails, honestConv := 0, 0, 0
	for i := range r.Rows {
		row := &r.Rows[i]
		if row.Honest {
			honestAudits += row.Requests
			honestFails += row.Failed
			honestConv += row.Convictions
			continue
		}
		if c := min(row.ConvictedShare(), row.Binomial); c < minConv[row.Mode] || worst[row.Mode] == "" {
			minConv[row.Mode], worst[row.Mode] = c, row.Variant
		}
	}
	verdict := "targets met"
	if !r.Met() {
		verdict = "TARGETS NOT MET"
	}
	return fmt.Sprintf("bench verify: cheaters convicted within %d audited requests: re-scoring ≥ %.1f%% (weakest %s), canaries ≥ %.1f%% (weakest %s); honest: %d false convictions, %d failed cases in %d audited requests; verifier compute %.2f%% of served (%s)",
		r.Config.Horizon, 100*minConv[ModeRescore], worst[ModeRescore], 100*minConv[ModeCanary], worst[ModeCanary],
		honestConv, honestFails, honestAudits, 100*r.VerifyShare, verdict)
}

func printHeader(out io.Writer) {
	fmt.Fprintf(out, "%-16s %-8s %7s %6s %7s  %-23s %-22s %s\n",
		"provider", "mode", "audits", "cases", "failed", "convicted in horizon", "audits to conviction", "verifier/provider")
}

func printRow(out io.Writer, r *BenchRow) {
	failed := fmt.Sprintf("%.1f%%", 100*r.Detection())
	if r.Honest {
		failed = fmt.Sprint(r.Failed)
	}
	conv, to := "", ""
	if r.Honest {
		conv = fmt.Sprintf("%d false convictions", r.Convictions)
		to = fmt.Sprintf("(%d cases differed)", r.Differed)
	} else {
		conv = fmt.Sprintf("%d/%d (binom %.4f)", r.Convicted, r.Trials, r.Binomial)
		if len(r.ToConviction) > 0 {
			sort.Ints(r.ToConviction)
			var sum int
			for _, x := range r.ToConviction {
				sum += x
			}
			to = fmt.Sprintf("%.0f avg, %d max", float64(sum)/float64(len(r.ToConviction)), r.ToConviction[len(r.ToConviction)-1])
		} else {
			to = "never"
		}
	}
	fmt.Fprintf(out, "%-16s %-8s %7d %6d %7s  %-23s %-22s %.2f%s\n",
		r.Variant, r.Mode, r.Requests, r.Cases, failed, conv, to, r.CostRatio(), rulesNote(r))
}

func rulesNote(r *BenchRow) string {
	if len(r.Rules) == 0 {
		return ""
	}
	var parts []string
	for rule, n := range r.Rules {
		parts = append(parts, fmt.Sprintf("%s %d", rule, n))
	}
	sort.Strings(parts)
	return "  [" + strings.Join(parts, ", ") + "]"
}
