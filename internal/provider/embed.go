package provider

import (
	"context"
	"fmt"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// runEmbed executes an embed job: the backend computes every vector, then
// the agent sends one chunk per input (its vector, in input order) and a
// done whose receipt bills the prompt tokens only, over the response hash
// of the vectors (protocol.EmbeddingHasher). Nothing is sent before the
// backend has answered, so a failed embed job delivered nothing and signs
// nothing. release frees the job's slot (session.run).
func (s *session) runEmbed(ctx, jctx context.Context, job *protocol.Job, release func()) {
	a := s.agent
	fail := func(code protocol.Code, msg string) {
		a.failed.Add(1)
		release()
		s.fail(ctx, job.ID, code, msg)
	}
	emb, ok := a.cfg.Backend.(backend.Embedder)
	if !ok {
		fail(protocol.CodeUnsupported, "this provider's backend cannot compute embeddings")
		return
	}
	started := time.Now()
	res, err := emb.Embed(jctx, job.Request)
	if err == nil && len(res.Vectors) != len(job.Request.Input) {
		err = fmt.Errorf("%w: the backend returned %d vectors for %d inputs", backend.ErrUnavailable, len(res.Vectors), len(job.Request.Input))
	}
	if err != nil {
		code := failureCode(jctx, err)
		a.log.Info("embed job failed", "request_id", job.ID, "model", job.Request.Model, "code", code, "err", err)
		fail(code, err.Error())
		return
	}
	firstToken := time.Since(started)
	hash := protocol.NewEmbeddingHasher()
	for i, v := range res.Vectors {
		hash.Add(v)
		c := &protocol.Chunk{ID: job.ID, Seq: uint64(i), Embedding: v}
		if err := s.link.Send(jctx, &protocol.Message{Type: protocol.TypeChunk, Chunk: c}); err != nil {
			fail(protocol.CodeCancelled, err.Error())
			return
		}
	}
	end := max(time.Now().UnixMilli(), job.Terms.StartUnixMs)
	usage := protocol.Usage{PromptTokens: res.PromptTokens}
	r, err := job.Terms.Receipt(a.cfg.Key.Public(), usage, hash.Sum(), end)
	if err != nil {
		fail(protocol.CodeBackend, "cannot price the usage: "+err.Error())
		return
	}
	done := &protocol.Done{
		ID: job.ID, Chunks: uint64(len(res.Vectors)), Usage: usage, FinishReason: "stop", EndUnixMs: end,
		Timings:          protocol.Timings{FirstTokenUs: firstToken.Microseconds(), TotalUs: time.Since(started).Microseconds()},
		ReceiptSignature: receipt.SignProvider(a.cfg.Key, &r),
	}
	release()
	if err := s.link.Send(ctx, &protocol.Message{Type: protocol.TypeDone, Done: done}); err != nil {
		a.failed.Add(1)
		return
	}
	a.served.Add(1)
}
