package protocol

import (
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"math"

	"github.com/idlegrid/idlegrid/internal/receipt"
)

// Limits of embed jobs.
const (
	// MaxEmbedInputs is the most texts one embed request may hold
	// (OpenAI's limit too).
	MaxEmbedInputs = 2048
	// MaxEmbeddingDims is the most dimensions a vector may have; the
	// largest embedding models have a few thousand.
	MaxEmbeddingDims = 1 << 16
)

// EmbedSince is the first protocol version that runs embed jobs: a gateway
// never sends one to an older agent, which would take the unknown kind for
// a protocol error.
const EmbedSince = 5

// AppendEmbedding appends the canonical encoding of one vector to b: its
// dimension count as 4 bytes little-endian, then each component's float32
// bits, 4 bytes little-endian each. The response hash of an embed job is
// the sha256 of its vectors' encodings in input order (EmbeddingHasher).
func AppendEmbedding(b []byte, v []float32) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
	for _, f := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(f))
	}
	return b
}

// EmbeddingHasher computes an embed job's response hash incrementally, one
// vector at a time, as provider and gateway see them arrive.
type EmbeddingHasher struct {
	h   hash.Hash
	buf []byte
}

// NewEmbeddingHasher returns a hasher of no vectors yet.
func NewEmbeddingHasher() *EmbeddingHasher { return &EmbeddingHasher{h: sha256.New()} }

// Add hashes the next vector.
func (e *EmbeddingHasher) Add(v []float32) {
	e.buf = AppendEmbedding(e.buf[:0], v)
	e.h.Write(e.buf)
}

// Sum is the response hash of the vectors added so far.
func (e *EmbeddingHasher) Sum() receipt.Hash {
	var out receipt.Hash
	e.h.Sum(out[:0])
	return out
}

// EmbeddingsHash is the response hash of an embed job that answered vs.
func EmbeddingsHash(vs [][]float32) receipt.Hash {
	e := NewEmbeddingHasher()
	for _, v := range vs {
		e.Add(v)
	}
	return e.Sum()
}

// finiteVector reports whether every component of v is a finite number.
func finiteVector(v []float32) bool {
	for _, f := range v {
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			return false
		}
	}
	return true
}
