package gateway

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// generate runs req on s and returns its deltas.
func generate(t *testing.T, s *sim.Sim, req protocol.Request) ([]backend.Delta, backend.Result) {
	t.Helper()
	var ds []backend.Delta
	res, err := s.Generate(context.Background(), req, func(d backend.Delta) error {
		ds = append(ds, d)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ds, res
}

// TestContinuationMatchesUninterrupted: continuing a request after the
// first k tokens of its answer, on another simulator with the same
// weights, yields exactly the rest of the uninterrupted answer, within
// what is left of max_tokens.
func TestContinuationMatchesUninterrupted(t *testing.T) {
	cfg := sim.DefaultConfig()
	for i := range cfg.Models {
		cfg.Models[i].FirstToken, cfg.Models[i].TokensPerSecond, cfg.Models[i].IgnoreEOS = 0, 0, true
	}
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	temp, seed := 0.8, int64(7)
	reqs := map[string]protocol.Request{
		"chat": {Kind: protocol.KindChat, Model: "sim", Messages: []protocol.ChatMessage{
			{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Tell me about rivers."}}},
		"chat continuing the consumer's prefill": {Kind: protocol.KindChat, Model: "sim", Messages: []protocol.ChatMessage{
			{Role: "user", Content: "Tell me about rivers."}, {Role: "assistant", Content: "Rivers"}}},
		"generate":     {Kind: protocol.KindGenerate, Model: "sim", System: "You are terse.", Prompt: "Once upon a time"},
		"raw generate": {Kind: protocol.KindGenerate, Model: "sim", Prompt: "Once upon a time", Raw: true},
		"seeded sampling": {Kind: protocol.KindChat, Model: "sim", Messages: []protocol.ChatMessage{{Role: "user", Content: "Roll dice."}},
			Options: protocol.Options{Temperature: &temp, Seed: &seed}},
	}
	for name, req := range reqs {
		t.Run(name, func(t *testing.T) {
			req.Options.MaxTokens = 40
			orig := slices.Clone(req.Messages)
			whole, wholeRes := generate(t, s, req)
			var want string
			for _, d := range whole {
				want += d.Text
			}
			for _, k := range []int{1, 7, 39} {
				var delivered string
				tokens := 0
				for _, d := range whole[:k] {
					delivered += d.Text
					tokens += d.Tokens
				}
				cont := continuation(req, delivered, tokens)
				if cont.Options.MaxTokens != 40-tokens {
					t.Fatalf("k=%d: max_tokens %d, want %d", k, cont.Options.MaxTokens, 40-tokens)
				}
				rest, res := generate(t, s, cont)
				got := delivered
				for _, d := range rest {
					got += d.Text
				}
				if got != want {
					t.Fatalf("k=%d: continued answer\n%q\nwant\n%q", k, got, want)
				}
				if n := uint64(tokens) + res.Usage.CompletionTokens; n != wholeRes.Usage.CompletionTokens {
					t.Fatalf("k=%d: %d + %d tokens, want %d", k, tokens, res.Usage.CompletionTokens, wholeRes.Usage.CompletionTokens)
				}
			}
			if !reflect.DeepEqual(req.Messages, orig) {
				t.Fatal("continuation changed the consumer's messages")
			}
		})
	}
}

// TestSegmentIDs: a request keeps its id until text was delivered; each
// continuation after more text gets the next id, and a retry of a
// continuation that delivered nothing keeps it.
func TestSegmentIDs(t *testing.T) {
	c := &call{id: "chatcmpl-x", req: protocol.Request{Kind: protocol.KindChat, Messages: []protocol.ChatMessage{{Role: "user", Content: "hi"}},
		Options: protocol.Options{MaxTokens: 10}}}
	a := &answer{}
	step := func(tokens int, wantID string, wantMax int) {
		t.Helper()
		a.tokens = tokens
		a.text.WriteString(" w")
		req, id := a.segment(c)
		if id != wantID || req.Options.MaxTokens != wantMax {
			t.Fatalf("after %d tokens: %s (max_tokens %d), want %s (%d)", tokens, id, req.Options.MaxTokens, wantID, wantMax)
		}
	}
	step(0, "chatcmpl-x", 10)
	step(0, "chatcmpl-x", 10) // failed before the first token: same job again elsewhere
	step(3, "chatcmpl-x-c1", 7)
	step(3, "chatcmpl-x-c1", 7) // the continuation failed before its first token
	step(5, "chatcmpl-x-c2", 5)
	if len(c.req.Messages) != 1 {
		t.Fatal("continuations changed the consumer's request")
	}
}

// TestBreaker: consecutive failures open the breaker for the cool-down;
// then one trial; a failed trial opens it again, a successful one closes
// it. A trial that proves nothing lets the next request try.
func TestBreaker(t *testing.T) {
	now := time.Unix(1000, 0)
	h := newHealth(3, 10*time.Second, func() time.Time { return now })
	var k keys.PublicKey
	k[0] = 1
	step := func(what string, want bool) {
		t.Helper()
		if got := h.failing(k); got != want {
			t.Fatalf("%s: failing %v, want %v", what, got, want)
		}
	}
	h.failure(k)
	h.failure(k)
	step("two failures", false)
	h.success(k)
	h.failure(k)
	h.failure(k)
	step("success reset the count", false)
	h.failure(k)
	step("three in a row", true)
	now = now.Add(9 * time.Second)
	step("within the cool-down", true)
	now = now.Add(time.Second)
	step("half-open", false)
	h.dispatched(k)
	step("trial in flight", true)
	h.abandoned(k)
	step("trial abandoned", false)
	h.dispatched(k)
	h.failure(k)
	step("trial failed", true)
	now = now.Add(10 * time.Second)
	step("half-open again", false)
	h.dispatched(k)
	h.success(k)
	step("closed", false)
	h.failure(k)
	step("closed breakers count afresh", false)
	if len(h.m) != 1 {
		t.Fatalf("%d entries", len(h.m))
	}
	h.success(k)
	if len(h.m) != 0 {
		t.Fatal(fmt.Sprint("healthy providers keep entries: ", len(h.m)))
	}
}
