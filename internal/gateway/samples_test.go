package gateway

import (
	"encoding/binary"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/gateway/samplefeed"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// TestSampleFeedBounds: the feed keeps at most Capacity samples and
// MaxBytes of shared text, drops the oldest first, and tells a reader how
// many it missed.
func TestSampleFeedBounds(t *testing.T) {
	req := &protocol.Request{Kind: protocol.KindGenerate, Prompt: strings.Repeat("p", 10)}
	text := strings.Repeat("t", 10) // 20 bytes a shared sample
	for _, tc := range []struct {
		name               string
		capacity, maxBytes int
		shared             bool
		add                int
		after              uint64
		limit              int
		wantSeqs           []uint64
		wantMissed         uint64
	}{
		{"all kept", 10, 1000, true, 3, 0, 10, []uint64{1, 2, 3}, 0},
		{"capacity drops the oldest", 3, 1000, true, 5, 0, 10, []uint64{3, 4, 5}, 2},
		{"bytes drop the oldest", 10, 50, true, 5, 0, 10, []uint64{4, 5}, 3},
		{"hashes only take no bytes", 10, 50, false, 5, 0, 10, []uint64{1, 2, 3, 4, 5}, 0},
		{"after and limit", 10, 1000, true, 6, 2, 2, []uint64{3, 4}, 0},
		{"nothing new", 10, 1000, true, 2, 2, 10, nil, 0},
		{"reader behind the drop", 2, 1000, true, 6, 1, 10, []uint64{5, 6}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := newSampleFeed(SampleConfig{Share: 1, ShareText: tc.shared, Capacity: tc.capacity, MaxBytes: tc.maxBytes}, "c", keys.PublicKey{}, time.Now)
			if err != nil {
				t.Fatal(err)
			}
			for range tc.add {
				f.offer(req, receipt.Signed{}, "stop", "earlier"+text, len(text))
			}
			p := f.page(tc.after, tc.limit, false)
			var seqs []uint64
			for _, s := range p.Samples {
				seqs = append(seqs, s.Seq)
				if tc.shared != s.Shared() || tc.shared && (*s.Text != text || s.Request.Prompt != req.Prompt) {
					t.Fatalf("sample %d: %+v", s.Seq, s)
				}
			}
			if !equalSeqs(seqs, tc.wantSeqs) || p.Missed != tc.wantMissed {
				t.Fatalf("seqs %v missed %d, want %v missed %d", seqs, p.Missed, tc.wantSeqs, tc.wantMissed)
			}
			if want := tc.after; len(seqs) > 0 {
				want = seqs[len(seqs)-1]
				if p.Next != want {
					t.Fatalf("next %d, want %d", p.Next, want)
				}
			} else if p.Next != want {
				t.Fatalf("next %d, want %d", p.Next, want)
			}
		})
	}
}

func equalSeqs(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestSampleShare: the share is a probability (0 turns the feed off, bad
// values are refused) and an offer respects it.
func TestSampleShare(t *testing.T) {
	for _, bad := range []float64{-0.1, 1.5} {
		if _, err := newSampleFeed(SampleConfig{Share: bad}, "c", keys.PublicKey{}, time.Now); err == nil {
			t.Errorf("share %v accepted", bad)
		}
	}
	if f, err := newSampleFeed(SampleConfig{}, "c", keys.PublicKey{}, time.Now); f != nil || err != nil {
		t.Fatalf("share 0: %v %v", f, err)
	}
	var off *sampleFeed
	off.offer(&protocol.Request{}, receipt.Signed{}, "stop", "", 0) // a nil feed takes nothing
	f, _ := newSampleFeed(SampleConfig{Share: 0.25, Capacity: 100_000}, "c", keys.PublicKey{}, time.Now)
	const n = 20_000
	for range n {
		f.offer(&protocol.Request{}, receipt.Signed{}, "stop", "", 0)
	}
	got := len(f.page(0, samplefeed.MaxPage, false).Samples)
	if got != samplefeed.MaxPage {
		t.Fatalf("first page: %d samples", got)
	}
	total := f.seq
	// 25% of 20,000 is 5,000 with a standard deviation of ~61.
	if total < 4_600 || total > 5_400 {
		t.Fatalf("%d of %d offers sampled at share 0.25", total, n)
	}
}

// TestSampleFeedServedTokens: every page reports the completion tokens
// served so far (whether sampled or not) and the feed's share; a nil feed
// counts nothing.
func TestSampleFeedServedTokens(t *testing.T) {
	var off *sampleFeed
	off.count(5)
	f, err := newSampleFeed(SampleConfig{Share: 0.5}, "c", keys.PublicKey{}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if p := f.page(0, 10, false); p.ServedTokens == nil || *p.ServedTokens != 0 || p.Share != 0.5 {
		t.Fatalf("empty feed: %+v", p)
	}
	f.count(30)
	f.count(12)
	if p := f.page(0, 10, false); *p.ServedTokens != 42 || len(p.Samples) != 0 {
		t.Fatalf("after 42 tokens served: %+v", p)
	}
}

// TestSampleFeedReplayBounds: a signature is accepted once; one verifier
// may have at most maxSeenPerVerifier signatures remembered within their
// window (past it, it alone is refused), and they expire with it.
func TestSampleFeedReplayBounds(t *testing.T) {
	now := time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)
	f, _ := newSampleFeed(SampleConfig{Share: 1}, "c", keys.PublicKey{}, func() time.Time { return now })
	sig := func(i int) keys.Signature {
		var s keys.Signature
		binary.BigEndian.PutUint64(s[:], uint64(i))
		return s
	}
	const busy, other = keys.Address("busy"), keys.Address("other")
	for i := range maxSeenPerVerifier {
		if e := f.fresh(sig(i), busy, now); e != nil {
			t.Fatalf("signature %d: %s", i, e.Message)
		}
	}
	if e := f.fresh(sig(0), other, now); e == nil || e.Status != http.StatusUnauthorized {
		t.Fatalf("a replay: %v", e)
	}
	if e := f.fresh(sig(maxSeenPerVerifier), busy, now); e == nil || e.Status != http.StatusTooManyRequests {
		t.Fatalf("past the verifier's bound: %v", e)
	}
	if e := f.fresh(sig(maxSeenPerVerifier+1), other, now); e != nil {
		t.Fatalf("another verifier: %s", e.Message)
	}
	now = now.Add(2*samplefeed.MaxSkew + time.Second)
	if e := f.fresh(sig(maxSeenPerVerifier+2), busy, now); e != nil {
		t.Fatalf("after the window: %s", e.Message)
	}
	if len(f.seen) != 1 || f.seenBy[busy] != 1 || f.seenBy[other] != 0 {
		t.Fatalf("after the sweep: %d signatures, %v", len(f.seen), f.seenBy)
	}
}

// TestToolAndStructuredAnswersAreNotSampled: answers verifiers could not
// judge fairly — a tool call (parsed out of what the model generated),
// any answer to a request that offered tools, and structured output
// (sampling constrained by the format) — are never offered as samples, so
// an honest provider is never convicted for them; plain text is.
func TestToolAndStructuredAnswersAreNotSampled(t *testing.T) {
	tools := []protocol.Tool{{Type: "function", Function: protocol.ToolFunction{Name: "f"}}}
	for _, tc := range []struct {
		name  string
		req   protocol.Request
		calls int
		want  bool
	}{
		{"text", protocol.Request{}, 0, true},
		{"tool call", protocol.Request{Tools: tools}, 1, false},
		{"text answer with tools offered", protocol.Request{Tools: tools}, 0, false},
		{"tools offered with tool_choice none", protocol.Request{Tools: tools, ToolChoice: protocol.ToolChoiceNone}, 0, true},
		{"structured output", protocol.Request{Format: []byte(`"json"`)}, 0, false},
	} {
		if got := auditable(&tc.req, &answer{toolCalls: tc.calls}); got != tc.want {
			t.Errorf("%s: auditable = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestEmbedSamplesForOlderReaders: a shared embed sample carries the
// request and vectors for a reader that asks for embeddings; any other
// reader gets it as hashes only (a verifier older than embeddings would
// refuse the page), and text samples are unchanged either way.
func TestEmbedSamplesForOlderReaders(t *testing.T) {
	f, err := newSampleFeed(SampleConfig{Share: 1, ShareText: true}, "c", keys.PublicKey{}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	embed := &protocol.Request{Kind: protocol.KindEmbed, Model: "m", Input: []string{"a"}}
	f.offerEmbed(embed, receipt.Signed{}, [][]float32{{1, 0}})
	f.offer(&protocol.Request{Kind: protocol.KindGenerate, Prompt: "p"}, receipt.Signed{}, "stop", "t", 1)
	for _, asks := range []bool{true, false} {
		p := f.page(0, 10, asks)
		if len(p.Samples) != 2 || !p.Samples[1].Shared() {
			t.Fatalf("asks %v: %+v", asks, p.Samples)
		}
		s := p.Samples[0]
		if s.Shared() != asks || (s.Embeddings != nil) != asks || (s.Request != nil) != asks {
			t.Fatalf("asks for embeddings %v: embed sample %+v", asks, s)
		}
	}
	if p := f.page(0, 10, true); p.Samples[0].Embeddings == nil {
		t.Fatal("a page for an older reader stripped the feed's own sample")
	}
}
