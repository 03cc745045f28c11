package receipt

import (
	"bytes"
	"crypto"
	_ "crypto/sha256" // registers SHA-256 for rfc6962.New
	"errors"
	"fmt"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
)

// TestMerkleMatchesTransparencyDev cross-checks roots and inclusion proofs
// against transparency-dev/merkle, the Certificate Transparency
// implementation, for every tree size up to 70 (all split shapes of small
// trees, and sizes around powers of two).
func TestMerkleMatchesTransparencyDev(t *testing.T) {
	hasher := rfc6962.New(crypto.SHA256)
	if got := MerkleRoot(nil); !bytes.Equal(got[:], hasher.EmptyRoot()) {
		t.Fatalf("empty root %x, want %x", got, hasher.EmptyRoot())
	}
	ref := testonly.New(hasher)
	var leaves []Hash
	for n := 1; n <= 70; n++ {
		data := []byte(fmt.Sprintf("leaf %d", n))
		ref.AppendData(data)
		leaves = append(leaves, LeafHash(data))
		if !bytes.Equal(leaves[n-1][:], hasher.HashLeaf(data)) {
			t.Fatalf("leaf hash differs for %q", data)
		}
		root := MerkleRoot(leaves)
		if !bytes.Equal(root[:], ref.Hash()) {
			t.Fatalf("size %d: root %x, reference %x", n, root, ref.Hash())
		}
		for i := range leaves {
			p, err := MerkleProof(leaves, i)
			if err != nil {
				t.Fatal(err)
			}
			raw := make([][]byte, len(p))
			for j := range p {
				raw[j] = p[j][:]
			}
			if err := proof.VerifyInclusion(hasher, uint64(i), uint64(n), leaves[i][:], raw, ref.Hash()); err != nil {
				t.Fatalf("size %d index %d: reference rejects our proof: %v", n, i, err)
			}
			if err := VerifyMerkleProof(leaves[i], uint64(i), uint64(n), p, root); err != nil {
				t.Fatalf("size %d index %d: %v", n, i, err)
			}
		}
	}
}

// TestMerkleProofRejects checks that a proof fails for any other leaf, index,
// size, root or a tampered path.
func TestMerkleProofRejects(t *testing.T) {
	var leaves []Hash
	for i := range 13 {
		leaves = append(leaves, LeafHash([]byte{byte(i)}))
	}
	root := MerkleRoot(leaves)
	p, err := MerkleProof(leaves, 5)
	if err != nil {
		t.Fatal(err)
	}
	tampered := append([]Hash(nil), p...)
	tampered[1][0] ^= 1
	for _, tc := range []struct {
		name        string
		leaf        Hash
		index, size uint64
		proof       []Hash
		root        Hash
	}{
		{"other leaf", leaves[6], 5, 13, p, root},
		{"other index", leaves[5], 4, 13, p, root},
		{"other size", leaves[5], 5, 7, p, root}, // sizes 9..16 share the shape of 13 for index 5
		{"index outside", leaves[5], 13, 13, p, root},
		{"other root", leaves[5], 5, 13, p, leaves[0]},
		{"tampered path", leaves[5], 5, 13, tampered, root},
		{"short path", leaves[5], 5, 13, p[:len(p)-1], root},
		{"long path", leaves[5], 5, 13, append(append([]Hash(nil), p...), root), root},
	} {
		if err := VerifyMerkleProof(tc.leaf, tc.index, tc.size, tc.proof, tc.root); !errors.Is(err, ErrBadProof) {
			t.Errorf("%s: got %v, want ErrBadProof", tc.name, err)
		}
	}
	if _, err := MerkleProof(leaves, 13); err == nil {
		t.Error("proof for an index outside the tree: no error")
	}
}
