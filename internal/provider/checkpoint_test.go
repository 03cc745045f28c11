package provider

import (
	"crypto/sha256"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// checkpointed verifies every checkpoint of chunks as the gateway would
// when the job fails after that chunk: the partial receipt rebuilt from the
// terms and the hash of the deltas so far must carry the provider's
// signature and claim exactly the tokens sent so far, and the prompt's
// estimate (protocol version 3). It returns how many chunks carried one.
func checkpointed(t *testing.T, job *protocol.Job, provider keys.PublicKey, chunks []*protocol.Chunk) int {
	t.Helper()
	text := sha256.New()
	var tokens uint64
	n := 0
	for i, c := range chunks {
		text.Write([]byte(c.Delta))
		tokens += c.TokenCount()
		cp := c.Checkpoint
		if cp == nil {
			continue
		}
		n++
		var sent receipt.Hash
		text.Sum(sent[:0])
		r, err := job.Terms.CheckpointReceipt(provider, cp, sent)
		if err == nil {
			err = r.Validate()
		}
		if err == nil {
			err = receipt.VerifyProvider(&r, cp.Signature)
		}
		if err != nil {
			t.Fatalf("chunk %d: checkpoint does not verify: %v", i, err)
		}
		if cp.CompletionTokens != tokens || r.PromptTokens != protocol.PromptEstimate(&job.Request) || r.PromptTokens == 0 || r.RequestID != job.ID || cp.EndUnixMs < job.Terms.StartUnixMs {
			t.Fatalf("chunk %d: checkpoint %+v after %d tokens (receipt %+v)", i, cp, tokens, r)
		}
		// Sharp: the same signature does not cover one token more.
		more := *cp
		more.CompletionTokens++
		if r2, _ := job.Terms.CheckpointReceipt(provider, &more, sent); receipt.VerifyProvider(&r2, cp.Signature) == nil {
			t.Fatalf("chunk %d: the checkpoint also verifies for %d tokens", i, more.CompletionTokens)
		}
	}
	return n
}

// TestCheckpoints: with a tiny CheckpointEvery every chunk signs the receipt for
// everything sent so far; with a long interval only chunks that long apart
// do, and a negative one sends none. The final receipt is unchanged.
func TestCheckpoints(t *testing.T) {
	cfg := sim.DefaultConfig()
	cfg.Models[0].FirstToken, cfg.Models[0].TokensPerSecond = 0, 200 // 5 ms a token
	s := newSim(t, cfg)
	tests := []struct {
		name     string
		every    time.Duration
		min, max int // checkpoints expected among 20 chunks
	}{
		{"every chunk", time.Nanosecond, 20, 20},
		{"default: every chunk", 0, 20, 20},
		{"every 200ms", 200 * time.Millisecond, 0, 1},
		{"every 30ms", 30 * time.Millisecond, 1, 4},
		{"off", -1, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGateway(t)
			c := config(t, g.url, s)
			c.CheckpointEvery = tt.every
			startAgent(t, c)
			k := c.Key.Public()
			in := g.connected(t, k)
			job := jobFor(t, g, in, "sim", generate("Tell me a long story.", 20))
			o := collect(t, dispatch(t, g, k, job))
			if o.done == nil || len(o.chunks) != 20 {
				t.Fatalf("job ended with %v after %d chunks, want done after 20", o.err, len(o.chunks))
			}
			if n := checkpointed(t, job, k, o.chunks); n < tt.min || n > tt.max {
				t.Fatalf("%d checkpoints, want %d to %d", n, tt.min, tt.max)
			}
			if _, err := gatewayReceipt(job, k, o.chunks, o.done); err != nil {
				t.Fatalf("final receipt: %v", err)
			}
		})
	}
}

// TestNoPromptInCheckpointsForVersion2: a version-2 gateway gets
// checkpoints without prompt tokens, the receipts it rebuilds.
func TestNoPromptInCheckpointsForVersion2(t *testing.T) {
	g := newRawGateway(t)
	g.version.Store(2)
	c := config(t, g.url, fastSim(t))
	startAgent(t, c)
	conn := g.accept(t)
	if a := <-g.auth; a.ProtocolVersion != 2 {
		t.Fatalf("agent answered version %d to a version-2 gateway", a.ProtocolVersion)
	}
	conn.job(t, g, generate("Hello there, a prompt", 8))
	checkpoints := 0
	for {
		m := conn.next(t)
		if m.Type == protocol.TypeDone {
			break
		}
		if m.Type != protocol.TypeChunk {
			t.Fatalf("got %s", m.Type)
		}
		if cp := m.Chunk.Checkpoint; cp != nil {
			checkpoints++
			if cp.PromptTokens != 0 {
				t.Fatalf("checkpoint with %d prompt tokens sent to a version-2 gateway", cp.PromptTokens)
			}
		}
	}
	if checkpoints == 0 {
		t.Fatal("no checkpoints")
	}
}

// TestNoCheckpointsForVersion1: the agent answers a version-1 gateway in
// version 1 and sends it no checkpoints, which that gateway would not know.
func TestNoCheckpointsForVersion1(t *testing.T) {
	g := newRawGateway(t)
	g.version.Store(1)
	c := config(t, g.url, fastSim(t))
	startAgent(t, c)
	conn := g.accept(t)
	if a := <-g.auth; a.ProtocolVersion != 1 {
		t.Fatalf("agent answered version %d to a version-1 gateway", a.ProtocolVersion)
	}
	conn.job(t, g, generate("Hello", 8))
	chunks := 0
	for {
		m := conn.next(t)
		if m.Type == protocol.TypeDone {
			break
		}
		if m.Type != protocol.TypeChunk {
			t.Fatalf("got %s", m.Type)
		}
		chunks++
		if m.Chunk.Checkpoint != nil {
			t.Fatal("checkpoint sent to a version-1 gateway")
		}
	}
	if chunks == 0 {
		t.Fatal("no chunks")
	}
}
