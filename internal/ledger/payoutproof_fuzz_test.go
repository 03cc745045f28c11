package ledger

import (
	"bytes"
	"crypto"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// sampleProofs are true proofs, as `ledger payout --out` writes them, of
// every leaf of trees of 1 to 5 payouts.
func sampleProofs(tb testing.TB) []PayoutProof {
	tb.Helper()
	var out []PayoutProof
	for n := 1; n <= 5; n++ {
		ps := make([]Payout, n)
		for i := range ps {
			ps[i] = Payout{Epoch: 3, Account: keys.Address(fmt.Sprintf("%s%040x", keys.AddressPrefix, i+1)), Amount: money.Amount(1000 * (i + 1))}
		}
		root := PayoutRoot(ps)
		leaves := payoutLeafHashes(ps)
		for i := range ps {
			path, err := receipt.MerkleProof(leaves, i)
			if err != nil {
				tb.Fatal(err)
			}
			out = append(out, PayoutProof{Payout: ps[i], Index: uint64(i), Size: uint64(n), Path: path, Root: root})
		}
	}
	return out
}

func proofJSON(tb testing.TB, p PayoutProof) []byte {
	tb.Helper()
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		tb.Fatal(err)
	}
	return append(b, '\n')
}

// TestReadPayoutProof: true proofs are read back exactly and verify; each
// way a file can be malformed is refused with an error naming it.
func TestReadPayoutProof(t *testing.T) {
	for _, p := range sampleProofs(t) {
		got, err := ReadPayoutProof(bytes.NewReader(proofJSON(t, p)))
		if err != nil || !reflect.DeepEqual(got, p) {
			t.Fatalf("read %+v back as %+v (%v)", p, got, err)
		}
		if err := got.Verify(p.Root); err != nil {
			t.Fatalf("leaf %d of %d: %v", p.Index, p.Size, err)
		}
	}
	good := sampleProofs(t)[7] // leaf 1 of a tree of 4: a path of 2
	edit := func(f func(m map[string]any)) string {
		var m map[string]any
		if err := json.Unmarshal(proofJSON(t, good), &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, _ := json.Marshal(m)
		return string(b)
	}
	payout := func(m map[string]any) map[string]any { return m["payout"].(map[string]any) }
	tests := []struct {
		name, file, want string
	}{
		{"empty", "", "EOF"},
		{"null", "null", "payout account"},
		{"array", "[]", "cannot unmarshal"},
		{"truncated", string(proofJSON(t, good)[:40]), "unexpected EOF"},
		{"unknown member", edit(func(m map[string]any) { m["signature"] = "x" }), "unknown field"},
		{"trailing data", string(proofJSON(t, good)) + "{}", "data after"},
		{"bad account", edit(func(m map[string]any) { payout(m)["account"] = "idg0" }), "payout account"},
		{"zero amount", edit(func(m map[string]any) { payout(m)["amount"] = 0 }), "amount is zero"},
		{"negative amount", edit(func(m map[string]any) { payout(m)["amount"] = -1 }), "cannot unmarshal"},
		{"fractional amount", edit(func(m map[string]any) { payout(m)["amount"] = 1.5 }), "cannot unmarshal"},
		{"index outside", edit(func(m map[string]any) { m["index"] = 4 }), "outside a tree"},
		{"empty tree", edit(func(m map[string]any) { m["index"] = 0; m["size"] = 0 }), "outside a tree"},
		{"path too short", edit(func(m map[string]any) { m["path"] = m["path"].([]any)[:1] }), "needs 2"},
		{"path too long", edit(func(m map[string]any) { m["path"] = append(m["path"].([]any), m["root"]) }), "needs 2"},
		{"short hash", edit(func(m map[string]any) { m["path"].([]any)[0] = "abcd" }), "64 hex digits"},
		{"no root", edit(func(m map[string]any) { delete(m, "root") }), "no root"},
		{"too large", `{"payout":{"account":"` + strings.Repeat(" ", maxPayoutProofBytes) + `"}}`, "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ReadPayoutProof(strings.NewReader(tt.file))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %+v, error %v; want an error containing %q", p, err, tt.want)
			}
		})
	}
}

// FuzzReadPayoutProof: ReadPayoutProof never panics; what it accepts is
// well formed, survives being written and read again unchanged, and
// Verify agrees with transparency-dev's RFC 6962 inclusion check on it;
// a proof that verifies stops verifying when its amount or root changes.
func FuzzReadPayoutProof(f *testing.F) {
	for _, p := range sampleProofs(f) {
		f.Add(proofJSON(f, p))
	}
	f.Add([]byte(`{"payout":{"epoch":1,"account":"idg0000000000000000000000000000000000000001","amount":1},"index":0,"size":1,"path":[],"root":"` + strings.Repeat("0", 63) + `1"}`))
	f.Add([]byte(`{"index":18446744073709551614,"size":18446744073709551615}`))
	hasher := rfc6962.New(crypto.SHA256)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ReadPayoutProof(bytes.NewReader(b))
		if err != nil {
			return
		}
		if p.Payout.Account.Validate() != nil || p.Payout.Amount == 0 || p.Index >= p.Size || len(p.Path) > 64 || p.Root == (receipt.Hash{}) {
			t.Fatalf("accepted a malformed proof %+v", p)
		}
		again, err := ReadPayoutProof(bytes.NewReader(proofJSON(t, p)))
		if err != nil || !reflect.DeepEqual(again, p) {
			t.Fatalf("written and read again: %+v (%v), was %+v", again, err, p)
		}
		ours := p.Verify(p.Root)
		raw := make([][]byte, len(p.Path))
		for i := range p.Path {
			raw[i] = p.Path[i][:]
		}
		theirs := proof.VerifyInclusion(hasher, p.Index, p.Size, hasher.HashLeaf(p.Payout.Leaf()), raw, p.Root[:])
		if (ours == nil) != (theirs == nil) {
			t.Fatalf("Verify says %v, transparency-dev says %v, for %+v", ours, theirs, p)
		}
		if ours != nil {
			return
		}
		other := p.Root
		other[0] ^= 1
		q := p
		q.Payout.Amount++
		if p.Verify(other) == nil || q.Verify(p.Root) == nil {
			t.Fatalf("a proof verifies against another root or for another amount: %+v", p)
		}
	})
}
