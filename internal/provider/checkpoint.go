package provider

import (
	"hash"
	"time"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// checkpointer signs a job's partial receipts (protocol version 2): a
// chunk that carries one makes everything sent so far billable even if
// this agent dies before the job's done, or the consumer hangs up.
type checkpointer struct {
	key      keys.PrivateKey
	pub      keys.PublicKey
	terms    *protocol.Terms
	every    time.Duration
	off      bool
	last     time.Time // the previous checkpoint, or the job's start
	prompt   uint64    // prompt tokens every checkpoint bills (version 3)
	tokens   uint64    // completion tokens sent, as the gateway counts them
	response receipt.Hash
}

// With a version-3 gateway every checkpoint bills the prompt as well, by
// protocol.PromptEstimate: the backend tells the prompt's real count only
// at the end, and the job's receipt then bills that.
func (s *session) checkpointer(job *protocol.Job, started time.Time) *checkpointer {
	a := s.agent
	p := &checkpointer{key: a.cfg.Key, pub: a.cfg.Key.Public(), terms: &job.Terms, every: a.cfg.CheckpointEvery, last: started,
		off: a.cfg.CheckpointEvery < 0 || s.hello.ProtocolVersion < 2}
	if s.hello.ProtocolVersion >= 3 {
		p.prompt = protocol.PromptEstimate(&job.Request)
	}
	return p
}

// sign counts c and, when a checkpoint is due, attaches one covering c and
// every chunk before it; text is the hash of all deltas up to c's. The
// hash is summed, not reset: Sum works on a copy of its state.
func (p *checkpointer) sign(c *protocol.Chunk, text hash.Hash) {
	p.tokens += c.TokenCount()
	if p.off || p.tokens == 0 {
		return
	}
	now := time.Now()
	if now.Sub(p.last) < p.every {
		return
	}
	cp := &protocol.Checkpoint{PromptTokens: p.prompt, CompletionTokens: p.tokens, EndUnixMs: max(now.UnixMilli(), p.terms.StartUnixMs, 1)}
	text.Sum(p.response[:0])
	r, err := p.terms.CheckpointReceipt(p.pub, cp, p.response)
	if err != nil {
		return // the amount overflows: no partial receipt, as at the end
	}
	cp.Signature = receipt.SignProvider(p.key, &r)
	c.Checkpoint = cp
	p.last = now
}
