package ledger

import (
	"testing"
)

func newChecker(t *testing.T, c *testChain) *Checker {
	t.Helper()
	ck, err := NewChecker(c.state)
	if err != nil {
		t.Fatal(err)
	}
	return ck
}

type checkStep struct {
	name string
	tx   []byte
	code uint32
}

// runChecks runs steps in order on one Checker; the Checker never writes.
func runChecks(t *testing.T, c *testChain, ck *Checker, steps []checkStep) {
	t.Helper()
	before := snapshot(c.state)
	for _, s := range steps {
		res, err := ck.Check(s.tx)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if res.Code != s.code {
			t.Errorf("%s: code %d (%s), want %d", s.name, res.Code, res.Log, s.code)
		}
	}
	if diff := stateDiff(before, c.state); len(diff) != 0 {
		t.Fatalf("Check changed state: %q", diff)
	}
}

func TestCheckerNonces(t *testing.T) {
	w := newWorld(t)
	bob := addr(w.bob)
	runChecks(t, w.testChain, newChecker(t, w.testChain), []checkStep{
		{"nonce 0", transferTx(w.alice, 0, bob, 1), CodeOK},
		{"nonce 1", transferTx(w.alice, 1, bob, 1), CodeOK},
		{"nonce 0 again", transferTx(w.alice, 0, bob, 2), CodeBadNonce},
		{"nonce 1 again", transferTx(w.alice, 1, bob, 1), CodeBadNonce},
		{"gap", transferTx(w.alice, 3, bob, 1), CodeBadNonce},
		{"nonce 2, another kind", approveTx(w.alice, 2, addr(w.gw2), 5), CodeOK},
		{"nonce 3 after the gap was refused", transferTx(w.alice, 3, bob, 1), CodeOK},
		{"another sender starts at its own nonce", transferTx(w.bob, 0, addr(w.alice), 1), CodeOK},
		{"a refused tx does not advance the nonce", transferTx(w.bob, 1, addr(w.alice), 0), CodeInvalid},
		{"so nonce 1 is still next", transferTx(w.bob, 1, addr(w.alice), 1), CodeOK},
	})
}

func TestCheckerRejects(t *testing.T) {
	w := newWorld(t)
	badSig := transferTx(w.alice, 0, addr(w.bob), 1)
	badSig[len(badSig)-1] ^= 1
	runChecks(t, w.testChain, newChecker(t, w.testChain), []checkStep{
		{"malformed", []byte("junk"), CodeMalformed},
		{"wrong chain", signTx(w.alice, Tx{ChainID: "other", Kind: KindTransfer, To: addr(w.bob), Amount: 1}), CodeWrongChain},
		{"unknown sender", transferTx(w.stranger, 0, addr(w.bob), 1), CodeUnknownAccount},
		{"bad signature", badSig, CodeBadSignature},
		{"transfer zero", transferTx(w.alice, 0, addr(w.bob), 0), CodeInvalid},
		{"stake zero", stakeTx(w.alice, 0, 0), CodeInvalid},
		{"unstake zero", unstakeTx(w.gw, 0, 0), CodeInvalid},
		{"unstake more than staked", unstakeTx(w.gw, 0, gwStake+1), CodeInsufficientFunds},
		{"unstake all", unstakeTx(w.gw, 0, gwStake), CodeOK},
	})
}

// TestCheckerDoubleSpend: pending spending counts against the balance.
func TestCheckerDoubleSpend(t *testing.T) {
	w := newWorld(t)
	bob := addr(w.bob)
	runChecks(t, w.testChain, newChecker(t, w.testChain), []checkStep{
		{"spend 600 of 1000", transferTx(w.plain, 0, bob, 600), CodeOK},
		{"600 more", transferTx(w.plain, 1, bob, 600), CodeInsufficientFunds},
		{"stake the remaining 400", stakeTx(w.plain, 1, 400), CodeOK},
		{"one more", transferTx(w.plain, 2, bob, 1), CodeInsufficientFunds},
		{"nothing left to lock in a deposit", approveTx(w.plain, 2, addr(w.gw), 1), CodeInsufficientFunds},
		{"a deposit of zero locks nothing", approveTx(w.plain, 2, addr(w.gw), 0), CodeOK},
		{"stake is not balance", transferTx(w.gw, 0, bob, gwBalance+1), CodeInsufficientFunds},
	})
}

func TestCheckerSettleBatch(t *testing.T) {
	w := newWorld(t)
	r := func(gwName string) BatchReceipt {
		return batchReceipt(t, testKey(t, gwName), w.prov, addr(w.alice), "r1", 10, 10)
	}
	rs := []BatchReceipt{r("gw")}
	runChecks(t, w.testChain, newChecker(t, w.testChain), []checkStep{
		{"from a consumer", settleTx(w.alice, 0, r("alice")), CodeNotRegistered},
		{"from a provider", settleTx(w.prov, 0, r("prov")), CodeNotRegistered},
		{"from an under-staked gateway", settleTx(w.gwlow, 0, r("gwlow")), CodeStakeTooLow},
		{"empty", settleTx(w.gw, 0), CodeBadBatch},
		{"wrong root", signTx(w.gw, Tx{Kind: KindSettleBatch, Receipts: rs, Root: BatchRoot(nil)}), CodeBadBatch},
		{"too many", settleTx(w.gw, 0, rs[0], rs[0], rs[0], rs[0], rs[0], rs[0], rs[0], rs[0], rs[0]), CodeBadBatch},
		{"from a gateway", settleTx(w.gw, 0, rs...), CodeOK},
	})
}

// TestCheckerAfterCommit: a new Checker starts from committed state, with
// nothing pending.
func TestCheckerAfterCommit(t *testing.T) {
	w := newWorld(t)
	bob := addr(w.bob)
	tx0, tx1 := transferTx(w.plain, 0, bob, 600), transferTx(w.plain, 1, bob, 300)
	ck := newChecker(t, w.testChain)
	runChecks(t, w.testChain, ck, []checkStep{{"nonce 0", tx0, CodeOK}, {"nonce 1", tx1, CodeOK}})

	if res := w.apply(tx0); res.Code != CodeOK { // only tx0 made it into the block
		t.Fatalf("code %d (%s)", res.Code, res.Log)
	}
	runChecks(t, w.testChain, newChecker(t, w.testChain), []checkStep{
		{"committed nonce", tx0, CodeBadNonce},
		{"re-check of pending", tx1, CodeOK},
		{"balance is the committed 400, less 300 pending", transferTx(w.plain, 2, bob, 101), CodeInsufficientFunds},
		{"the rest", transferTx(w.plain, 2, bob, 100), CodeOK},
	})
}

func TestNewCheckerWithoutGenesis(t *testing.T) {
	if _, err := NewChecker(memState{}); err == nil {
		t.Fatal("NewChecker on empty state succeeded")
	}
	if _, err := NewBlock(memState{}, 1); err == nil {
		t.Fatal("NewBlock on empty state succeeded")
	}
}

// TestCheckerRecheck: a recheck after a commit skips the signature and root
// (the bytes were checked when admitted) but still applies what the commit
// changed: the nonce.
func TestCheckerRecheck(t *testing.T) {
	w := newWorld(t)
	bob := addr(w.bob)
	badSig := transferTx(w.alice, 0, bob, 1)
	badSig[len(badSig)-1] ^= 1
	c := newChecker(t, w.testChain)
	if res, err := c.Recheck(badSig); err != nil || res.Code != CodeOK {
		t.Fatalf("recheck does not verify signatures again: %+v %v", res, err)
	}
	if res, _ := c.Check(transferTx(w.alice, 0, bob, 1)); res.Code != CodeBadNonce {
		t.Fatalf("after the recheck admitted nonce 0, a check of nonce 0: code %d", res.Code)
	}
	if res, _ := c.Recheck(transferTx(w.alice, 5, bob, 1)); res.Code != CodeBadNonce {
		t.Fatalf("recheck with a stale nonce: code %d", res.Code)
	}
}
