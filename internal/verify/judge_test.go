package verify

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

func newRef(t testing.TB) *sim.Sim {
	t.Helper()
	ref, err := NewBenchReference()
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// TestJudgePassesTheReference: the reference's own answers to the traffic
// mix — greedy, sampled, cut by stop strings — all pass.
func TestJudgePassesTheReference(t *testing.T) {
	ref := newRef(t)
	mix := DefaultPromptMix(benchModel)
	mix.StopShare = 0.3
	j := DefaultJudge()
	failures, sampled, stops := 0, 0, 0
	for i := range 600 {
		req := mix.Traffic(i)
		resp, err := Collect(t.Context(), ref, req)
		if err != nil {
			t.Fatal(err)
		}
		sc, err := SimScorer{Sim: ref}.Score(t.Context(), req, resp.Text)
		if err != nil {
			t.Fatal(err)
		}
		v, err := j.Rescore(req, resp, sc)
		if err != nil {
			t.Fatal(err)
		}
		if req.Options.Temperature != nil {
			sampled++
		}
		if len(req.Options.Stop) > 0 {
			stops++
		}
		if !v.Pass {
			failures++
			t.Errorf("request %d: %s: %s", i, v.Rule, v.Reason)
		}
	}
	if sampled == 0 || stops == 0 {
		t.Fatalf("%d sampled requests and %d with stop strings: the mix does not cover them", sampled, stops)
	}
	t.Logf("600 answers of the reference: %d failed (%d sampled, %d with stop strings)", failures, sampled, stops)
}

func tokens(deficits ...float64) []TokenScore {
	out := make([]TokenScore, len(deficits))
	for i, d := range deficits {
		out[i] = TokenScore{Token: " wa", Logprob: -1 - d, Best: " wa", BestLogprob: -1}
	}
	return out
}

func repeat(d float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = d
	}
	return out
}

func temp(t float64) *float64 { return &t }

// TestJudgeRules: each rule on its own, at and around its threshold, and
// the edge cases — empty and one-token answers, unknown tokens, odd
// finish reasons and temperatures, a zero Judge.
func TestJudgeRules(t *testing.T) {
	greedy := protocol.Request{Kind: protocol.KindChat, Model: "sim", Options: protocol.Options{MaxTokens: 64}}
	sampledAt := func(tp float64) protocol.Request { r := greedy; r.Options.Temperature = temp(tp); return r }
	withStop := greedy
	withStop.Options.Stop = []string{"a"}
	ended := func(ts []TokenScore) Scores {
		return Scores{PromptTokens: 10, Tokens: ts, EndLogprob: -0.5, EndBest: -0.5, StopDeficit: math.Inf(1)}
	}
	resp := func(finish string, n uint64) Response {
		return Response{FinishReason: finish, Usage: protocol.Usage{PromptTokens: 10, CompletionTokens: n}}
	}
	tests := []struct {
		name  string
		judge Judge
		req   protocol.Request
		resp  Response
		sc    Scores
		rule  Rule // "" for a pass
	}{
		{"empty answer, ending is best", DefaultJudge(), greedy, resp("stop", 0), ended(nil), ""},
		{"empty answer, ending improbable", DefaultJudge(), greedy, resp("stop", 0),
			Scores{PromptTokens: 10, EndLogprob: -7, EndBest: -0.5, StopDeficit: math.Inf(1)}, RuleEnd},
		{"empty answer at the length limit", DefaultJudge(), greedy, resp("length", 0), ended(nil), RuleLength},
		{"empty answer, limit unknown", DefaultJudge(), protocol.Request{Kind: protocol.KindChat}, resp("length", 0), ended(nil), ""},
		{"one token, near-tie flip", DefaultJudge(), greedy, resp("stop", 1), ended(tokens(0.05)), ""},
		{"one unknown token", DefaultJudge(), greedy, resp("stop", 1), ended(tokens(11.6)), RuleHard},
		{"one token just under the hard limit", DefaultJudge(), greedy, resp("stop", 3), ended(tokens(0, 1.99, 0)), ""},
		{"one token just over the hard limit", DefaultJudge(), greedy, resp("stop", 3), ended(tokens(0, 2.01, 0)), RuleHard},
		{"one soft token in ten", DefaultJudge(), greedy, resp("stop", 10), ended(tokens(append(repeat(0, 9), 0.5)...)), ""},
		{"two soft tokens in ten", DefaultJudge(), greedy, resp("stop", 10), ended(tokens(append(repeat(0, 8), 0.5, 0.11)...)), RuleSoft},
		{"two soft tokens in a hundred", DefaultJudge(), greedy, resp("stop", 100), ended(tokens(append(repeat(0, 98), 0.5, 0.5)...)), ""},
		{"three soft tokens in a hundred", DefaultJudge(), greedy, resp("stop", 100), ended(tokens(append(repeat(0, 97), 0.5, 0.5, 0.5)...)), RuleSoft},
		{"at the length limit", DefaultJudge(), greedy, resp("length", 64), ended(tokens(repeat(0, 64)...)), ""},
		{"length claimed below the limit", DefaultJudge(), greedy, resp("length", 20), ended(tokens(repeat(0, 20)...)), RuleLength},
		{"length claimed beyond the limit", DefaultJudge(), greedy, resp("length", 80), ended(tokens(repeat(0, 80)...)), RuleLength},
		{"completion tokens inflated", DefaultJudge(), greedy, resp("stop", 30), ended(tokens(repeat(0, 20)...)), RuleCount},
		{"completion tokens within slack", DefaultJudge(), greedy, resp("stop", 21), ended(tokens(repeat(0, 20)...)), ""},
		{"prompt tokens inflated", DefaultJudge(), greedy, Response{FinishReason: "stop", Usage: protocol.Usage{PromptTokens: 50, CompletionTokens: 2}}, ended(tokens(0, 0)), RuleCount},
		{"fewer tokens claimed", DefaultJudge(), greedy, resp("stop", 0), ended(tokens(0, 0, 0)), ""},
		{"no finish reason", DefaultJudge(), greedy, resp("", 1), ended(tokens(0)), RuleFinish},
		{"unknown finish reason", DefaultJudge(), greedy, resp("content_filter", 1), ended(tokens(0)), RuleFinish},
		{"sampled, unlikely candidates", DefaultJudge(), sampledAt(1), resp("stop", 10), ended(tokens(repeat(4, 10)...)), ""},
		{"sampled, two foreign tokens", DefaultJudge(), sampledAt(1), resp("stop", 10), ended(tokens(append(repeat(0, 8), 11, 11)...)), ""},
		{"sampled, three foreign tokens", DefaultJudge(), sampledAt(1), resp("stop", 10), ended(tokens(append(repeat(0, 7), 11, 11, 11)...)), RuleSoft},
		{"sampled cold, scaled", DefaultJudge(), sampledAt(0.2), resp("stop", 10), ended(tokens(append(repeat(0, 7), 2.1, 2.1, 2.1)...)), RuleSoft},
		{"sampled, improbable stop", DefaultJudge(), sampledAt(0.5), resp("stop", 1),
			Scores{PromptTokens: 10, Tokens: tokens(0), EndLogprob: -8, EndBest: -0.5, StopDeficit: math.Inf(1)}, RuleEnd},
		{"NaN temperature is greedy", DefaultJudge(), sampledAt(math.NaN()), resp("stop", 1), ended(tokens(5)), RuleHard},
		{"infinite temperature is greedy", DefaultJudge(), sampledAt(math.Inf(1)), resp("stop", 1), ended(tokens(5)), RuleHard},
		{"negative temperature is greedy", DefaultJudge(), sampledAt(-1), resp("stop", 1), ended(tokens(5)), RuleHard},
		{"cut inside a token by a stop string", DefaultJudge(), withStop, resp("stop", 3),
			Scores{PromptTokens: 10, Tokens: tokens(0, 0, 11.7), EndLogprob: -6, EndBest: -0.5, StopDeficit: 0, StopTokens: 0}, ""},
		{"stop string cut a counted token", DefaultJudge(), withStop, resp("stop", 4),
			Scores{PromptTokens: 10, Tokens: tokens(0, 0, 0), EndLogprob: -6, EndBest: -0.5, StopDeficit: 0, StopTokens: 1}, ""},
		{"stop string out of reach", DefaultJudge(), withStop, resp("stop", 3),
			Scores{PromptTokens: 10, Tokens: tokens(0, 0, 0), EndLogprob: -6, EndBest: -0.5, StopDeficit: 3, StopTokens: 1}, RuleEnd},
		{"zero judge, exact answer", Judge{}, greedy, resp("stop", 2), ended(tokens(0, 0)), ""},
		{"zero judge, any deficit", Judge{}, greedy, resp("stop", 2), ended(tokens(0, 0.01)), RuleHard},
		{"huge limit", DefaultJudge(), withMax(greedy, math.MaxInt), resp("length", 3), ended(tokens(0, 0, 0)), RuleLength},
		{"NaN rates", Judge{SoftRate: math.NaN(), CountSlackRate: math.NaN(), SoftDeficit: 0.1, SoftMinCount: 2, HardDeficit: 2}, greedy, resp("stop", 2), ended(tokens(0, 0.5)), ""},
		{"default max tokens", Judge{DefaultMaxTokens: 5, CountSlack: 1}, protocol.Request{Kind: protocol.KindGenerate}, resp("length", 3), ended(tokens(0, 0, 0)), RuleLength},
		// A re-tokenized text may come out a token short of what was generated.
		{"length one token short, within the slack", Judge{DefaultMaxTokens: 5, CountSlack: 1}, protocol.Request{Kind: protocol.KindGenerate}, resp("length", 4), ended(tokens(0, 0, 0, 0)), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.resp.Text = strings.Repeat(" wa", len(tt.sc.Tokens))
			v, err := tt.judge.Rescore(tt.req, tt.resp, tt.sc)
			if err != nil {
				t.Fatal(err)
			}
			if v.Rule != tt.rule || v.Pass != (tt.rule == "") {
				t.Fatalf("got pass=%v rule %q (%s), want rule %q", v.Pass, v.Rule, v.Reason, tt.rule)
			}
			if !v.Pass && v.Reason == "" {
				t.Fatal("a failed verdict without a reason")
			}
		})
	}
}

func TestJudgeBadScores(t *testing.T) {
	req := protocol.Request{Kind: protocol.KindChat}
	for _, sc := range []Scores{
		{Tokens: []TokenScore{{Logprob: math.NaN()}}},
		{Tokens: []TokenScore{{BestLogprob: math.NaN()}}},
		{EndLogprob: math.NaN()},
		{StopDeficit: math.NaN()},
	} {
		if _, err := DefaultJudge().Rescore(req, Response{FinishReason: "stop"}, sc); !errors.Is(err, ErrBadScores) {
			t.Fatalf("%+v: %v, want ErrBadScores", sc, err)
		}
	}
}

// TestJudgeTextTheModelCannotProduce: real scores of text outside the
// model's vocabulary fail clearly.
func TestJudgeTextTheModelCannotProduce(t *testing.T) {
	ref := newRef(t)
	req := DefaultPromptMix(benchModel).Canary(3)
	for _, text := range []string{"\n", " 😀", "\xff", " hello world, this is not the model"} {
		sc, err := SimScorer{Sim: ref}.Score(t.Context(), req, text)
		if err != nil {
			t.Fatal(err)
		}
		v, err := DefaultJudge().Rescore(req, Response{Text: text, FinishReason: "stop", Usage: protocol.Usage{CompletionTokens: uint64(len(sc.Tokens))}}, sc)
		if err != nil {
			t.Fatal(err)
		}
		if v.Pass || v.Rule != RuleHard {
			t.Fatalf("%q: %+v, want a hard failure", text, v)
		}
	}
}

// FuzzJudge: any text, finish reason, claim and temperature gives a
// verdict (or ErrBadScores), never a panic; a failure always names its
// rule.
func FuzzJudge(f *testing.F) {
	f.Add(" wa be", "stop", uint64(2), 0.0, "")
	f.Add("", "length", uint64(0), 1.0, ".")
	f.Add("\xff\x00\n", "weird", uint64(1<<63), -3.0, "a")
	f.Add(" ka, ti.", "stop", uint64(4), math.Inf(1), "\xff")
	ref := newRef(f)
	f.Fuzz(func(t *testing.T, text, finish string, claimed uint64, temperature float64, stop string) {
		req := DefaultPromptMix(benchModel).Traffic(int(claimed % 97))
		req.Options.Temperature = &temperature
		req.Options.Stop = []string{stop}
		sc, err := SimScorer{Sim: ref}.Score(t.Context(), req, text)
		if err != nil {
			t.Fatal(err)
		}
		v, err := DefaultJudge().Rescore(req, Response{Text: text, FinishReason: finish, Usage: protocol.Usage{CompletionTokens: claimed}}, sc)
		if err != nil {
			if !errors.Is(err, ErrBadScores) {
				t.Fatal(err)
			}
			return
		}
		if v.Pass == (v.Rule != "") || !v.Pass && v.Reason == "" {
			t.Fatalf("inconsistent verdict %+v", v)
		}
	})
}
