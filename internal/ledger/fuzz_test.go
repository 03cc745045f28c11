package ledger

import (
	"bytes"
	"errors"
	"testing"
)

// fuzzGenesis is the small state FuzzApply (and the sample transactions)
// run against.
func fuzzGenesis(tb testing.TB) Genesis {
	tb.Helper()
	alice, gw, prov, bob := testKey(tb, "alice"), testKey(tb, "gw"), testKey(tb, "prov"), testKey(tb, "bob")
	return Genesis{Params: testParams(), Accounts: []GenesisAccount{
		{Address: addr(alice), Balance: 1_000_000, Approvals: []GenesisApproval{{Gateway: addr(gw), Deposit: 100_000}}},
		{Address: addr(gw), PubKey: gw.Public(), Balance: 1_000, Stake: 50_000, Roles: []string{"gateway"}},
		{Address: addr(prov), PubKey: prov.Public(), Stake: 2_000, Roles: []string{"provider"}},
		{Address: addr(bob), Balance: 10},
	}}
}

const fuzzSupply = 1_000_000 + 1_000 + 50_000 + 2_000 + 10

// FuzzDecodeTx: DecodeTx never panics, fails only with ErrMalformed, and
// accepts only canonical bytes: what it decodes re-encodes to the input.
func FuzzDecodeTx(f *testing.F) {
	for _, tx := range sampleTxs(f) {
		b := tx.Bytes()
		f.Add(b)
		f.Add(b[:len(b)-1])
		f.Add(append(bytes.Clone(b), 0))
	}
	f.Add([]byte{})
	f.Add([]byte{TxVersion, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		tx, err := DecodeTx(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if again := tx.Bytes(); !bytes.Equal(again, b) {
			t.Fatalf("DecodeTx accepted non-canonical bytes:\n  in %x\n out %x", b, again)
		}
	})
}

// FuzzApply: whatever bytes a block carries, Apply returns no error (there
// is no storage failure here), the accounts still add up to the supply,
// and the supply does not move.
func FuzzApply(f *testing.F) {
	for _, tx := range sampleTxs(f) {
		f.Add(tx.Bytes())
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		c := newChain(t, fuzzGenesis(t))
		before := snapshot(c.state)
		run := c.block(b)
		c.checkSupply(fuzzSupply)
		if run.results[0].Code != CodeOK && run.results[0].Code > CodeBadBatch {
			t.Fatalf("unknown result code %d", run.results[0].Code)
		}
		if _, err := DecodeTx(b); err != nil {
			if diff := stateDiff(before, c.state); len(diff) != 0 {
				t.Fatalf("malformed tx changed %q", diff)
			}
		}
	})
}
