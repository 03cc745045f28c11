package ledger

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/bits"

	"github.com/idlegrid/idlegrid/internal/receipt"
)

// maxPayoutProofBytes bounds a payout proof file. A proof of the largest
// possible tree is 64 hashes, a few KiB even indented; the slack is for
// hand-formatted files.
const maxPayoutProofBytes = 1 << 20

// ReadPayoutProof reads a payout proof as `idlegrid ledger payout --out`
// writes it: one JSON object, no unknown member, nothing after it, at most
// 1 MiB. It checks that the proof is well formed (a valid account, an
// amount above zero as every payout is, an index inside the tree, a path
// exactly as long as that leaf's depth, a root) but not that it is true:
// Verify does that against the epoch's root, which must come from the
// chain, never from the file.
func ReadPayoutProof(r io.Reader) (PayoutProof, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxPayoutProofBytes+1))
	if err != nil {
		return PayoutProof{}, err
	}
	if len(b) > maxPayoutProofBytes {
		return PayoutProof{}, fmt.Errorf("larger than %d bytes", maxPayoutProofBytes)
	}
	var p PayoutProof
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return PayoutProof{}, err
	}
	if rest := bytes.TrimSpace(b[dec.InputOffset():]); len(rest) > 0 {
		return PayoutProof{}, errors.New("data after the proof's JSON object")
	}
	return p, p.check()
}

// check reports what makes the proof malformed, whatever the root.
func (p *PayoutProof) check() error {
	if err := p.Payout.Account.Validate(); err != nil {
		return fmt.Errorf("payout account: %w", err)
	}
	if p.Payout.Amount == 0 {
		return errors.New("payout amount is zero: the ledger pays no zero rewards")
	}
	if p.Index >= p.Size {
		return fmt.Errorf("index %d outside a tree of %d leaves", p.Index, p.Size)
	}
	if want := auditPathLen(p.Index, p.Size); len(p.Path) != want {
		return fmt.Errorf("path has %d hashes; leaf %d of %d needs %d", len(p.Path), p.Index, p.Size, want)
	}
	if p.Root == (receipt.Hash{}) {
		return errors.New("no root")
	}
	return nil
}

// auditPathLen is the length of the RFC 6962 audit path of leaf index in a
// tree of size leaves (index < size): one hash per split on the way from
// the root down to the leaf.
func auditPathLen(index, size uint64) int {
	n := 0
	for size > 1 {
		k := uint64(1) << (bits.Len64(size-1) - 1) // the largest power of two below size
		if index < k {
			size = k
		} else {
			index -= k
			size -= k
		}
		n++
	}
	return n
}
