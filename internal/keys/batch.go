package keys

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"runtime"

	"github.com/oasisprotocol/curve25519-voi/curve"
	"github.com/oasisprotocol/curve25519-voi/curve/scalar"
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
// Items are verified in chunks of batchChunk, one batch equation each,
// and the goroutine yields between chunks: a settlement batch of
// thousands of signatures is tens of milliseconds of CPU, and without the
// yields it holds a core until the scheduler preempts it (after 10 ms),
// while requests on a small machine wait for that core.
//
// Each chunk's random coefficients are derived from a hash of its items,
// so the outcome is a pure function of the input: every node computes the
// same answer.
func VerifyBatch(items []SignedMessage) []bool {
	ok := make([]bool, len(items))
	for start := 0; start < len(items); start += batchChunk {
		if start > 0 {
			runtime.Gosched()
		}
		end := min(start+batchChunk, len(items))
		verifyChunk(items[start:end], ok[start:end])
	}
	return ok
}

// batchChunk signatures take about 2 ms to verify together on a slow
// core, about 13 % more per signature than one equation over a thousand
// (128 cost 35 % more; BenchmarkVerifyBatch).
const batchChunk = 256

// verifyChunk sets ok[i] for items[i], all in one batch equation.
func verifyChunk(items []SignedMessage, ok []bool) {
	if len(items) == 0 {
		return
	}
	seed := batchSeed(items)
	if verifyCombined(items, &hashStream{seed: seed}) {
		for i := range ok {
			ok[i] = true
		}
		return
	}
	// Some signature is bad or cannot be decoded: the library's batch
	// verifier finds which, item by item.
	v := voi.NewBatchVerifierWithCapacity(len(items))
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
	}
	if len(idx) == 0 {
		return
	}
	_, valid := v.Verify(&hashStream{seed: seed})
	for j, i := range idx {
		ok[i] = valid[j]
	}
}

// batchSeed is the hash of every item, from which the batch's coefficients
// are derived: nobody can choose signatures that cancel out without
// knowing the coefficients, and nobody knows them before fixing the batch.
func batchSeed(items []SignedMessage) [32]byte {
	seed := sha256.New()
	for i := range items {
		it := &items[i]
		seed.Write(it.Key[:])
		h := sha256.Sum256(it.Message)
		seed.Write(h[:])
		seed.Write(it.Signature[:])
	}
	return [32]byte(seed.Sum(nil))
}

// verifyCombined reports whether every item decodes as batchOptions
// require and the whole batch satisfies the cofactored batch equation
//
//	[8]([-Σ zᵢsᵢ]B + Σ [zᵢ]Rᵢ + Σ [zᵢkᵢ]Aᵢ) = 0
//
// with 128-bit coefficients zᵢ read from rand. It is the equation the
// library's batch verifier checks, except that the terms of items signed
// by the same key are added up first, [Σ zᵢkᵢ]A: the same point, but a
// batch whose receipts come from a few keys multiplies about half as many
// points. False means only that the batch must be checked item by item.
func verifyCombined(items []SignedMessage, rand *hashStream) bool {
	n := len(items)
	rs := make([]curve.EdwardsPoint, n)
	scalars := make([]*scalar.Scalar, 0, n+8)
	points := make([]*curve.EdwardsPoint, 0, n+8)
	zs := make([]scalar.Scalar, n)
	var sum scalar.Scalar // Σ zᵢsᵢ
	scalars = append(scalars, &sum)
	points = append(points, curve.ED25519_BASEPOINT_POINT)
	type keyTerm struct {
		a     curve.EdwardsPoint
		coeff scalar.Scalar // Σ zᵢkᵢ over the key's items
	}
	terms := map[PublicKey]*keyTerm{}
	var order []*keyTerm // terms in first-seen order, for determinism
	h := sha512.New()
	var digest [64]byte
	var zBytes [32]byte
	for i := range items {
		it := &items[i]
		if it.Key.Weak() {
			return false
		}
		term := terms[it.Key]
		if term == nil {
			term = &keyTerm{}
			var c curve.CompressedEdwardsY
			if _, err := c.SetBytes(it.Key[:]); err != nil {
				return false
			}
			if _, err := term.a.SetCompressedY(&c); err != nil || term.a.IsSmallOrder() {
				return false
			}
			terms[it.Key] = term
			order = append(order, term)
		}
		// R and S as batchOptions accept them: S canonical, R a point with
		// a canonical encoding, of any order.
		sig := it.Signature[:]
		if !scalar.ScMinimalVartime(sig[32:]) {
			return false
		}
		var rc curve.CompressedEdwardsY
		if _, err := rc.SetBytes(sig[:32]); err != nil || !rc.IsCanonicalVartime() {
			return false
		}
		if _, err := rs[i].SetCompressedY(&rc); err != nil {
			return false
		}
		var s, k, zS, zK scalar.Scalar
		if _, err := s.SetBytesModOrder(sig[32:]); err != nil {
			return false
		}
		h.Reset()
		h.Write(sig[:32])
		h.Write(it.Key[:])
		h.Write(it.Message)
		if _, err := k.SetBytesModOrderWide(h.Sum(digest[:0])); err != nil {
			return false
		}
		z := &zs[i]
		rand.Read(zBytes[:16]) // the upper 16 bytes stay zero: a 128-bit zᵢ
		if _, err := z.SetBytesModOrder(zBytes[:]); err != nil {
			return false
		}
		sum.Add(&sum, zS.Mul(z, &s))
		term.coeff.Add(&term.coeff, zK.Mul(z, &k))
		scalars = append(scalars, z)
		points = append(points, &rs[i])
	}
	sum.Neg(&sum)
	for _, term := range order {
		scalars = append(scalars, &term.coeff)
		points = append(points, &term.a)
	}
	var p curve.EdwardsPoint
	return p.MultiscalarMulVartime(scalars, points).IsSmallOrder()
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
