package receipt

import (
	"crypto/sha256"
	"errors"
	"fmt"
)

// Merkle trees as in RFC 6962 (Certificate Transparency), section 2.1: a leaf
// is hashed as sha256(0x00 ‖ data) and an inner node as sha256(0x01 ‖ left ‖
// right), so a leaf can never pass for a node. The tree over n leaves splits
// at the largest power of two smaller than n; the empty tree's root is
// sha256 of nothing. Receipt batches commit to their receipts with such a
// root, and epoch payouts (ledger) use the same tree.

// LeafHash is the RFC 6962 hash of one leaf's data.
func LeafHash(data []byte) Hash {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(data)
	return Hash(h.Sum(nil))
}

func nodeHash(left, right Hash) Hash {
	var b [1 + 2*len(Hash{})]byte
	b[0] = 1
	copy(b[1:], left[:])
	copy(b[1+len(left):], right[:])
	return sha256.Sum256(b[:])
}

// MerkleRoot is the root over already-hashed leaves (LeafHash of each datum).
func MerkleRoot(leaves []Hash) Hash {
	if len(leaves) == 0 {
		return sha256.Sum256(nil)
	}
	return subtreeRoot(leaves)
}

func subtreeRoot(leaves []Hash) Hash {
	if len(leaves) == 1 {
		return leaves[0]
	}
	k := splitPoint(len(leaves))
	return nodeHash(subtreeRoot(leaves[:k]), subtreeRoot(leaves[k:]))
}

// splitPoint is the largest power of two strictly smaller than n (n ≥ 2).
func splitPoint(n int) int {
	k := 1
	for k<<1 < n {
		k <<= 1
	}
	return k
}

// MerkleProof is the audit path of leaf index in the tree over leaves
// (RFC 6962 PATH), nearest sibling first.
func MerkleProof(leaves []Hash, index int) ([]Hash, error) {
	if index < 0 || index >= len(leaves) {
		return nil, fmt.Errorf("merkle proof: index %d outside a tree of %d leaves", index, len(leaves))
	}
	var path []Hash
	for len(leaves) > 1 {
		k := splitPoint(len(leaves))
		if index < k {
			path = append(path, subtreeRoot(leaves[k:]))
			leaves = leaves[:k]
		} else {
			path = append(path, subtreeRoot(leaves[:k]))
			leaves = leaves[k:]
			index -= k
		}
	}
	// Collected root-side first; the proof lists the leaf's sibling first.
	for i, j := 0, len(path)-1; i < j; i, j = i+1, j-1 {
		path[i], path[j] = path[j], path[i]
	}
	return path, nil
}

// ErrBadProof is returned when a Merkle proof does not lead to the root.
var ErrBadProof = errors.New("merkle proof does not match the root")

// VerifyMerkleProof checks that leaf (a LeafHash) sits at index in a tree of
// size leaves with the given root, following RFC 9162's verification
// algorithm (section 2.1.3.2).
func VerifyMerkleProof(leaf Hash, index, size uint64, proof []Hash, root Hash) error {
	if index >= size {
		return fmt.Errorf("%w: index %d outside a tree of %d leaves", ErrBadProof, index, size)
	}
	fn, sn := index, size-1
	r := leaf
	for _, p := range proof {
		if sn == 0 {
			return fmt.Errorf("%w: proof longer than the tree is deep", ErrBadProof)
		}
		if fn&1 == 1 || fn == sn {
			r = nodeHash(p, r)
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		} else {
			r = nodeHash(r, p)
		}
		fn >>= 1
		sn >>= 1
	}
	if sn != 0 || r != root {
		return ErrBadProof
	}
	return nil
}
