package ledger

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// sampleTxs are one signed transaction of every kind with every body field
// set, all with nonce 0 from accounts of fuzzGenesis, so that each applies.
func sampleTxs(tb testing.TB) []Tx {
	tb.Helper()
	alice, gw, prov := testKey(tb, "alice"), testKey(tb, "gw"), testKey(tb, "prov")
	rs := []BatchReceipt{
		batchReceipt(tb, gw, prov, addr(alice), "sample-1", 1000, 333),
		batchReceipt(tb, gw, prov, addr(alice), "sample-2", 7, 0),
	}
	params := testParams()
	params.AllowedDigests = append(params.AllowedDigests, ModelDigests{Model: "medium ✓", Digests: []string{"a", "sha256:b"}})
	txs := []struct {
		k  keys.PrivateKey
		tx Tx
	}{
		{alice, Tx{Kind: KindTransfer, To: addr(testKey(tb, "bob")), Amount: 12_345}},
		{alice, Tx{Kind: KindRegister, Role: RoleProvider, Info: "https://alice.example/v1 ✓"}},
		{alice, Tx{Kind: KindStake, Amount: 1_000}},
		{gw, Tx{Kind: KindUnstake, Amount: 500}},
		{gw, Tx{Kind: KindWithdrawUnbonded}},
		{alice, Tx{Kind: KindApprove, Gateway: addr(gw), Amount: 50_000}},
		{gw, Tx{Kind: KindSettleBatch, Receipts: rs, Root: BatchRoot(rs)}},
		{prov, Tx{Kind: KindClaim}},
		{alice, Tx{Kind: KindParams, Params: params, Approvals: []Approval{
			ApproveParams(alice, testChainID, 3, &params), ApproveParams(gw, testChainID, 3, &params)}}},
		{alice, Tx{Kind: KindVerdict, Subject: addr(prov), Digest: "sha256:abc", Evidence: receipt.Sum([]byte("e")), Pass: true}},
		{alice, Tx{Kind: KindVerdict, Subject: addr(prov), Digest: testDigest, Evidence: CaseEvidence(rs[:1], false), CaseReceipts: rs[:1]}},
		{alice, Tx{Kind: KindVerdict, Subject: addr(prov), Digest: testDigest, Evidence: CaseEvidence(rs, true), Pass: true, CaseReceipts: rs,
			CaseTexts: []CaseText{{Request: []byte(`{"model":"m","prompt":"canary ✓"}`), Response: "an answer ✓"}, {Request: []byte("{}"), Response: ""}}}},
		{gw, Tx{Kind: KindPlant, Evidence: PlantCommitment(receipt.Sum([]byte("e")), false, receipt.Sum([]byte("salt")))}},
		{gw, Tx{Kind: KindReveal, Evidence: receipt.Sum([]byte("e")), Salt: receipt.Sum([]byte("salt"))}},
		{prov, Tx{Kind: KindUnjail}},
	}
	out := make([]Tx, len(txs))
	for i, s := range txs {
		s.tx.ChainID = testChainID
		s.tx.Sign(s.k)
		out[i] = s.tx
	}
	return out
}

func TestTxRoundTrip(t *testing.T) {
	for _, tx := range sampleTxs(t) {
		t.Run(tx.Kind.String(), func(t *testing.T) {
			b := tx.Bytes()
			got, err := DecodeTx(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tx) {
				t.Fatalf("decoded\n%+v\nwant\n%+v", got, tx)
			}
			if !bytes.Equal(got.Bytes(), b) {
				t.Fatal("re-encoding differs")
			}
			if !got.VerifySignature() {
				t.Fatal("signature does not verify after decoding")
			}
		})
	}
}

// TestTxTruncated: every proper prefix of a valid transaction fails to
// decode, and applying it changes nothing.
func TestTxTruncated(t *testing.T) {
	c := newChain(t, fuzzGenesis(t))
	var prefixes [][]byte
	for _, tx := range sampleTxs(t) {
		b := tx.Bytes()
		for n := range len(b) {
			_, err := DecodeTx(b[:n])
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("%s: prefix of %d/%d bytes: error %v, want ErrMalformed", tx.Kind, n, len(b), err)
			}
			prefixes = append(prefixes, b[:n])
		}
	}
	hash := string(c.appHash)
	run := c.block(prefixes...)
	for i, res := range run.results {
		if res.Code != CodeMalformed {
			t.Fatalf("prefix %d: code %d, want %d", i, res.Code, CodeMalformed)
		}
	}
	if len(run.changes) != 0 || string(c.appHash) != hash {
		t.Fatalf("applying prefixes changed %q", keysOf(run.changes))
	}
}

// TestTxSignatureCoversEveryByte: flipping any bit of the signed part makes
// the transaction either undecodable or wrongly signed.
func TestTxSignatureCoversEveryByte(t *testing.T) {
	for _, tx := range sampleTxs(t) {
		b := tx.Bytes()
		for i := range len(b) - keys.SignatureSize {
			for _, bit := range []byte{0x01, 0x80} {
				m := bytes.Clone(b)
				m[i] ^= bit
				if got, err := DecodeTx(m); err == nil && got.VerifySignature() {
					t.Fatalf("%s: flipping bit %#x of byte %d still verifies", tx.Kind, bit, i)
				}
			}
		}
	}
}

// goldenTransfer is the transaction pinned by testdata/transfer_tx.golden.
func goldenTransfer(t *testing.T) Tx {
	t.Helper()
	sender, err := keys.FromSeed(bytes.Repeat([]byte{0x01}, 32))
	if err != nil {
		t.Fatal(err)
	}
	to, err := keys.FromSeed(bytes.Repeat([]byte{0x02}, 32))
	if err != nil {
		t.Fatal(err)
	}
	tx := Tx{ChainID: "idlegrid-dev-1", Kind: KindTransfer, Nonce: 7, To: to.Public().Address(), Amount: 1_250_000}
	tx.Sign(sender)
	return tx
}

// TestTxGolden: the encoding and hash of a fixed transfer never change by
// accident. Transactions already on a chain are replayed from these bytes.
func TestTxGolden(t *testing.T) {
	raw, err := os.ReadFile("testdata/transfer_tx.golden")
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]string{}
	for line := range strings.Lines(string(raw)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, _ := strings.Cut(line, " ")
		fields[k] = v
	}
	tx := goldenTransfer(t)
	b := tx.Bytes()
	if got := hex.EncodeToString(b); got != fields["bytes"] {
		t.Errorf("transfer encoding changed:\n got %s\nwant %s", got, fields["bytes"])
	}
	if got := TxHash(b).String(); got != fields["hash"] {
		t.Errorf("transfer hash changed:\n got %s\nwant %s", got, fields["hash"])
	}
	want, err := hex.DecodeString(fields["bytes"])
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeTx(want)
	if err != nil {
		t.Fatalf("golden bytes no longer decode: %v", err)
	}
	if !reflect.DeepEqual(got, tx) || !got.VerifySignature() {
		t.Errorf("golden bytes decode to %+v", got)
	}
}

func TestKindAndRoleNames(t *testing.T) {
	for _, k := range allKinds {
		if strings.HasPrefix(k.String(), "kind(") {
			t.Errorf("kind %d has no name", k)
		}
	}
	if Kind(99).String() != "kind(99)" {
		t.Error(Kind(99).String())
	}
	for _, r := range []Role{RoleProvider, RoleGateway, RoleVerifier} {
		got, err := ParseRole(r.String())
		if err != nil || got != r {
			t.Errorf("ParseRole(%q) = %v, %v", r.String(), got, err)
		}
	}
	if _, err := ParseRole("validator"); err == nil {
		t.Error("ParseRole accepted validator")
	}
}
