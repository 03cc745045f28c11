package protocol

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"testing"
)

// TestAppendEmbedding pins the canonical encoding of vectors that the
// response hash of embed jobs covers: the dimension count, then each
// float32's bits, all little-endian.
func TestAppendEmbedding(t *testing.T) {
	got := hex.EncodeToString(AppendEmbedding(nil, []float32{1, -2.5, float32(math.Copysign(0, -1))}))
	if want := "03000000" + "0000803f" + "000020c0" + "00000080"; got != want {
		t.Fatalf("encoding %s, want %s", got, want)
	}
	vs := [][]float32{{1, -2.5}, {}, {0.25}}
	var all []byte
	for _, v := range vs {
		all = AppendEmbedding(all, v)
	}
	if EmbeddingsHash(vs) != sha256.Sum256(all) {
		t.Fatal("EmbeddingsHash is not the sha256 of the vectors' encodings in order")
	}
	// Splitting the same components differently changes the hash.
	if EmbeddingsHash([][]float32{{1}, {-2.5}, {}, {0.25}}) == EmbeddingsHash(vs) {
		t.Fatal("the hash does not bind the vectors' boundaries")
	}
}

// TestEmbeddingSurvivesJSON: every float32 crosses the wire with its exact
// bits, so both ends hash the same vector.
func TestEmbeddingSurvivesJSON(t *testing.T) {
	v := []float32{math.MaxFloat32, math.SmallestNonzeroFloat32, -0.1, 1.0 / 3, 16777217, 1e-38, float32(math.Copysign(0, -1))}
	b, err := Encode(nil, &Message{Type: TypeChunk, Chunk: &Chunk{ID: "j", Embedding: v}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range m.Chunk.Embedding {
		if math.Float32bits(f) != math.Float32bits(v[i]) {
			t.Fatalf("component %d: %v became %v", i, v[i], f)
		}
	}
}
