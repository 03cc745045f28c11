package keys

import (
	"crypto/sha256"
	"encoding/binary"

	voi "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

// SignedMessage is a message with its signer and signature, for VerifyBatch.
type SignedMessage struct {
	Key       PublicKey
	Message   []byte
	Signature Signature
}

// batchOptions make the batch accept every signature Verify accepts:
// cofactored verification (the only kind that batches) accepts whatever the
// cofactorless check of crypto/ed25519 does, non-canonical key encodings
// included (crypto/ed25519 decodes them), while weak keys are refused
// before the batch. A non-canonical R never verifies in crypto/ed25519 and
// is refused here too.
var batchOptions = &voi.Options{Verify: &voi.VerifyOptions{
	AllowSmallOrderR:   true,
	AllowNonCanonicalA: true,
}}

// VerifyBatch reports for each item whether its signature verifies. It
// checks them together with ed25519 batch verification, several times
// faster per signature than Verify when all are valid; when one is not, it
// falls back to checking each. It accepts every signature Verify accepts.
// Being cofactored, it can also accept a signature that the key's own
// holder crafted with small-order components and Verify would refuse —
// never a signature made without the private key.
//
// The batch's random coefficients are derived from a hash of all its items,
// so the outcome is a pure function of the input: every node computes the
// same answer.
func VerifyBatch(items []SignedMessage) []bool {
	ok := make([]bool, len(items))
	if len(items) == 0 {
		return ok
	}
	v := voi.NewBatchVerifierWithCapacity(len(items))
	seed := sha256.New()
	idx := make([]int, 0, len(items))
	// Receipts of a batch come from a few providers and one gateway: each
	// key is decompressed once, not once per signature.
	expanded := map[PublicKey]*voi.ExpandedPublicKey{}
	for i := range items {
		it := &items[i]
		if it.Key.Weak() {
			continue
		}
		x, seen := expanded[it.Key]
		if !seen {
			x, _ = voi.NewExpandedPublicKey(voi.PublicKey(it.Key[:]))
			expanded[it.Key] = x
		}
		if x == nil {
			continue // not a point: never verifies
		}
		v.AddExpandedWithOptions(x, it.Message, it.Signature[:], batchOptions)
		idx = append(idx, i)
		seed.Write(it.Key[:])
		h := sha256.Sum256(it.Message)
		seed.Write(h[:])
		seed.Write(it.Signature[:])
	}
	if len(idx) == 0 {
		return ok
	}
	_, valid := v.Verify(&hashStream{seed: [32]byte(seed.Sum(nil))})
	for j, i := range idx {
		ok[i] = valid[j]
	}
	return ok
}

// hashStream is an endless byte stream sha256(seed ‖ counter) ‖ …: the
// deterministic source of the batch's coefficients.
type hashStream struct {
	seed [32]byte
	n    uint64
	buf  []byte
}

func (h *hashStream) Read(p []byte) (int, error) {
	for i := range p {
		if len(h.buf) == 0 {
			var b [40]byte
			copy(b[:], h.seed[:])
			binary.BigEndian.PutUint64(b[32:], h.n)
			h.n++
			sum := sha256.Sum256(b[:])
			h.buf = sum[:]
		}
		p[i] = h.buf[0]
		h.buf = h.buf[1:]
	}
	return len(p), nil
}
