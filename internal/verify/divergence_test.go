package verify

import (
	"math"
	"testing"

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
	}
	for _, c := range cases {
		v := j.Divergences(c.req, c.r)
		if v.Rule != c.rule || v.Pass != (c.rule == "") {
			t.Errorf("%s: %+v, want rule %q", c.name, v, c.rule)
		}
	}
}
