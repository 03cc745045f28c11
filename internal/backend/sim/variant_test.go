package sim

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// scoreRequests are greedy requests of both kinds.
func scoreRequests(n int) []protocol.Request {
	var out []protocol.Request
	for i := range n {
		req := protocol.Request{Kind: protocol.KindGenerate, Model: "sim", Prompt: fmt.Sprintf("Question %d: how?", i), Options: protocol.Options{MaxTokens: 60}}
		if i%2 == 1 {
			req = protocol.Request{Kind: protocol.KindChat, Model: "sim", Messages: []protocol.ChatMessage{
				{Role: "system", Content: "Be brief."}, {Role: "user", Content: fmt.Sprintf("Tell me about %d things.", i)}},
				Options: protocol.Options{MaxTokens: 60}}
		}
		out = append(out, req)
	}
	return out
}

// TestScoreOwnAnswers: the model's greedy answer, scored teacher-forced,
// is its best choice at every position, ends where ending is best, and
// has the counts Generate reported.
func TestScoreOwnAnswers(t *testing.T) {
	s := newSim(t, fastConfig())
	stops := 0
	for _, req := range scoreRequests(60) {
		o := run(t, s, req)
		sc, err := s.Score(req, o.text)
		if err != nil {
			t.Fatal(err)
		}
		if uint64(sc.PromptTokens) != o.res.Usage.PromptTokens || uint64(len(sc.Tokens)) != o.res.Usage.CompletionTokens {
			t.Fatalf("counts %d+%d, Generate said %+v", sc.PromptTokens, len(sc.Tokens), o.res.Usage)
		}
		for i, tk := range sc.Tokens {
			if !tk.Known || tk.Token != tk.Best || tk.Logprob != tk.BestLogprob {
				t.Fatalf("token %d: %+v is not the best choice", i, tk)
			}
		}
		if o.res.FinishReason == "stop" {
			stops++
			if sc.EndLogprob != sc.EndBest {
				t.Fatalf("stopped, but ending scores %v against best %v", sc.EndLogprob, sc.EndBest)
			}
		} else if sc.EndLogprob >= sc.EndBest {
			t.Fatalf("ran to the limit, but ending is the best choice")
		}
		if !math.IsInf(sc.StopDeficit, 1) {
			t.Fatalf("no stop strings, but StopDeficit %v", sc.StopDeficit)
		}
	}
	if stops == 0 {
		t.Fatal("no answer ended by itself: the test checks nothing about ending")
	}
}

// TestScoreStopStrings: an answer cut by a stop string — between tokens or
// inside one — is explained by a continuation through the stop string,
// and the cut tokens are accounted for.
func TestScoreStopStrings(t *testing.T) {
	s := newSim(t, fastConfig())
	for _, stops := range [][]string{{"."}, {"a"}, {"ka", ","}, {"?", "!"}} {
		cut := 0
		for _, req := range scoreRequests(40) {
			full := run(t, s, req).text // without stop strings
			req.Options.Stop = stops
			o := run(t, s, req)
			sc, err := s.Score(req, o.text)
			if err != nil {
				t.Fatal(err)
			}
			rest, ok := strings.CutPrefix(full, o.text)
			if o.res.FinishReason != "stop" || !ok || !slices.ContainsFunc(stops, func(s string) bool { return strings.HasPrefix(rest, s) }) {
				continue // not cut by a stop string
			}
			cut++
			if sc.StopDeficit != 0 {
				t.Fatalf("stops %q, answer %q: StopDeficit %v, want 0", stops, o.text, sc.StopDeficit)
			}
			if got := uint64(len(sc.Tokens) + sc.StopTokens); got != o.res.Usage.CompletionTokens {
				t.Fatalf("stops %q, answer %q: %d tokens + %d cut, Generate counted %d", stops, o.text, len(sc.Tokens), sc.StopTokens, o.res.Usage.CompletionTokens)
			}
		}
		if cut == 0 {
			t.Errorf("stops %q never cut an answer", stops)
		}
	}
}

// TestScoreAnyText: text the model cannot produce gets the floor, never a
// panic or a number that is not one.
func TestScoreAnyText(t *testing.T) {
	s := newSim(t, fastConfig())
	req := scoreRequests(1)[0]
	for _, text := range []string{"", "\n", " 😀 héllo", "\xff\xfe", " a b c", "..........", " verylongwordwithoutanyspacesatall"} {
		sc, err := s.Score(req, text)
		if err != nil {
			t.Fatal(err)
		}
		for _, tk := range sc.Tokens {
			if math.IsNaN(tk.Logprob) || math.IsInf(tk.Logprob, 0) || tk.Logprob > tk.BestLogprob {
				t.Fatalf("%q: token %+v", text, tk)
			}
		}
		if math.IsNaN(sc.EndLogprob) || math.IsInf(sc.EndLogprob, 0) {
			t.Fatalf("%q: end %v", text, sc.EndLogprob)
		}
	}
	if _, err := s.Score(protocol.Request{Kind: protocol.KindChat, Model: "nope"}, "x"); !errors.Is(err, backend.ErrModelNotFound) {
		t.Fatalf("unknown model: %v", err)
	}
	if _, err := s.Score(protocol.Request{Kind: "other", Model: "sim"}, "x"); err == nil {
		t.Fatal("unknown kind: no error")
	}
}

func collectPerturbed(t *testing.T, p *Perturbed, req protocol.Request) (string, backend.Result) {
	t.Helper()
	var text string
	res, err := p.Generate(t.Context(), req, func(d backend.Delta) error { text += d.Text; return nil })
	if err != nil {
		t.Fatal(err)
	}
	return text, res
}

// TestPerturbedWithoutNoise is the model itself, greedy and sampled.
func TestPerturbedWithoutNoise(t *testing.T) {
	s := newSim(t, fastConfig())
	p := &Perturbed{Sim: s}
	for i, req := range scoreRequests(20) {
		if i%3 == 0 {
			req.Options.Temperature, req.Options.Seed = float(0.8), seed(int64(i))
		}
		if i%4 == 0 {
			req.Options.Stop = []string{"a"}
		}
		want := run(t, s, req)
		text, res := collectPerturbed(t, p, req)
		if text != want.text || res.Usage != want.res.Usage || res.FinishReason != want.res.FinishReason {
			t.Fatalf("request %d: %q %+v, the model says %q %+v", i, text, res, want.text, want.res)
		}
	}
}

// TestPerturbedFlipsNearTies: noise changes the greedy choice only where
// candidates nearly tie, and the same seed gives the same text.
func TestPerturbedFlipsNearTies(t *testing.T) {
	s := newSim(t, fastConfig())
	const noise = 0.01
	p := &Perturbed{Sim: s, Noise: noise, Seed: 3}
	flips, tokens := 0, 0
	for _, req := range scoreRequests(200) {
		text, _ := collectPerturbed(t, p, req)
		again, _ := collectPerturbed(t, p, req)
		if again != text {
			t.Fatalf("same seed, different text: %q, %q", text, again)
		}
		sc, err := s.Score(req, text)
		if err != nil {
			t.Fatal(err)
		}
		for _, tk := range sc.Tokens {
			tokens++
			if d := tk.BestLogprob - tk.Logprob; d > 0 {
				flips++
				if d > 8*noise {
					t.Fatalf("a flip %.4f nats below the best, with noise %v", d, noise)
				}
			}
		}
	}
	t.Logf("noise %v: %d flips in %d tokens", noise, flips, tokens)
	if flips == 0 || flips > tokens/20 {
		t.Fatalf("%d flips in %d tokens: want some, and few", flips, tokens)
	}
}

func TestPerturbedErrors(t *testing.T) {
	s := newSim(t, fastConfig())
	p := &Perturbed{Sim: s, Noise: 0.1}
	if _, err := p.Generate(t.Context(), protocol.Request{Kind: protocol.KindChat, Model: "nope"}, nil); !errors.Is(err, backend.ErrModelNotFound) {
		t.Fatalf("unknown model: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := p.Generate(ctx, scoreRequests(1)[0], nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	boom := errors.New("boom")
	if _, err := p.Generate(t.Context(), scoreRequests(1)[0], func(backend.Delta) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("emit error: %v", err)
	}
	models, err := p.Models(t.Context())
	if err != nil || len(models) != 1 || models[0].Digest != Digest(1, "Q8_0") {
		t.Fatalf("models %+v, %v: want the original's digest", models, err)
	}
}

// TestScoreWithContext: an answer generated after an earlier context
// scores as the model's own under the same request: re-scoring renders
// the context too, so verifiers do not fault an honest provider for it.
func TestScoreWithContext(t *testing.T) {
	s := newSim(t, fastConfig())
	first := run(t, s, protocol.Request{Kind: protocol.KindGenerate, Model: "sim", Prompt: "Once upon a time", Options: protocol.Options{MaxTokens: 10}})
	req := protocol.Request{Kind: protocol.KindGenerate, Model: "sim", Prompt: " and then", Context: first.res.Context, Options: protocol.Options{MaxTokens: 10}}
	o := run(t, s, req)
	sc, err := s.Score(req, o.text)
	if err != nil {
		t.Fatal(err)
	}
	if uint64(sc.PromptTokens) != o.res.Usage.PromptTokens || len(sc.Tokens) == 0 {
		t.Fatalf("scored %d prompt tokens, Generate counted %d", sc.PromptTokens, o.res.Usage.PromptTokens)
	}
	for i, tk := range sc.Tokens {
		if !tk.Known || tk.Token != tk.Best {
			t.Fatalf("token %d: %+v is not the best choice", i, tk)
		}
	}
}
