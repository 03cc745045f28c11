package attack

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/gateway"
	"github.com/idlegrid/idlegrid/internal/hub"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// Embeddings: a provider who wants pay for vectors it did not compute, or
// more than the inputs are worth. The gateway hashes the vectors it
// relays and bounds the prompt tokens by the inputs' bytes, so the
// receipt a provider signs must match what the consumer got and what the
// inputs can hold; otherwise nothing is countersigned or billed.

// embedAnswer is the attacker's answer to an embed job: the vectors it
// sends, and the usage and response hash it signs.
type embedAnswer struct {
	vectors [][]float32
	usage   protocol.Usage
	hash    func(sent [][]float32) receipt.Hash
}

// readJob reads messages until a job arrives.
func (p *rawProvider) readJob(t *testing.T) *protocol.Job {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, b, err := p.ws.Read(ctx)
		if err != nil {
			t.Fatalf("waiting for a job: %v", err)
		}
		var job *protocol.Job
		if err := protocol.DecodeFrame(b, func(m *protocol.Message) error {
			if m.Type == protocol.TypeJob {
				job = m.Job
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if job != nil {
			return job
		}
	}
}

// answer sends a's vectors and a done signed over a's usage and hash.
func (p *rawProvider) answer(t *testing.T, job *protocol.Job, a embedAnswer) {
	t.Helper()
	for i, v := range a.vectors {
		p.send(t, &protocol.Message{Type: protocol.TypeChunk, Chunk: &protocol.Chunk{ID: job.ID, Seq: uint64(i), Embedding: v}})
	}
	end := time.Now().UnixMilli()
	r, err := job.Terms.Receipt(p.key.Public(), a.usage, a.hash(a.vectors), end)
	if err != nil {
		t.Fatal(err)
	}
	p.send(t, &protocol.Message{Type: protocol.TypeDone, Done: &protocol.Done{ID: job.ID, Chunks: uint64(len(a.vectors)), Usage: a.usage,
		FinishReason: "stop", EndUnixMs: end, ReceiptSignature: receipt.SignProvider(p.key, &r)}})
}

// embedRequest posts an embed request to g and returns status and body.
func embedRequest(t *testing.T, g *edgeGateway, body string) chan string {
	out := make(chan string, 1)
	go func() {
		req, _ := http.NewRequest("POST", g.url+"/v1/embeddings", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+g.apiKey)
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			out <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		out <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}()
	return out
}

// TestEmbedProviderCannotBillWhatItDidNotSend: the attacker answers an
// embed job and signs a receipt that claims more than it delivered — other
// vectors than it sent, prompt tokens the inputs cannot hold, completion
// tokens for an embedding, vectors missing. Each time the gateway refuses
// to countersign: the consumer gets a 502 saying it is not billed, and no
// receipt is stored. The honest answer, last, is billed.
func TestEmbedProviderCannotBillWhatItDidNotSend(t *testing.T) {
	g := newEdgeGateway(t, hub.Config{}, gateway.Config{MaxAttempts: 1, BreakerThreshold: 100}) // the attacker keeps getting jobs
	s := fastSim(t)
	models, err := s.Models(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	m := models[0]
	attacker := connectRaw(t, g.url, protocol.Capabilities{Slots: 4, Models: []protocol.Model{{
		Name: m.Name, Digest: m.Digest, PricePromptPerMTok: 1_000_000, PriceCompletionPerMTok: 1_000_000}}})
	vecs := [][]float32{{0.6, 0.8}, {1, 0}}
	honestHash := func(sent [][]float32) receipt.Hash { return protocol.EmbeddingsHash(sent) }
	input := `["ab","cd"]` // 2 inputs of 2 bytes: at most 2×(2+4) = 12 prompt tokens
	for _, tc := range []struct {
		name string
		a    embedAnswer
		want string
	}{
		{"signs other vectors than it sent", embedAnswer{vecs, protocol.Usage{PromptTokens: 4},
			func([][]float32) receipt.Hash { return protocol.EmbeddingsHash([][]float32{{0.8, 0.6}, {0, 1}}) }}, "502"},
		{"pads the prompt tokens", embedAnswer{vecs, protocol.Usage{PromptTokens: 13}, honestHash}, "502"},
		{"claims completion tokens", embedAnswer{vecs, protocol.Usage{PromptTokens: 4, CompletionTokens: 1}, honestHash}, "502"},
		{"sends one vector for two inputs", embedAnswer{vecs[:1], protocol.Usage{PromptTokens: 4}, honestHash}, "502"},
		{"honest", embedAnswer{vecs, protocol.Usage{PromptTokens: 12}, honestHash}, "200"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			served := embedRequest(t, g, fmt.Sprintf(`{"model":%q,"input":%s}`, m.Name, input))
			job := attacker.readJob(t)
			if job.Request.Kind != protocol.KindEmbed || len(job.Request.Input) != 2 {
				t.Fatalf("job %+v", job.Request)
			}
			attacker.answer(t, job, tc.a)
			got := <-served
			if !strings.HasPrefix(got, tc.want) || tc.want == "502" && !strings.Contains(got, "not billed") {
				t.Fatalf("consumer got %s, want %s", got, tc.want)
			}
			_, err := g.store.Receipt(context.Background(), job.ID)
			if stored := err == nil; stored != (tc.want == "200") {
				t.Fatalf("receipt stored: %v (%v)", stored, err)
			}
		})
	}
}

// TestEmbedJobsSkipOlderAgents: an agent of protocol version 4 would take
// an embed job for a protocol error and lose its connection (with every
// job on it); the gateway never sends it one, and says why.
func TestEmbedJobsSkipOlderAgents(t *testing.T) {
	g := newEdgeGateway(t, hub.Config{}, gateway.Config{})
	s := fastSim(t)
	models, err := s.Models(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	m := models[0]
	old := connectRawVersion(t, g.url, protocol.EmbedSince-1, protocol.Capabilities{Slots: 4, Models: []protocol.Model{{Name: m.Name, Digest: m.Digest}}})
	got := <-embedRequest(t, g, fmt.Sprintf(`{"model":%q,"input":"hi"}`, m.Name))
	if !strings.HasPrefix(got, "503") || !strings.Contains(got, "older than protocol version 5") {
		t.Fatalf("embed request with only an old agent: %s", got)
	}
	if in, ok := connected(g.hub, old.key.Public()); !ok || in.InFlight != 0 {
		t.Fatalf("old agent: connected %v, in flight %d", ok, in.InFlight)
	}
	// A current agent beside it takes the request.
	startAgent(t, g, s, time.Second)
	if got := <-embedRequest(t, g, fmt.Sprintf(`{"model":%q,"input":"hi"}`, m.Name)); !strings.HasPrefix(got, "200") {
		t.Fatalf("embed request with a current agent: %s", got)
	}
	if in, _ := connected(g.hub, old.key.Public()); in.InFlight != 0 {
		t.Fatal("the old agent got an embed job")
	}
}
