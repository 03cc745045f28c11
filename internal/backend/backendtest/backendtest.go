// Package backendtest is the conformance suite every backend.Backend must
// pass: the simulator in-process, the Ollama client against the
// simulator's HTTP server, and the Ollama client against a real Ollama.
// One suite keeps the implementations interchangeable for the provider
// agent, which only sees the interface.
package backendtest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// maxTokens keeps every request of the suite short, even against a slow
// real model.
const maxTokens = 24

// callTimeout bounds every backend call; a hang is a failure, not a stuck
// test run.
const callTimeout = 60 * time.Second

// cancelDeadline is how soon Generate must return once its context is
// cancelled.
const cancelDeadline = 2 * time.Second

// Run runs the suite against b, which must serve model.
//
// Token counts: Ollama's eval_count counts model tokens while it streams
// one chunk per piece of text it can show, and it merges tokens that are
// parts of one UTF-8 character (and holds text back near stop strings), so
// the suite only requires 1 ≤ the sum of Delta.Tokens ≤ CompletionTokens ≤
// MaxTokens. Backends that are exact (the simulator) test equality
// themselves.
func Run(t *testing.T, b backend.Backend, model string) {
	t.Helper()
	t.Run("Models", func(t *testing.T) { testModels(t, b, model) })
	t.Run("Chat", func(t *testing.T) {
		testGenerate(t, b, protocol.Request{Kind: protocol.KindChat, Model: model, Messages: []protocol.ChatMessage{
			{Role: "system", Content: "You are terse."},
			{Role: "user", Content: "Name three colours."},
		}})
	})
	t.Run("Generate", func(t *testing.T) {
		testGenerate(t, b, protocol.Request{Kind: protocol.KindGenerate, Model: model, Prompt: "Once upon a time", System: "Tell a story."})
	})
	t.Run("MaxTokens", func(t *testing.T) { testMaxTokens(t, b, model) })
	t.Run("Deterministic", func(t *testing.T) { testDeterministic(t, b, model) })
	t.Run("Logprobs", func(t *testing.T) { testLogprobs(t, b, model) })
	t.Run("Cancel", func(t *testing.T) { testCancel(t, b, model) })
	t.Run("UnknownModel", func(t *testing.T) { testUnknownModel(t, b) })
	t.Run("EmitError", func(t *testing.T) { testEmitError(t, b, model) })
	if e, ok := b.(backend.Embedder); ok {
		t.Run("Embed", func(t *testing.T) { testEmbed(t, e, model) })
	}
}

// testEmbed: one finite unit vector per input, all of one size, the same
// for the same text alone or in a batch; dimensions cut them; asking for
// more dimensions than the model has, or an unknown model, is an error.
func testEmbed(t *testing.T, b backend.Embedder, model string) {
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	defer cancel()
	inputs := []string{"The quick brown fox.", "Embeddings map text to vectors.", "ok"}
	res, err := b.Embed(ctx, protocol.Request{Kind: protocol.KindEmbed, Model: model, Input: inputs})
	if err != nil {
		t.Fatalf("Embed: %v", err)
	}
	if len(res.Vectors) != len(inputs) || res.PromptTokens == 0 {
		t.Fatalf("%d vectors for %d inputs, %d prompt tokens", len(res.Vectors), len(inputs), res.PromptTokens)
	}
	dims := len(res.Vectors[0])
	for i, v := range res.Vectors {
		var n float64
		for _, f := range v {
			if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
				t.Fatalf("vector %d has a non-finite component", i)
			}
			n += float64(f) * float64(f)
		}
		if len(v) != dims || dims == 0 || math.Abs(n-1) > 1e-3 {
			t.Fatalf("vector %d: %d dimensions (first %d), norm² %v", i, len(v), dims, n)
		}
	}
	alone, err := b.Embed(ctx, protocol.Request{Kind: protocol.KindEmbed, Model: model, Input: inputs[1:2]})
	if err != nil {
		t.Fatalf("Embed one: %v", err)
	}
	var dot float64
	for k, f := range alone.Vectors[0] {
		dot += float64(f) * float64(res.Vectors[1][k])
	}
	if dot < 0.9999 {
		t.Fatalf("the same text alone and in a batch: cosine %v", dot)
	}
	if dims > 2 {
		cut, err := b.Embed(ctx, protocol.Request{Kind: protocol.KindEmbed, Model: model, Input: inputs[:1], Dimensions: 2})
		if err != nil || len(cut.Vectors) != 1 || len(cut.Vectors[0]) != 2 {
			t.Fatalf("dimensions 2: %+v, %v", cut.Vectors, err)
		}
	}
	if _, err := b.Embed(ctx, protocol.Request{Kind: protocol.KindEmbed, Model: model, Input: inputs[:1], Dimensions: dims + 1}); !errors.Is(err, backend.ErrBadRequest) {
		t.Fatalf("dimensions %d of a model with %d: %v, want a bad request", dims+1, dims, err)
	}
	if _, err := b.Embed(ctx, protocol.Request{Kind: protocol.KindEmbed, Model: "no-such-model-xyz", Input: inputs[:1]}); !errors.Is(err, backend.ErrModelNotFound) {
		t.Fatalf("unknown model: %v, want ErrModelNotFound", err)
	}
}

// SameModel reports whether a listed name is the requested one, allowing
// for Ollama's implicit ":latest" tag.
func SameModel(listed, requested string) bool {
	return strings.TrimSuffix(listed, ":latest") == strings.TrimSuffix(requested, ":latest")
}

func testModels(t *testing.T, b backend.Backend, model string) {
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	defer cancel()
	models, err := b.Models(ctx)
	if err != nil {
		t.Fatalf("Models: %v", err)
	}
	for _, m := range models {
		if SameModel(m.Name, model) {
			if m.Digest == "" {
				t.Errorf("model %q has an empty digest", m.Name)
			}
			return
		}
	}
	t.Fatalf("Models does not list %q: %+v", model, models)
}

// collected is what a Generate call produced.
type collected struct {
	deltas []backend.Delta
	text   string
	tokens int
	res    backend.Result
}

func generate(t *testing.T, b backend.Backend, req protocol.Request) collected {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	defer cancel()
	var c collected
	var err error
	c.res, err = b.Generate(ctx, req, func(d backend.Delta) error {
		c.deltas = append(c.deltas, d)
		c.text += d.Text
		c.tokens += d.Tokens
		return nil
	})
	if err != nil {
		t.Fatalf("Generate(%s): %v", req.Kind, err)
	}
	return c
}

func testGenerate(t *testing.T, b backend.Backend, req protocol.Request) {
	req.Options.MaxTokens = maxTokens
	c := generate(t, b, req)
	u := c.res.Usage
	t.Logf("%d deltas, %d delta tokens, usage %+v, finish %q, text %q", len(c.deltas), c.tokens, u, c.res.FinishReason, c.text)
	if len(c.deltas) == 0 || c.text == "" {
		t.Fatal("no text generated")
	}
	if c.tokens < 1 || uint64(c.tokens) > u.CompletionTokens || u.CompletionTokens > maxTokens {
		t.Errorf("want 1 ≤ delta tokens (%d) ≤ completion tokens (%d) ≤ %d", c.tokens, u.CompletionTokens, maxTokens)
	}
	if u.PromptTokens < 1 {
		t.Errorf("prompt tokens = %d, want ≥ 1", u.PromptTokens)
	}
	if c.res.FinishReason != "stop" && c.res.FinishReason != "length" {
		t.Errorf("finish reason %q, want stop or length", c.res.FinishReason)
	}
}

// testMaxTokens needs a generation that does not end by itself within the
// limit; a few prompts make that near certain for any model.
func testMaxTokens(t *testing.T, b backend.Backend, model string) {
	const limit = 3
	for i, prompt := range []string{"Count from one to one hundred:", "Write a long essay about rivers.", "List every country"} {
		req := protocol.Request{Kind: protocol.KindGenerate, Model: model, Prompt: prompt, Options: protocol.Options{MaxTokens: limit}}
		c := generate(t, b, req)
		if n := c.res.Usage.CompletionTokens; n > limit {
			t.Fatalf("prompt %d: %d completion tokens, want ≤ %d", i, n, limit)
		}
		if c.res.FinishReason == "length" {
			if n := c.res.Usage.CompletionTokens; n != limit {
				t.Errorf("finish reason length after %d tokens, want %d", n, limit)
			}
			return
		}
	}
	t.Error("no generation hit MaxTokens with finish reason \"length\"")
}

func testDeterministic(t *testing.T, b backend.Backend, model string) {
	zero, seed := 0.0, int64(42)
	req := protocol.Request{Kind: protocol.KindChat, Model: model,
		Messages: []protocol.ChatMessage{{Role: "user", Content: "Say something deterministic."}},
		Options:  protocol.Options{MaxTokens: maxTokens, Temperature: &zero, Seed: &seed}}
	a, c := generate(t, b, req), generate(t, b, req)
	if a.text != c.text {
		t.Errorf("same greedy request gave different text:\n%q\n%q", a.text, c.text)
	}
	if a.res.Usage.CompletionTokens != c.res.Usage.CompletionTokens {
		t.Errorf("same greedy request gave different usage: %+v, %+v", a.res.Usage, c.res.Usage)
	}
	// A buffered request (the consumer does not stream) gives the same text
	// and counts in however many deltas the backend likes.
	req.Buffered = true
	buf := generate(t, b, req)
	if buf.text != a.text || buf.res.Usage != a.res.Usage || buf.res.FinishReason != a.res.FinishReason {
		t.Errorf("buffered request differs from the streamed one:\n%q %+v %s\n%q %+v %s",
			buf.text, buf.res.Usage, buf.res.FinishReason, a.text, a.res.Usage, a.res.FinishReason)
	}
}

// testLogprobs checks logprobs when the backend reports them; older Ollama
// versions (v0.6.5 included) ignore the request.
func testLogprobs(t *testing.T, b backend.Backend, model string) {
	const top = 3
	req := protocol.Request{Kind: protocol.KindGenerate, Model: model, Prompt: "The sky is",
		Options: protocol.Options{MaxTokens: 8, Logprobs: true, TopLogprobs: top}}
	c := generate(t, b, req)
	n := 0
	for _, d := range c.deltas {
		n += len(d.Logprobs)
		for _, lp := range d.Logprobs {
			if lp.Logprob > 0 || math.IsNaN(lp.Logprob) {
				t.Errorf("token %q has logprob %v", lp.Token, lp.Logprob)
			}
			if len(lp.Top) > top {
				t.Errorf("%d alternatives, want ≤ %d", len(lp.Top), top)
			}
			for i := 1; i < len(lp.Top); i++ {
				if lp.Top[i].Logprob > lp.Top[i-1].Logprob {
					t.Errorf("alternatives not sorted: %+v", lp.Top)
				}
			}
		}
	}
	if n == 0 {
		t.Log("backend reports no logprobs")
		return
	}
	if n < c.tokens {
		t.Errorf("%d logprobs for %d tokens", n, c.tokens)
	}
}

func testCancel(t *testing.T, b backend.Backend, model string) {
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	defer cancel()
	gctx, gcancel := context.WithCancel(ctx)
	defer gcancel()
	req := protocol.Request{Kind: protocol.KindGenerate, Model: model, Prompt: "Write a very long story.",
		Options: protocol.Options{MaxTokens: 100000}}
	var cancelledAt time.Time
	deltas := 0
	_, err := b.Generate(gctx, req, func(backend.Delta) error {
		deltas++
		if deltas == 1 {
			cancelledAt = time.Now()
			gcancel()
		}
		return nil
	})
	if deltas == 0 {
		t.Fatalf("no delta before the end (err %v)", err)
	}
	if took := time.Since(cancelledAt); took > cancelDeadline {
		t.Errorf("Generate returned %v after cancel, want < %v", took, cancelDeadline)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want one wrapping context.Canceled", err)
	}
}

func testUnknownModel(t *testing.T, b backend.Backend) {
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	defer cancel()
	req := protocol.Request{Kind: protocol.KindChat, Model: "no-such-model-backendtest",
		Messages: []protocol.ChatMessage{{Role: "user", Content: "hello"}}}
	_, err := b.Generate(ctx, req, func(backend.Delta) error { return nil })
	if !errors.Is(err, backend.ErrModelNotFound) {
		t.Errorf("err = %v, want one wrapping backend.ErrModelNotFound", err)
	}
}

func testEmitError(t *testing.T, b backend.Backend, model string) {
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	defer cancel()
	stop := fmt.Errorf("backendtest: emit refuses")
	req := protocol.Request{Kind: protocol.KindGenerate, Model: model, Prompt: "Keep talking.", Options: protocol.Options{MaxTokens: maxTokens}}
	calls := 0
	_, err := b.Generate(ctx, req, func(backend.Delta) error {
		calls++
		return stop
	})
	if calls != 1 {
		t.Errorf("emit called %d times after failing, want exactly once", calls)
	}
	if !errors.Is(err, stop) {
		t.Errorf("err = %v, want emit's error", err)
	}
}
