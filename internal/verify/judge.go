package verify

import (
	"errors"
	"fmt"
	"math"

	"github.com/idlegrid/idlegrid/internal/protocol"
)

// Response is what a provider returned for one request: the evidence an
// audit judges.
type Response struct {
	Text string
	// FinishReason is "stop" or "length".
	FinishReason string
	// Usage is what the provider claimed (and billed).
	Usage protocol.Usage
}

// Rule names the rule behind a failed verdict.
type Rule string

// The rules. Their order in a Judge or Canary is the order listed: the
// first that fails names the verdict.
const (
	RuleFinish     Rule = "finish"     // the finish reason is neither "stop" nor "length"
	RuleCount      Rule = "count"      // claimed tokens exceed what the text holds
	RuleLength     Rule = "length"     // "length" claimed below (or beyond) the token limit
	RuleHard       Rule = "hard"       // a token far below the reference's best
	RuleSoft       Rule = "soft"       // too many tokens clearly below the reference's best
	RuleEnd        Rule = "end"        // a stop the reference finds improbable
	RuleDivergence Rule = "divergence" // canaries: more greedy divergences than noise explains
	RuleEarlyStop  Rule = "early-stop" // canaries: more early stops than noise explains
	RuleEmbedding  Rule = "embedding"  // a vector further from the reference's than noise explains
)

// Verdict is the outcome of one audit.
type Verdict struct {
	Pass bool
	// Rule is the first rule that failed ("" on a pass) and Reason says
	// why, with the figures.
	Rule   Rule
	Reason string
	// Tokens is how many completion tokens the rules looked at; Flagged
	// how many of them the soft rule counted (or, for canaries, the
	// divergences); MaxDeficit the largest per-token deficit.
	Tokens     int
	Flagged    int
	MaxDeficit float64
}

func pass(tokens, flagged int, maxDeficit float64) Verdict {
	return Verdict{Pass: true, Tokens: tokens, Flagged: flagged, MaxDeficit: maxDeficit}
}

func failed(r Rule, tokens, flagged int, maxDeficit float64, format string, args ...any) Verdict {
	return Verdict{Rule: r, Reason: fmt.Sprintf(format, args...), Tokens: tokens, Flagged: flagged, MaxDeficit: maxDeficit}
}

// Judge decides a re-scoring audit from a reference's Scores. Deficits are
// in nats: the reference's best log-probability at a position minus the
// log-probability of the provider's token there.
//
// A greedy request (temperature ≤ 0, or unset and DefaultTemperature 0)
// must follow the reference's choice up to hardware noise: an honest
// provider differs only where candidates nearly tie, so its deficits are
// as small as the noise; continuing from its own prefix after such a flip
// costs nothing under teacher forcing. A sampled request (temperature T >
// 0) may pick any candidate, so only deficits far beyond what sampling
// at T makes likely count.
type Judge struct {
	// HardDeficit: a greedy answer with one token further below the
	// reference's best fails.
	HardDeficit float64
	// SoftDeficit, SoftMinCount, SoftRate: a greedy answer fails when the
	// tokens whose deficit exceeds SoftDeficit number at least
	// max(SoftMinCount, ⌈SoftRate × tokens⌉).
	SoftDeficit  float64
	SoftMinCount int
	SoftRate     float64
	// EndDeficit: an answer that claims to have stopped by itself (finish
	// "stop") fails when ending there, or running into one of the
	// request's stop strings, is further below the reference's best.
	EndDeficit float64
	// SampledDeficit, SampledMinCount, SampledRate: a sampled answer fails
	// when the tokens whose deficit divided by the temperature exceeds
	// SampledDeficit number at least max(SampledMinCount, ⌈SampledRate ×
	// tokens⌉), or when its stop's deficit divided by the temperature
	// exceeds SampledDeficit. Under sampling at temperature T from K
	// candidates a token has deficit/T > x with probability at most K·e^−x.
	SampledDeficit  float64
	SampledMinCount int
	SampledRate     float64
	// CountSlack and CountSlackRate: claimed completion (and prompt)
	// tokens may exceed the reference's count of the text by
	// CountSlack + ⌊CountSlackRate × count⌋ (tokenizers of one model agree
	// up to how a text is split at a few places), plus the tokens a stop
	// string cut.
	CountSlack     int
	CountSlackRate float64
	// DefaultTemperature is the backend's temperature when a request sets
	// none (0 for the simulator: greedy).
	DefaultTemperature float64
	// DefaultMaxTokens is the token limit of a request that sets none (0:
	// unknown, and the "length" rule checks nothing).
	DefaultMaxTokens int
	// EmbeddingMinCosine: an embed answer fails when one of its vectors
	// has a cosine similarity to the reference's below it (embed.go).
	EmbeddingMinCosine float64
}

// DefaultJudge is the judge the verifier runs and the benchmark measures.
// On the simulator's logits (spanning 0–5) honest noise with a standard
// deviation up to 0.03 — three times the largest honest control, flipping
// near-ties on ~3% of tokens with deficits of hundredths of a nat — passes
// 10,000 audits without a failure, and a quantization with noise 0.1 is
// convicted within 200; docs/verification.md says how they were chosen.
func DefaultJudge() Judge {
	return Judge{
		HardDeficit: 2, SoftDeficit: 0.1, SoftMinCount: 2, SoftRate: 0.03,
		EndDeficit:     1,
		SampledDeficit: 10, SampledMinCount: 3, SampledRate: 0.05,
		CountSlack: 1, CountSlackRate: 0.02,
		EmbeddingMinCosine: DefaultEmbeddingMinCosine,
	}
}

// ErrBadScores: the reference's scores cannot be judged (not a number
// where a log-probability belongs). The verifier abstains: it is not the
// provider's fault.
var ErrBadScores = errors.New("verify: the reference's scores are not numbers")

// Rescore judges resp, the provider's answer to req, from the reference's
// scores of resp.Text. The rules run in the order of the Rule constants.
func (j Judge) Rescore(req protocol.Request, resp Response, sc Scores) (Verdict, error) {
	if math.IsNaN(sc.EndLogprob) || math.IsNaN(sc.EndBest) || math.IsNaN(sc.StopDeficit) {
		return Verdict{}, ErrBadScores
	}
	for _, t := range sc.Tokens {
		if math.IsNaN(t.Logprob) || math.IsNaN(t.BestLogprob) {
			return Verdict{}, ErrBadScores
		}
	}
	temp := j.DefaultTemperature
	if t := req.Options.Temperature; t != nil {
		temp = *t
	}
	if math.IsNaN(temp) || math.IsInf(temp, 0) {
		temp = 0 // the provider cannot have sampled at it: judge as greedy
	}
	n := len(sc.Tokens)
	counted := n
	switch resp.FinishReason {
	case "stop", "length":
	default:
		return failed(RuleFinish, n, 0, 0, "finish reason %q is neither stop nor length", resp.FinishReason), nil
	}

	// How the answer ended: by the model's end of text, or by a stop
	// string (then the last token may be cut short, and the tokens the
	// stop string cut were counted but not sent).
	endDef := sc.EndDeficit()
	byStop := false
	if resp.FinishReason == "stop" && sc.StopDeficit <= endDef {
		endDef, byStop = sc.StopDeficit, true
		counted += sc.StopTokens
	}
	scored := sc.Tokens
	if byStop && n > 0 {
		scored = scored[:n-1] // its deficit is part of StopDeficit
	}

	if v, bad := j.checkCounts(req, resp, sc, counted); bad {
		return v, nil
	}

	sampled := temp > 0
	threshold, minCount, rate := j.SoftDeficit, j.SoftMinCount, j.SoftRate
	scale := 1.0
	if sampled {
		threshold, minCount, rate, scale = j.SampledDeficit, j.SampledMinCount, j.SampledRate, 1/temp
	}
	flagged, worst, worstAt := 0, 0.0, -1
	for i, t := range scored {
		d := t.Deficit()
		if d > worst {
			worst, worstAt = d, i
		}
		if d*scale > threshold {
			flagged++
		}
	}
	if !sampled && worst > j.HardDeficit {
		t := scored[worstAt]
		return failed(RuleHard, len(scored), flagged, worst,
			"token %d %q is %.2f nats below the reference's best %q (hard limit %.2f)", worstAt, t.Token, worst, t.Best, j.HardDeficit), nil
	}
	need := required(minCount, rate, len(scored))
	if flagged >= need {
		what := fmt.Sprintf("more than %.2f nats below the reference's best", threshold)
		if sampled {
			what = fmt.Sprintf("more than %.1f × temperature %.2f nats below the reference's best", threshold, temp)
		}
		return failed(RuleSoft, len(scored), flagged, worst, "%d of %d tokens are %s (limit %d)", flagged, len(scored), what, need), nil
	}
	if resp.FinishReason == "stop" {
		limit := j.EndDeficit
		if sampled {
			limit = j.SampledDeficit * temp
		}
		if endDef > limit {
			how := "ending"
			if len(req.Options.Stop) > 0 {
				how = "ending or reaching a stop string"
			}
			return failed(RuleEnd, len(scored), flagged, worst,
				"finish \"stop\" after %d tokens, but %s there is %.2f nats below the reference's best (limit %.2f)", n, how, endDef, limit), nil
		}
	}
	return pass(len(scored), flagged, worst), nil
}

// checkCounts applies the count and length rules.
func (j Judge) checkCounts(req protocol.Request, resp Response, sc Scores, counted int) (Verdict, bool) {
	n := len(sc.Tokens)
	if claimed := resp.Usage.CompletionTokens; claimed > uint64(j.allowance(counted)) {
		return failed(RuleCount, n, 0, 0, "%d completion tokens claimed, the text holds %d (allowed %d)", claimed, counted, j.allowance(counted)), true
	}
	if claimed := resp.Usage.PromptTokens; claimed > uint64(j.allowance(sc.PromptTokens)) {
		return failed(RuleCount, n, 0, 0, "%d prompt tokens claimed, the prompt holds %d (allowed %d)", claimed, sc.PromptTokens, j.allowance(sc.PromptTokens)), true
	}
	limit := req.Options.MaxTokens
	if limit <= 0 {
		limit = j.DefaultMaxTokens
	}
	// A text re-tokenized can come out a few tokens shorter or longer than
	// the tokens generated (a real tokenizer merges differently): the same
	// slack both ways.
	if resp.FinishReason == "length" && limit > 0 && (j.allowance(counted) < limit || counted > j.allowance(limit)) {
		return failed(RuleLength, n, 0, 0, "finish \"length\" with %d tokens, the limit is %d", counted, limit), true
	}
	return Verdict{}, false
}

// allowance is the most tokens a claim may name for a text of counted
// tokens.
func (j Judge) allowance(counted int) int { return allowance(counted, j.CountSlack, j.CountSlackRate) }

// allowance is counted + slack + ⌊rate × counted⌋, saturating, with a
// negative or NaN slack or rate taken as 0.
func allowance(counted, slack int, rate float64) int {
	if !(rate > 0) {
		rate = 0
	}
	a := float64(counted) + float64(max(slack, 0)) + math.Floor(rate*float64(counted))
	if a >= math.MaxInt64 {
		return math.MaxInt64
	}
	return int(a)
}

// required is max(minCount, ⌈rate × n⌉, 1): how many flagged tokens fail
// an answer of n tokens.
func required(minCount int, rate float64, n int) int {
	need := max(minCount, 1)
	if r := math.Ceil(rate * float64(n)); r > float64(need) {
		need = int(min(r, math.MaxInt32))
	}
	return need
}

// Divergences judges a replayed answer by the deficits of the provider's
// tokens where it diverged from the reference (Replayed.Deficits; every
// other token was the reference's greedy choice, deficit 0), with the
// re-scoring rules: for a greedy request the hard and soft rules, for a
// sampled one the sampled rule; and, for an answer that stopped by itself
// where the reference went on, by the deficit of ending there
// (Replayed.EndDeficit) with the end rule: above EndDeficit for a greedy
// answer, above SampledDeficit × temperature for a sampled one. A replay
// without log-probabilities passes here (Canary.Decide judges its
// divergences and early stops).
func (j Judge) Divergences(req protocol.Request, r Replayed) Verdict {
	temp := j.DefaultTemperature
	if t := req.Options.Temperature; t != nil {
		temp = *t
	}
	if math.IsNaN(temp) || math.IsInf(temp, 0) {
		temp = 0
	}
	sampled := temp > 0
	threshold, minCount, rate, scale := j.SoftDeficit, j.SoftMinCount, j.SoftRate, 1.0
	if sampled {
		threshold, minCount, rate, scale = j.SampledDeficit, j.SampledMinCount, j.SampledRate, 1/temp
	}
	flagged, worst := 0, 0.0
	for _, d := range r.Deficits {
		worst = max(worst, d)
		if d*scale > threshold {
			flagged++
		}
	}
	if !sampled && worst > j.HardDeficit {
		return failed(RuleHard, r.Tokens, flagged, worst, "a divergence %.2f nats below the reference's best (hard limit %.2f)", worst, j.HardDeficit)
	}
	if need := required(minCount, rate, r.Tokens); flagged >= need {
		what := fmt.Sprintf("more than %.2f nats below the reference's best", threshold)
		if sampled {
			what = fmt.Sprintf("more than %.1f × temperature %.2f nats below the reference's best", threshold, temp)
		}
		return failed(RuleSoft, r.Tokens, flagged, worst, "%d of %d tokens are %s (limit %d)", flagged, r.Tokens, what, need)
	}
	if r.EndScored {
		limit := j.EndDeficit
		if sampled {
			limit = j.SampledDeficit * temp
		}
		if r.EndDeficit > limit {
			return failed(RuleEnd, r.Tokens, flagged, worst,
				"finish \"stop\" after %d tokens where the reference goes on, but ending there is %.2f nats below the reference's best (limit %.2f)", r.Tokens, r.EndDeficit, limit)
		}
	}
	return pass(r.Tokens, flagged, worst)
}
