package sim

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/backend/backendtest"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

func TestConformance(t *testing.T) {
	backendtest.Run(t, newSim(t, DefaultConfig()), "sim")
}

// fastConfig is DefaultConfig without delays, for tests about content.
func fastConfig(models ...ModelConfig) Config {
	cfg := DefaultConfig()
	cfg.Models[0].FirstToken, cfg.Models[0].TokensPerSecond = 0, 0
	cfg.Models = append(cfg.Models, models...)
	return cfg
}

func newSim(t testing.TB, cfg Config) *Sim {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// run generates and returns the deltas' tokens' texts, the text and the
// result.
type output struct {
	deltas []backend.Delta
	text   string
	res    backend.Result
}

func (o output) tokens() []string {
	var out []string
	for _, d := range o.deltas {
		out = append(out, d.Text)
	}
	return out
}

func run(t testing.TB, s *Sim, req protocol.Request) output {
	t.Helper()
	var o output
	var err error
	o.res, err = s.Generate(t.Context(), req, func(d backend.Delta) error {
		o.deltas = append(o.deltas, d)
		o.text += d.Text
		return nil
	})
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return o
}

func float(v float64) *float64 { return &v }
func seed(v int64) *int64      { return &v }

func TestExactTokenCounts(t *testing.T) {
	s := newSim(t, fastConfig())
	for i := range 20 {
		req := protocol.Request{Kind: protocol.KindGenerate, Model: "sim", Prompt: fmt.Sprintf("prompt %d", i),
			Options: protocol.Options{Logprobs: true}}
		o := run(t, s, req)
		if uint64(len(o.deltas)) != o.res.Usage.CompletionTokens {
			t.Fatalf("%d deltas, %d completion tokens", len(o.deltas), o.res.Usage.CompletionTokens)
		}
		for _, d := range o.deltas {
			if d.Tokens != 1 || len(d.Logprobs) != 1 || d.Logprobs[0].Token != d.Text {
				t.Fatalf("delta %+v: want one token with its logprob", d)
			}
		}
		if want := uint64(len(tokenize(req.Prompt))); o.res.Usage.PromptTokens != want {
			t.Fatalf("prompt tokens %d, want %d", o.res.Usage.PromptTokens, want)
		}
	}
}

func TestDeterminism(t *testing.T) {
	s := newSim(t, fastConfig())
	base := protocol.Request{Kind: protocol.KindChat, Model: "sim", Messages: []protocol.ChatMessage{{Role: "user", Content: "hi there"}}}
	sampled := base
	sampled.Options = protocol.Options{Temperature: float(0.9), Seed: seed(7), MaxTokens: 40}
	otherSeed := sampled
	otherSeed.Options.Seed = seed(8)
	if a, b := run(t, s, base).text, run(t, s, base).text; a != b {
		t.Errorf("greedy differs:\n%q\n%q", a, b)
	}
	// A fresh Sim must agree too: nothing may depend on process state.
	if a, b := run(t, s, sampled).text, run(t, newSim(t, fastConfig()), sampled).text; a != b {
		t.Errorf("same seed differs:\n%q\n%q", a, b)
	}
	if a, b := run(t, s, sampled).text, run(t, s, otherSeed).text; a == b {
		t.Errorf("seeds 7 and 8 gave the same text %q", a)
	}
}

// TestContinuation: generating from P gives T1..Tn; generating from P
// followed by the text of T1..Tk gives Tk+1..Tn, for every k, greedy and
// sampled, for generate and for chat (a final assistant message).
func TestContinuation(t *testing.T) {
	cfg := fastConfig()
	cfg.Models[0].IgnoreEOS = true // long answers: many k to try
	s := newSim(t, cfg)
	const n = 30
	for _, tc := range []struct {
		name string
		opts protocol.Options
	}{
		{"greedy", protocol.Options{MaxTokens: n}},
		{"sampled", protocol.Options{MaxTokens: n, Temperature: float(1.2), TopP: float(0.9), Seed: seed(99)}},
	} {
		for _, chat := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/chat=%v", tc.name, chat), func(t *testing.T) {
				req := func(prefix string) protocol.Request {
					if chat {
						msgs := []protocol.ChatMessage{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Tell me, about cats."}}
						if prefix != "" {
							msgs = append(msgs, protocol.ChatMessage{Role: "assistant", Content: prefix})
						}
						return protocol.Request{Kind: protocol.KindChat, Model: "sim", Messages: msgs, Options: tc.opts}
					}
					return protocol.Request{Kind: protocol.KindGenerate, Model: "sim", Prompt: "The quick brown fox" + prefix, Options: tc.opts}
				}
				full := run(t, s, req("")).tokens()
				if len(full) != n {
					t.Fatalf("got %d tokens, want %d", len(full), n)
				}
				for k := 1; k < n; k++ {
					r := req(strings.Join(full[:k], ""))
					r.Options.MaxTokens = n - k
					if got := run(t, s, r).tokens(); !slices.Equal(got, full[k:]) {
						t.Fatalf("k=%d: continuation %q, want %q", k, got, full[k:])
					}
				}
			})
		}
	}
}

// TestWeightsDiffer: another model's greedy tokens are improbable under the
// reference, while the reference's own tokens are not — the signal
// verification relies on.
func TestWeightsDiffer(t *testing.T) {
	other := DefaultConfig().Models[0]
	other.Name, other.Weights, other.FirstToken, other.TokensPerSecond = "other", 2, 0, 0
	s := newSim(t, fastConfig(other))
	var own, foreign []float64
	same := 0
	const prompts = 50
	for i := range prompts {
		req := protocol.Request{Kind: protocol.KindGenerate, Model: "sim", Prompt: fmt.Sprintf("Question %d: why?", i), Options: protocol.Options{MaxTokens: 20}}
		ref := run(t, s, req).text
		req.Model = "other"
		alt := run(t, s, req).text
		if ref == alt {
			same++
		}
		req.Model = "sim"
		a, err := s.score(req, ref)
		if err != nil {
			t.Fatal(err)
		}
		b, err := s.score(req, alt)
		if err != nil {
			t.Fatal(err)
		}
		own, foreign = append(own, a...), append(foreign, b...)
	}
	meanOwn, meanForeign := mean(own), mean(foreign)
	lowOwn, lowForeign := fractionBelow(own, -6), fractionBelow(foreign, -6)
	t.Logf("reference tokens: mean logprob %.2f, %.0f%% below -6; other weights: mean %.2f, %.0f%% below -6 (%d/%d texts identical)",
		meanOwn, 100*lowOwn, meanForeign, 100*lowForeign, same, prompts)
	if same > 0 {
		t.Errorf("%d of %d prompts gave identical text for different weights", same, prompts)
	}
	if lowOwn > 0.01 || lowForeign < 0.9 {
		t.Errorf("scores do not separate the models")
	}
}

func mean(xs []float64) float64 {
	var sum float64
	for _, x := range xs {
		sum += x
	}
	return sum / float64(len(xs))
}

func fractionBelow(xs []float64, limit float64) float64 {
	n := 0
	for _, x := range xs {
		if x < limit {
			n++
		}
	}
	return float64(n) / float64(len(xs))
}

func TestLengthDistribution(t *testing.T) {
	cfg := fastConfig()
	cfg.Models[0].DefaultMaxTokens = 1000
	s := newSim(t, cfg)
	var lengths []int
	for i := range 400 {
		req := protocol.Request{Kind: protocol.KindChat, Model: "sim", Messages: []protocol.ChatMessage{{Role: "user", Content: fmt.Sprintf("Tell me about topic %d.", i)}}}
		o := run(t, s, req)
		if o.res.FinishReason != "stop" {
			t.Fatalf("finish %q after %d tokens", o.res.FinishReason, o.res.Usage.CompletionTokens)
		}
		lengths = append(lengths, int(o.res.Usage.CompletionTokens))
	}
	slices.Sort(lengths)
	p := func(q float64) int { return lengths[int(q*float64(len(lengths)-1))] }
	t.Logf("greedy answer lengths: p10 %d, median %d, p90 %d, max %d", p(0.1), p(0.5), p(0.9), p(1))
	if p(0.5) < 10 || p(0.5) > 60 || p(1) > 300 {
		t.Errorf("answer lengths are not tens of tokens")
	}
}

func TestStopStrings(t *testing.T) {
	cfg := fastConfig()
	cfg.Models[0].IgnoreEOS = true
	s := newSim(t, cfg)
	req := protocol.Request{Kind: protocol.KindGenerate, Model: "sim", Prompt: "stop test", Options: protocol.Options{MaxTokens: 60}}
	full := run(t, s, req)
	if len(full.text) < 20 {
		t.Fatalf("text too short for the test: %q", full.text)
	}
	// A stop string that spans tokens, starting in the middle of one.
	stop := full.text[7:13]
	req.Options.Stop = []string{"never-there", stop}
	o := run(t, s, req)
	want := full.text[:strings.Index(full.text, stop)]
	if o.text != want || o.res.FinishReason != "stop" {
		t.Errorf("with stop %q: %q (%s), want %q (stop)", stop, o.text, o.res.FinishReason, want)
	}
	if o.res.Usage.CompletionTokens < uint64(len(tokenize(want))) {
		t.Errorf("usage %+v counts fewer tokens than the text", o.res.Usage)
	}
	req.Options.Stop = []string{"zzz-never"}
	if o := run(t, s, req); o.text != full.text {
		t.Errorf("an unmatched stop string changed the text: %q, want %q", o.text, full.text)
	}
}

func TestMaxTokensLength(t *testing.T) {
	cfg := fastConfig()
	cfg.Models[0].DefaultMaxTokens = 5
	cfg.Models[0].IgnoreEOS = true
	s := newSim(t, cfg)
	req := protocol.Request{Kind: protocol.KindGenerate, Model: "sim:latest", Prompt: "x"}
	if o := run(t, s, req); o.res.Usage.CompletionTokens != 5 || o.res.FinishReason != "length" {
		t.Errorf("default limit: %+v", o.res)
	}
	req.Options.MaxTokens = 9
	if o := run(t, s, req); o.res.Usage.CompletionTokens != 9 || o.res.FinishReason != "length" {
		t.Errorf("request limit: %+v", o.res)
	}
}

func TestLogprobs(t *testing.T) {
	s := newSim(t, fastConfig())
	req := protocol.Request{Kind: protocol.KindGenerate, Model: "sim", Prompt: "logprobs",
		Options: protocol.Options{Logprobs: true, TopLogprobs: 5, MaxTokens: 30}}
	for _, d := range run(t, s, req).deltas {
		lp := d.Logprobs[0]
		if len(lp.Top) != 5 || lp.Top[0].Token != lp.Token || lp.Top[0].Logprob != lp.Logprob {
			t.Fatalf("greedy token %q is not the first of its alternatives %+v", lp.Token, lp.Top)
		}
		var mass float64
		for i, alt := range lp.Top {
			mass += math.Exp(alt.Logprob)
			if i > 0 && alt.Logprob > lp.Top[i-1].Logprob {
				t.Fatalf("alternatives not sorted: %+v", lp.Top)
			}
		}
		if mass > 1+1e-9 {
			t.Fatalf("alternatives have probability %v > 1", mass)
		}
	}
	// Asking for more alternatives than candidates gives all candidates.
	req.Options.TopLogprobs = 20
	if o := run(t, s, req); len(o.deltas[0].Logprobs[0].Top) != numCandidates-1 {
		t.Errorf("%d alternatives, want %d", len(o.deltas[0].Logprobs[0].Top), numCandidates-1)
	}
}

// TestCancelIsPrompt: a generation waiting for its first token ends when
// its context does, not when the token is due. On synctest's clock the
// deadline passes at exactly 5ms.
func TestCancelIsPrompt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.Models[0].FirstToken = time.Hour
		s := newSim(t, cfg)
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := s.Generate(ctx, protocol.Request{Kind: protocol.KindGenerate, Model: "sim", Prompt: "x"}, func(backend.Delta) error { return nil })
		if took := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || took != 5*time.Millisecond {
			t.Errorf("err %v after %v, want deadline exceeded at 5ms", err, took)
		}
	})
}

// TestPacing: the first token comes after FirstToken, the others at
// TokensPerSecond, each due from the start so that they do not drift. On
// synctest's clock the times are exact: a faster or slower sim fails.
func TestPacing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.Models[0].FirstToken, cfg.Models[0].TokensPerSecond, cfg.Models[0].IgnoreEOS = 30*time.Millisecond, 100, true
		s := newSim(t, cfg)
		start := time.Now()
		var at []time.Duration
		_, err := s.Generate(t.Context(), protocol.Request{Kind: protocol.KindGenerate, Model: "sim", Prompt: "x", Options: protocol.Options{MaxTokens: 6}},
			func(d backend.Delta) error {
				at = append(at, time.Since(start))
				time.Sleep(3 * time.Millisecond) // a slow consumer does not slow the rate
				return nil
			})
		if err != nil {
			t.Fatal(err)
		}
		want := []time.Duration{30 * time.Millisecond, 40 * time.Millisecond, 50 * time.Millisecond, 60 * time.Millisecond, 70 * time.Millisecond, 80 * time.Millisecond}
		if !slices.Equal(at, want) {
			t.Errorf("tokens at %v, want %v", at, want)
		}
	})
}

func TestNewRejects(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no models": {},
		"no name":   {Models: []ModelConfig{{}}},
		"duplicate": {Models: []ModelConfig{{Name: "a"}, {Name: "a:latest"}}},
		"negative":  {Models: []ModelConfig{{Name: "a", TokensPerSecond: -1}}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
}

func TestModelsAndDigest(t *testing.T) {
	other := ModelConfig{Name: "q4", Weights: 1, Quantization: "Q4_0"}
	models, err := newSim(t, fastConfig(other)).Models(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(models) != 2 || models[0].Name != "sim" || models[0].ContextLength != 4096 || models[0].Quantization != "Q8_0" {
		t.Fatalf("models %+v", models)
	}
	if len(models[0].Digest) != 64 || strings.Trim(models[0].Digest, "0123456789abcdef") != "" {
		t.Errorf("digest %q is not 64 hex digits", models[0].Digest)
	}
	if models[0].Digest == models[1].Digest || Digest(1, "Q8_0") == Digest(2, "Q8_0") {
		t.Error("different weights or quantization share a digest")
	}
	if Digest(1, "Q8_0") != models[0].Digest {
		t.Error("Digest is not stable")
	}
}

func TestBadRequests(t *testing.T) {
	s := newSim(t, fastConfig())
	emit := func(backend.Delta) error { return nil }
	if _, err := s.Generate(t.Context(), protocol.Request{Kind: "edit", Model: "sim"}, emit); !errors.Is(err, backend.ErrBadRequest) {
		t.Errorf("unknown kind: %v", err)
	}
	if _, err := s.Generate(t.Context(), protocol.Request{Kind: protocol.KindChat, Model: "nope"}, emit); !errors.Is(err, backend.ErrModelNotFound) {
		t.Errorf("unknown model: %v", err)
	}
}
