package verify

import (
	"math"
	"testing"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// TestTokenDeficit: the provider's token is the longest candidate its
// text starts with; one outside the candidates gets the last one's
// deficit, a lower bound.
func TestTokenDeficit(t *testing.T) {
	top := []protocol.TopLogprob{{Token: " the", Logprob: -0.5}, {Token: " th", Logprob: -1.5}, {Token: " a", Logprob: -3}}
	for rest, want := range map[string]float64{" the sea": 0, " thin": 1, " a cat": 2.5, " xyz": 2.5} {
		if got := tokenDeficit(top, rest); math.Abs(got-want) > 1e-9 {
			t.Errorf("%q: deficit %v, want %v", rest, got, want)
		}
	}
}

// TestJudgeDivergences: near-tie divergences pass; one far below the
// reference's best fails a greedy answer (hard), many clearly below fail
// it (soft); a sampled answer is judged by deficit over temperature.
func TestJudgeDivergences(t *testing.T) {
	j := DefaultJudge()
	zero, hot := 0.0, 1.0
	greedy := protocol.Request{Options: protocol.Options{Temperature: &zero}}
	sampled := protocol.Request{Options: protocol.Options{Temperature: &hot}}
	cases := []struct {
		name string
		req  protocol.Request
		r    Replayed
		rule Rule
	}{
		{"honest flips", greedy, Replayed{Tokens: 100, Deficits: []float64{0.01, 0.02, 0.005}}, ""},
		{"hard", greedy, Replayed{Tokens: 100, Deficits: []float64{0.01, 2.5}}, RuleHard},
		{"soft", greedy, Replayed{Tokens: 100, Deficits: []float64{0.3, 0.4, 0.5, 0.2}}, RuleSoft},
		{"sampled plausible", sampled, Replayed{Tokens: 8, Deficits: []float64{2.5, 3, 1, 0.5, 4}}, ""},
		{"sampled foreign", sampled, Replayed{Tokens: 8, Deficits: []float64{12, 15, 11, 0.5}}, RuleSoft},
		{"no log-probabilities", greedy, Replayed{Tokens: 100}, ""},
		{"greedy stop at a near tie", greedy, Replayed{Tokens: 20, EarlyStop: true, EndScored: true, EndDeficit: 0.1}, ""},
		{"greedy stop the reference finds improbable", greedy, Replayed{Tokens: 20, EarlyStop: true, EndScored: true, EndDeficit: 4}, RuleEnd},
		{"sampled stop, plausible", sampled, Replayed{Tokens: 8, EarlyStop: true, EndScored: true, EndDeficit: 3}, ""},
		{"sampled stop, implausible", sampled, Replayed{Tokens: 8, EarlyStop: true, EndScored: true, EndDeficit: 40}, RuleEnd},
	}
	for _, c := range cases {
		v := j.Divergences(c.req, c.r)
		if v.Rule != c.rule || v.Pass != (c.rule == "") {
			t.Errorf("%s: %+v, want rule %q", c.name, v, c.rule)
		}
	}
}

// TestEndDeficit: ending is scored by the best end-of-text candidate
// (no text, or a special token); with none among the candidates, by the
// last candidate, a lower bound.
func TestEndDeficit(t *testing.T) {
	for _, c := range []struct {
		top  []protocol.TopLogprob
		want float64
	}{
		{[]protocol.TopLogprob{{Token: " the", Logprob: -0.5}, {Token: "", Logprob: -0.7}, {Token: " a", Logprob: -3}}, 0.2},
		{[]protocol.TopLogprob{{Token: " the", Logprob: -0.5}, {Token: "<|im_end|>", Logprob: -1.5}, {Token: " a", Logprob: -3}}, 1},
		{[]protocol.TopLogprob{{Token: "</s>", Logprob: -0.1}, {Token: " a", Logprob: -3}}, 0},
		{[]protocol.TopLogprob{{Token: " the", Logprob: -0.5}, {Token: " a", Logprob: -3}}, 2.5},
	} {
		if got := endDeficit(c.top); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("%v: end deficit %v, want %v", c.top, got, c.want)
		}
	}
}

// TestEndRuleOnSimulator: replaying answers cut short with finish "stop"
// on the simulator with log-probabilities scores each early stop (a lower
// bound of the deficit teacher-forced scoring gives it when the end is
// not among the reference's top candidates), and the end rule of
// Divergences fails those above its limit; the reference's own
// answers, which stop where it stops, have no early stop to score.
func TestEndRuleOnSimulator(t *testing.T) {
	ref := newRef(t)
	mix := DefaultPromptMix(benchModel)
	c := DefaultCanary()
	c.MaxReplays = 1000
	j := DefaultJudge()
	for _, p := range []struct {
		name string
		b    backend.Backend
	}{{"reference", ref}, {"truncated", &Truncate{Backend: ref, Cap: 10}}} {
		scored, failedEnd := 0, 0
		for i := range 100 {
			req := mix.Canary(i)
			resp, err := Collect(t.Context(), p.b, req)
			if err != nil {
				t.Fatal(err)
			}
			r, err := c.Replay(t.Context(), ref, req, resp)
			if err != nil {
				t.Fatal(err)
			}
			if r.EarlyStop && !r.EndScored {
				t.Fatalf("%s, canary %d: an early stop without its deficit: %+v", p.name, i, r)
			}
			if !r.EndScored {
				continue
			}
			scored++
			sc, err := SimScorer{Sim: ref}.Score(t.Context(), req, resp.Text)
			if err != nil {
				t.Fatal(err)
			}
			if r.EndDeficit > sc.EndDeficit()+1e-6 {
				t.Fatalf("%s, canary %d: replay scored the stop %.3f below the best, more than scoring's %.3f", p.name, i, r.EndDeficit, sc.EndDeficit())
			}
			if v := j.Divergences(req, r); v.Rule == RuleEnd {
				failedEnd++
			} else if r.EndDeficit > j.EndDeficit {
				t.Fatalf("%s, canary %d: stop %.2f below the best passed: %+v", p.name, i, r.EndDeficit, v)
			}
		}
		t.Logf("%s: %d early stops scored, %d failed the end rule", p.name, scored, failedEnd)
		switch {
		case p.name == "reference" && scored > 0:
			t.Errorf("the reference's own answers had %d early stops", scored)
		case p.name == "truncated" && failedEnd == 0:
			t.Error("no truncated answer failed the end rule")
		}
	}
}
