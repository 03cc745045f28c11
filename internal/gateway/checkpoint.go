package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// Checkpoints (protocol version 2; from version 3 they bill the prompt
// too). A provider may sign, with a chunk, the receipt for everything its
// job delivered so far. On the happy path the
// gateway only remembers the latest one with the hash of the text relayed
// up to it (one sha256 finalization of a copied state per checkpoint, no
// signature check): the job's done brings the real receipt under the same
// request id. When the job ends without done — the provider died, stalled,
// failed, or the consumer or the deadline ended it — the latest checkpoint
// is verified, metered against what was relayed, countersigned and stored
// as that job's receipt, and settles like any other. Tokens relayed after
// it are not billed.

// checkpoint is the latest checkpoint of a job and what the gateway had
// relayed of that job when it arrived.
type checkpoint struct {
	cp      *protocol.Checkpoint
	text    receipt.Hash // sha256 of the deltas up to its chunk
	relayed int          // bytes of text up to its chunk
	tokens  int          // tokens up to its chunk, as the gateway counts them
}

// keep records ch's checkpoint, if it carries one, once ch has reached the
// consumer: a checkpoint can never bill a chunk the consumer did not get.
func (s *segment) keep(ch *protocol.Chunk) {
	if ch.Checkpoint == nil {
		return
	}
	s.last = checkpoint{cp: ch.Checkpoint, relayed: s.relayed, tokens: s.tokens}
	s.text.Sum(s.last.text[:0])
}

// checkpointReceipt is the partial receipt seg's latest checkpoint signs,
// or why it cannot be billed.
func checkpointReceipt(job *protocol.Job, provider keys.PublicKey, last *checkpoint, now time.Time) (receipt.Receipt, error) {
	cp := last.cp
	r, err := job.Terms.CheckpointReceipt(provider, cp, last.text)
	if err != nil {
		return receipt.Receipt{}, err
	}
	if cp.CompletionTokens > uint64(last.tokens) {
		return r, fmt.Errorf("the checkpoint claims %d completion tokens, %d were relayed up to it", cp.CompletionTokens, last.tokens)
	}
	// The same bounds as a final receipt's: the prompt tokens (version 3)
	// cannot exceed what the prompt can hold.
	if err := checkUsage(&job.Request, protocol.Usage{PromptTokens: cp.PromptTokens, CompletionTokens: cp.CompletionTokens}, last.relayed); err != nil {
		return r, err
	}
	if cp.EndUnixMs > now.Add(5*time.Minute).UnixMilli() {
		return r, fmt.Errorf("the checkpoint's end time is in the future")
	}
	if err := r.Validate(); err != nil {
		return r, err
	}
	return r, receipt.VerifyProvider(&r, cp.Signature)
}

// settleCheckpoint stores the receipt of a job that ended mid-answer from
// its latest checkpoint, countersigned, and charges it to the consumer; a
// job without a valid checkpoint leaves what it delivered unbilled.
func (g *Gateway) settleCheckpoint(ctx context.Context, job *protocol.Job, provider keys.PublicKey, hold *reservation, seg *segment, log *slog.Logger) {
	if seg.chunks == 0 {
		return
	}
	if seg.last.cp == nil {
		log.Info("job ended mid-answer without a checkpoint; its tokens are not billed", "unbilled_tokens", seg.tokens)
		return
	}
	r, err := checkpointReceipt(job, provider, &seg.last, time.Now())
	if err != nil {
		log.Warn("checkpoint rejected; the job's tokens are not billed", "err", err, "unbilled_tokens", seg.tokens)
		return
	}
	if _, err := g.record(ctx, r, seg.last.cp.Signature, hold); err != nil {
		log.Error("could not store the partial receipt", "err", err)
		return
	}
	log.Info("partial receipt stored from the provider's last checkpoint", "completion_tokens", r.CompletionTokens,
		"unbilled_tokens", seg.tokens-int(r.CompletionTokens), "amount", r.Amount.String())
}
