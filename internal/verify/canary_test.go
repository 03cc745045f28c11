package verify

import (
	"reflect"
	"strings"
	"testing"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// TestCanaryReplayAgreesWithScoring: on the simulator, greedy replay finds
// exactly the positions teacher-forced scoring flags — a divergence where
// the provider's token is not the reference's best, an early stop where
// ending is not — and counts the tokens the provider generated. Checked
// on the reference itself, on honest noise and on a cheaper quantization.
func TestCanaryReplayAgreesWithScoring(t *testing.T) {
	ref := newRef(t)
	mix := DefaultPromptMix(benchModel)
	c := DefaultCanary()
	c.MaxReplays = 1000 // replay every text to its end
	for _, p := range []struct {
		name string
		b    backend.Backend
	}{
		{"reference", ref},
		{"noise 0.01", &sim.Perturbed{Sim: ref, Noise: 0.01, Seed: 5}},
		{"noise 0.1", &sim.Perturbed{Sim: ref, Noise: 0.1, Seed: 6}},
		{"truncated", &Truncate{Backend: ref, Cap: 10}},
	} {
		totalDiv, totalEarly := 0, 0
		for i := range 150 {
			req := mix.Canary(i)
			resp, err := Collect(t.Context(), p.b, req)
			if err != nil {
				t.Fatal(err)
			}
			r, err := c.Replay(t.Context(), ref, req, resp)
			if err != nil {
				t.Fatal(err)
			}
			sc, err := SimScorer{Sim: ref}.Score(t.Context(), req, resp.Text)
			if err != nil {
				t.Fatal(err)
			}
			flagged := 0
			for _, tk := range sc.Tokens {
				if tk.Deficit() > 0 {
					flagged++
				}
			}
			early := resp.FinishReason == "stop" && sc.EndDeficit() > 0
			if r.Divergences != flagged || r.EarlyStop != early || r.Tokens != len(sc.Tokens) || r.Unverified {
				t.Fatalf("%s, canary %d (%q): replay %+v; scoring: %d tokens, %d flagged, early stop %v",
					p.name, i, resp.Text, r, len(sc.Tokens), flagged, early)
			}
			if uint64(r.Tokens) != resp.Usage.CompletionTokens {
				t.Fatalf("%s, canary %d: replay counted %d tokens, the provider generated %d", p.name, i, r.Tokens, resp.Usage.CompletionTokens)
			}
			totalDiv += r.Divergences
			if r.EarlyStop {
				totalEarly++
			}
		}
		t.Logf("%s: %d divergences, %d early stops in 150 canaries", p.name, totalDiv, totalEarly)
	}
}

// TestCanaryReplayEdgeCases: odd texts and settings give a result, never
// a panic or an endless loop.
func TestCanaryReplayEdgeCases(t *testing.T) {
	ref := newRef(t)
	req := DefaultPromptMix(benchModel).Canary(2)
	own, err := Collect(t.Context(), ref, req)
	if err != nil {
		t.Fatal(err)
	}
	chat := protocol.Request{Kind: protocol.KindChat, Model: benchModel, Messages: []protocol.ChatMessage{
		{Role: "user", Content: "Hi"}, {Role: "assistant", Content: "Hello"}}}
	tests := []struct {
		name   string
		canary Canary
		req    protocol.Request
		resp   Response
		check  func(Replayed) bool
	}{
		{"own answer", DefaultCanary(), req, own, func(r Replayed) bool { return r.Divergences == 0 && !r.EarlyStop && r.Replays == 1 }},
		{"empty text, stop", DefaultCanary(), req, Response{FinishReason: "stop"}, func(r Replayed) bool { return r.EarlyStop && r.Tokens == 0 }},
		{"empty text, length", DefaultCanary(), req, Response{FinishReason: "length"}, func(r Replayed) bool { return !r.EarlyStop && r.Tokens == 0 }},
		{"invalid UTF-8", DefaultCanary(), req, Response{Text: "\xff\xfe\xfd", FinishReason: "stop"}, func(r Replayed) bool { return r.Divergences == 3 }},
		{"newlines", DefaultCanary(), req, Response{Text: "\n\n", FinishReason: "stop"}, func(r Replayed) bool { return r.Divergences == 2 }},
		{"foreign words, capped", DefaultCanary(), req, Response{Text: strings.Repeat(" hello", 20), FinishReason: "stop"},
			func(r Replayed) bool { return r.Unverified && r.Replays == 8 && r.Divergences == 8 }},
		{"no replays allowed", Canary{}, req, own, func(r Replayed) bool { return r.Replays == 1 }},
		{"no token limit", Canary{}, protocol.Request{Kind: protocol.KindGenerate, Model: benchModel, Prompt: "x"}, Response{Text: " ba be", FinishReason: "stop"},
			func(r Replayed) bool { return r.Tokens >= 1 }},
		{"chat ending in an assistant message", DefaultCanary(), chat, Response{Text: " wo", FinishReason: "stop"}, func(r Replayed) bool { return r.Tokens == 1 }},
		{"text past the limit", DefaultCanary(), withMax(req, 2), Response{Text: own.Text + own.Text, FinishReason: "length"},
			func(r Replayed) bool { return r.Tokens > 2 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := tt.canary.Replay(t.Context(), ref, tt.req, tt.resp)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(r) {
				t.Fatalf("unexpected replay %+v", r)
			}
			if v := tt.canary.Decide([]Replayed{r}); v.Pass == (v.Rule != "") {
				t.Fatalf("inconsistent verdict %+v", v)
			}
		})
	}
	if _, err := DefaultCanary().Replay(t.Context(), ref, protocol.Request{Kind: protocol.KindChat, Model: "nope"}, own); err == nil {
		t.Fatal("unknown model: no error")
	}
}

func withMax(req protocol.Request, n int) protocol.Request {
	req.Options.MaxTokens = n
	return req
}

func TestCanaryDecide(t *testing.T) {
	honest := func(tokens, div int) Replayed {
		return Replayed{Tokens: tokens, Divergences: div, FirstDivergence: -1, Claimed: uint64(tokens), Finish: "stop", Limit: 128}
	}
	batch := func(rs ...Replayed) []Replayed { return rs }
	c := DefaultCanary()
	// 8 canaries of 25 tokens: λ = 0.02 × 200 = 4, and P(X ≥ 17) =
	// 1.13e-6, P(X ≥ 18) = 2.48e-7: the threshold is 18.
	if need := poissonThreshold(4, 1e-6, 3); need != 18 {
		t.Fatalf("threshold %d for λ=4, want 18", need)
	}
	spread := func(total int) []Replayed {
		var rs []Replayed
		for i := range 8 {
			d := total / 8
			if i < total%8 {
				d++
			}
			rs = append(rs, honest(25, d))
		}
		return rs
	}
	early := honest(25, 0)
	early.EarlyStop = true
	tests := []struct {
		name string
		rs   []Replayed
		rule Rule
	}{
		{"no canaries", nil, ""},
		{"exact", spread(0), ""},
		{"divergences below the threshold", spread(17), ""},
		{"divergences at the threshold", spread(18), RuleDivergence},
		// λ = 0.02 × 8 = 0.16: P(X ≥ 4) = 2.4e-5, P(X ≥ 5) = 7.6e-7.
		{"four early stops in eight", batch(early, early, early, early, honest(25, 0), honest(25, 0), honest(25, 0), honest(25, 0)), ""},
		{"five early stops in eight", batch(early, early, early, early, early, honest(25, 0), honest(25, 0), honest(25, 0)), RuleEarlyStop},
		{"inflated count", batch(Replayed{Tokens: 10, Claimed: 20, Finish: "stop"}), RuleCount},
		{"inflated but unverified", batch(Replayed{Tokens: 10, Claimed: 20, Finish: "stop", Unverified: true}), ""},
		{"short of the limit", batch(Replayed{Tokens: 10, Claimed: 10, Finish: "length", Limit: 64}), RuleLength},
		{"odd finish", batch(Replayed{Finish: "eos"}), RuleFinish},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := c.Decide(tt.rs)
			if v.Rule != tt.rule || v.Pass != (tt.rule == "") {
				t.Fatalf("got pass=%v rule %q (%s), want %q", v.Pass, v.Rule, v.Reason, tt.rule)
			}
		})
	}
}

func TestContinueFrom(t *testing.T) {
	seed := int64(4)
	chat := protocol.Request{Kind: protocol.KindChat, Messages: []protocol.ChatMessage{{Role: "user", Content: "Hi"}},
		Options: protocol.Options{Temperature: temp(0.9), Seed: &seed, Logprobs: true, TopLogprobs: 3, MaxTokens: 50}}
	r := continueFrom(chat, " so", 7)
	if len(r.Messages) != 2 || !reflect.DeepEqual(r.Messages[1], protocol.ChatMessage{Role: "assistant", Content: " so"}) ||
		*r.Options.Temperature != 0 || r.Options.MaxTokens != 7 || r.Options.Logprobs || r.Options.TopLogprobs != 0 {
		t.Fatalf("chat continuation %+v", r)
	}
	if len(chat.Messages) != 1 || *chat.Options.Temperature != 0.9 {
		t.Fatal("continueFrom changed the original request")
	}
	r = continueFrom(r, " far", 3)
	if len(r.Messages) != 2 || r.Messages[1].Content != " so far" {
		t.Fatalf("continuing a continuation: %+v", r.Messages)
	}
	gen := continueFrom(protocol.Request{Kind: protocol.KindGenerate, Prompt: "Q:"}, " yes", 1)
	if gen.Prompt != "Q: yes" {
		t.Fatalf("completion continuation %q", gen.Prompt)
	}
}

func TestSplitTokens(t *testing.T) {
	for text, want := range map[string][]string{
		"":                      nil,
		" ba be, ti.":           {" ba", " be", ",", " ti", "."},
		"  x":                   {" ", " x"},
		"a\nb":                  {"a", "\n", "b"},
		" héllo😀":               {" héllo", "😀"},
		"\xff ba":               {"\xff", " ba"},
		"trailing ":             {"trailing", " "},
		strings.Repeat("a", 40): {strings.Repeat("a", 40)},
	} {
		got := splitTokens(text)
		if strings.Join(got, "|") != strings.Join(want, "|") || len(got) != len(want) {
			t.Errorf("splitTokens(%q) = %q, want %q", text, got, want)
		}
	}
}
