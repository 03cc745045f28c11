package provider

import (
	"context"
	"testing"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// generateOnly is a backend that cannot embed.
type generateOnly struct{ backend.Backend }

// TestEmbedJob: the agent answers an embed job with one chunk per input
// carrying the backend's vector, in order, and a done that bills the
// backend's prompt count only, signed over the canonical hash of the
// vectors (as the gateway recomputes it).
func TestEmbedJob(t *testing.T) {
	g := newGateway(t)
	s := fastSim(t)
	cfg := config(t, g.url, s)
	startAgent(t, cfg)
	in := g.connected(t, cfg.Key.Public())
	req := protocol.Request{Kind: protocol.KindEmbed, Input: []string{"one text", "and another, longer text"}}
	job := jobFor(t, g, in, "sim", req)
	o := collect(t, dispatch(t, g, cfg.Key.Public(), job))
	if o.done == nil {
		t.Fatalf("embed job failed: %v", o.err)
	}
	req.Model = "sim"
	want, err := s.Embed(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	var got [][]float32
	for i, c := range o.chunks {
		if c.Seq != uint64(i) || c.Delta != "" || c.Tokens != 0 || c.Checkpoint != nil || len(c.Embedding) != len(want.Vectors[i]) {
			t.Fatalf("chunk %d: %+v", i, c)
		}
		for k := range c.Embedding {
			if c.Embedding[k] != want.Vectors[i][k] {
				t.Fatalf("chunk %d component %d differs from the backend's", i, k)
			}
		}
		got = append(got, c.Embedding)
	}
	d := o.done
	if len(got) != 2 || d.Chunks != 2 || d.Usage != (protocol.Usage{PromptTokens: want.PromptTokens}) || d.FinishReason != "stop" {
		t.Fatalf("%d vectors, done %+v; want 2 and %d prompt tokens", len(got), d, want.PromptTokens)
	}
	r, err := job.Terms.Receipt(cfg.Key.Public(), d.Usage, protocol.EmbeddingsHash(got), d.EndUnixMs)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	if r.CompletionTokens != 0 || r.Amount == 0 {
		t.Fatalf("receipt %+v", r)
	}
	if err := receipt.VerifyProvider(&r, d.ReceiptSignature); err != nil {
		t.Fatalf("the receipt signature is not over the hash of the vectors sent: %v", err)
	}
}

// TestEmbedJobErrors: a backend that cannot embed answers "unsupported"
// (the gateway places the request elsewhere); one that refuses the
// request answers bad_request.
func TestEmbedJobErrors(t *testing.T) {
	g := newGateway(t)
	s := fastSim(t)
	for _, tc := range []struct {
		name string
		b    backend.Backend
		req  protocol.Request
		want protocol.Code
	}{
		{"backend cannot embed", generateOnly{s}, protocol.Request{Kind: protocol.KindEmbed, Input: []string{"x"}}, protocol.CodeUnsupported},
		{"too many dimensions", s, protocol.Request{Kind: protocol.KindEmbed, Input: []string{"x"}, Dimensions: 1000}, protocol.CodeBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config(t, g.url, tc.b)
			startAgent(t, cfg)
			in := g.connected(t, cfg.Key.Public())
			je := jobError(t, collect(t, dispatch(t, g, cfg.Key.Public(), jobFor(t, g, in, "sim", tc.req))))
			if je.Code != tc.want {
				t.Fatalf("code %s (%s), want %s", je.Code, je.Message, tc.want)
			}
		})
	}
}
