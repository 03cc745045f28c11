package gateway

import (
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// TestCheckpointReceipt: the gateway bills a failed job by its latest
// checkpoint only when the provider's signature covers exactly the text
// relayed up to it and claims no more tokens than were relayed, than the
// text can hold, or than max_tokens, and no more prompt tokens than the
// prompt can hold (the final receipt's rule); forged and inflated
// checkpoints are refused.
func TestCheckpointReceipt(t *testing.T) {
	prov, _ := keys.Generate()
	other, _ := keys.Generate()
	gw, _ := keys.Generate()
	consumer, _ := keys.Generate()
	now := time.Now()
	job := &protocol.Job{ID: "req-1", Request: protocol.Request{Kind: protocol.KindChat, Model: "m", Options: protocol.Options{MaxTokens: 8}},
		Terms: protocol.Terms{ChainID: "c", RequestID: "req-1", Gateway: gw.Public(), Consumer: consumer.Public().Address(), Model: "m",
			ModelDigest: "d", PricePromptPerMTok: 1_000_000, PriceCompletionPerMTok: 2_000_000, StartUnixMs: now.UnixMilli() - 1000}}
	// sign is what a provider with key k sends: a checkpoint over the
	// receipt for tokens and text.
	signPrompt := func(k keys.PrivateKey, prompt, tokens uint64, text string, end int64) *protocol.Checkpoint {
		cp := &protocol.Checkpoint{PromptTokens: prompt, CompletionTokens: tokens, EndUnixMs: end}
		r, err := job.Terms.CheckpointReceipt(k.Public(), cp, receipt.Sum([]byte(text)))
		if err != nil {
			t.Fatal(err)
		}
		cp.Signature = receipt.SignProvider(k, &r)
		return cp
	}
	sign := func(k keys.PrivateKey, tokens uint64, text string, end int64) *protocol.Checkpoint {
		return signPrompt(k, 0, tokens, text, end)
	}
	limit := uint64(promptLimit(&job.Request)) // no messages: the template's bound
	// relay runs chunks through a segment as attempt does, the last one
	// carrying cp.
	relay := func(cp *protocol.Checkpoint, chunks ...protocol.Chunk) *segment {
		seg := &segment{text: sha256.New()}
		for i := range chunks {
			ch := chunks[i]
			if i == len(chunks)-1 {
				ch.Checkpoint = cp
			}
			seg.add(&ch)
			seg.keep(&ch)
		}
		return seg
	}
	hello := []protocol.Chunk{{Delta: "Hel"}, {Delta: "lo"}, {Delta: "!"}}
	end := now.UnixMilli()
	tests := []struct {
		name   string
		seg    *segment
		reason string // "" for accepted
	}{
		{"honest", relay(sign(prov, 3, "Hello!", end), hello...), ""},
		{"bills the prompt", relay(signPrompt(prov, limit, 3, "Hello!", end), hello...), ""},
		{"more prompt than it can hold", relay(signPrompt(prov, limit+1, 3, "Hello!", end), hello...), "prompt tokens for a prompt that can hold at most"},
		{"claims fewer tokens than relayed", relay(sign(prov, 2, "Hello!", end), hello...), ""},
		{"claims more tokens than relayed", relay(sign(prov, 4, "Hello!", end), hello...), "4 completion tokens, 3 were relayed"},
		{"token claims beyond the text's bytes", relay(sign(prov, 7, "Hi", end), protocol.Chunk{Delta: "Hi", Tokens: 7}), "for 2 bytes of text"},
		{"beyond max_tokens", relay(sign(prov, 9, strings.Repeat("a", 9), end), protocol.Chunk{Delta: strings.Repeat("a", 9), Tokens: 9}), "max_tokens 8"},
		{"signed by another key", relay(sign(other, 3, "Hello!", end), hello...), "bad receipt signature"},
		{"signed for other text", relay(sign(prov, 3, "Hello?", end), hello...), "bad receipt signature"},
		{"end in the future", relay(sign(prov, 3, "Hello!", now.Add(time.Hour).UnixMilli()), hello...), "in the future"},
		{"end before the start", relay(sign(prov, 3, "Hello!", job.Terms.StartUnixMs-1), hello...), "ends before it starts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := checkpointReceipt(job, prov.Public(), &tt.seg.last, now)
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				cp := tt.seg.last.cp
				if r.CompletionTokens != cp.CompletionTokens || r.PromptTokens != cp.PromptTokens || r.RequestID != job.ID ||
					uint64(r.Amount) != 2*cp.CompletionTokens+cp.PromptTokens {
					t.Fatalf("receipt %+v", r)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.reason) {
				t.Fatalf("error %v, want one saying %q", err, tt.reason)
			}
		})
	}
	// A checkpoint on a chunk the consumer did not get is not kept: the
	// previous one stands.
	seg := relay(sign(prov, 2, "Hello", end), hello[:2]...)
	late := protocol.Chunk{Delta: "!", Checkpoint: sign(prov, 3, "Hello!", end)}
	seg.add(&late) // relayed, but the consumer's write failed: no keep
	if r, err := checkpointReceipt(job, prov.Public(), &seg.last, now); err != nil || r.CompletionTokens != 2 {
		t.Fatalf("after an undelivered chunk: %+v, %v", r, err)
	}
}
