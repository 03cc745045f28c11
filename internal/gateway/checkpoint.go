package gateway

import (
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
