package sim

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// cachedConfig is the fast "sim" model with a prefix cache of tokens.
func cachedConfig(tokens int) Config {
	cfg := fastConfig()
	cfg.Models[0].PrefixCacheTokens = tokens
	return cfg
}

// words is a prompt of n one-token words.
func words(prefix string, n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, " %s%d", prefix, i)
	}
	return b.String()
}

func genReq(prompt string) protocol.Request {
	return protocol.Request{Kind: protocol.KindGenerate, Model: "sim", Prompt: prompt, Raw: true, Options: protocol.Options{MaxTokens: 5}}
}

// delta returns the cache counts added by running req.
func delta(t *testing.T, s *Sim, req protocol.Request) (CacheStats, output) {
	t.Helper()
	before := s.CacheStats()
	o := run(t, s, req)
	after := s.CacheStats()
	return CacheStats{Requests: after.Requests - before.Requests, PromptTokens: after.PromptTokens - before.PromptTokens,
		CachedTokens: after.CachedTokens - before.CachedTokens, Hits: after.Hits - before.Hits}, o
}

func TestPrefixCacheRepeat(t *testing.T) {
	s := newSim(t, cachedConfig(4096))
	prompt := words("w", 100)
	first, o := delta(t, s, genReq(prompt))
	if first.Requests != 1 || first.PromptTokens != 100 || first.CachedTokens != 0 || first.Hits != 0 {
		t.Fatalf("first run: %+v", first)
	}
	if o.res.Usage.PromptTokens != 100 {
		t.Fatalf("prompt tokens %d, want 100", o.res.Usage.PromptTokens)
	}
	second, o2 := delta(t, s, genReq(prompt))
	// Six whole blocks of 16 of the 100 tokens.
	if second.CachedTokens != 96 || second.Hits != 1 {
		t.Fatalf("second run: %+v, want 96 cached tokens", second)
	}
	if o2.text != o.text {
		t.Fatal("a cache hit changed the answer")
	}
	// Same start, other end: the shared whole blocks only.
	third, _ := delta(t, s, genReq(words("w", 40)+words("x", 60)))
	if third.CachedTokens != 32 {
		t.Fatalf("diverging prompt: %d cached tokens, want 32 (2 blocks of the 40 shared tokens)", third.CachedTokens)
	}
	// Another model's cache, or none, is separate.
	other := newSim(t, fastConfig())
	if st, _ := delta(t, other, genReq(prompt)); st.CachedTokens != 0 || st.PromptTokens != 100 {
		t.Fatalf("without a cache: %+v", st)
	}
}

// TestPrefixCacheFollowUp: a chat's next turn starts with the previous
// prompt and answer, and finds both cached.
func TestPrefixCacheFollowUp(t *testing.T) {
	s := newSim(t, cachedConfig(4096))
	msgs := []protocol.ChatMessage{{Role: "system", Content: words("s", 150)}, {Role: "user", Content: "what now?"}}
	turn1 := protocol.Request{Kind: protocol.KindChat, Model: "sim", Messages: msgs, Options: protocol.Options{MaxTokens: 40}}
	_, o := delta(t, s, turn1)
	seq := int64(o.res.Usage.PromptTokens + o.res.Usage.CompletionTokens)
	turn2 := turn1
	turn2.Messages = append(append([]protocol.ChatMessage{}, msgs...), protocol.ChatMessage{Role: "assistant", Content: o.text},
		protocol.ChatMessage{Role: "user", Content: "and then?"})
	st, _ := delta(t, s, turn2)
	if want := seq / CacheBlockTokens * CacheBlockTokens; st.CachedTokens != want {
		t.Fatalf("follow-up: %d tokens cached, want %d (previous prompt and answer, %d tokens, in whole blocks)", st.CachedTokens, want, seq)
	}
	if st.PromptTokens <= seq {
		t.Fatalf("follow-up prompt %d tokens, not longer than the first turn's %d", st.PromptTokens, seq)
	}
}

func TestPrefixCacheEviction(t *testing.T) {
	s := newSim(t, cachedConfig(4*CacheBlockTokens))
	// A prompt longer than the cache keeps its head, not its tail.
	long := words("l", 10*CacheBlockTokens)
	run(t, s, genReq(long))
	if st, _ := delta(t, s, genReq(long)); st.CachedTokens != 4*CacheBlockTokens {
		t.Fatalf("over-long prompt: %d cached, want the first 4 blocks", st.CachedTokens)
	}
	// Least recently used goes first.
	a, b := words("a", 4*CacheBlockTokens), words("b", 4*CacheBlockTokens)
	run(t, s, genReq(a))
	run(t, s, genReq(b))
	if st, _ := delta(t, s, genReq(a)); st.CachedTokens != 0 {
		t.Fatalf("evicted prompt still cached: %+v", st)
	}
	if st, _ := delta(t, s, genReq(a)); st.CachedTokens != 4*CacheBlockTokens {
		t.Fatalf("re-cached prompt: %+v", st)
	}
}

func TestPrefill(t *testing.T) {
	m := &model{ModelConfig: ModelConfig{PromptTokensPerSecond: 10_000}}
	if d := m.prefill(1000); d != 100*time.Millisecond {
		t.Errorf("prefill of 1000 tokens at 10000/s = %v", d)
	}
	if d := m.prefill(0); d != 0 {
		t.Errorf("prefill of nothing = %v", d)
	}
	if d := (&model{}).prefill(1000); d != 0 {
		t.Errorf("prefill without a rate = %v, want free", d)
	}
	if _, err := New(Config{Models: []ModelConfig{{Name: "a", PromptTokensPerSecond: -1}}}); err == nil {
		t.Error("negative prompt rate accepted")
	}
	if _, err := New(Config{Models: []ModelConfig{{Name: "a", PrefixCacheTokens: -1}}}); err == nil {
		t.Error("negative cache size accepted")
	}
}

// TestPrefillDelaysFirstToken: uncached prompt tokens delay the first token
// by exactly their prefill time, on synctest's clock.
func TestPrefillDelaysFirstToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := cachedConfig(4096)
		cfg.Models[0].PromptTokensPerSecond = 4_000 // 200 tokens: 50 ms
		s := newSim(t, cfg)
		start := time.Now()
		firstAt := time.Duration(-1)
		_, err := s.Generate(context.Background(), genReq(words("p", 200)), func(backend.Delta) error {
			if firstAt < 0 {
				firstAt = time.Since(start)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if firstAt != 50*time.Millisecond {
			t.Fatalf("first token after %v, want 50ms of prompt processing", firstAt)
		}
	})
}
