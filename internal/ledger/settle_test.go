package ledger

import (
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// Fee arithmetic of the test params (gateway 5%, protocol 1%, rounded down,
// the provider gets the rest), worked out by hand for the amounts used:
//
//	amount  protocol  gateway  provider
//	  1999        19       99      1881
//	   500         5       25       470
//	  3000        30      150      2820
//	   100         1        5        94
//	 30000       300     1500     28200

func attr(e Event, key string) string {
	for _, a := range e.Attrs {
		if a.Key == key {
			return a.Value
		}
	}
	return ""
}

// batchSummary checks the settle_batch event of a successful settle-batch
// and returns the receipt_rejected events after it.
func batchSummary(t *testing.T, res Result, accepted, rejected int, amount money.Amount) []Event {
	t.Helper()
	if res.Code != CodeOK {
		t.Fatalf("settle-batch: code %d (%s)", res.Code, res.Log)
	}
	if len(res.Events) == 0 || res.Events[0].Type != "settle_batch" {
		t.Fatalf("events %+v: want settle_batch first", res.Events)
	}
	s := res.Events[0]
	if attr(s, "accepted") != itoa(accepted) || attr(s, "rejected") != itoa(rejected) || attr(s, "amount") != itoa(int(amount)) {
		t.Fatalf("settle_batch %+v: want accepted %d rejected %d amount %d", s.Attrs, accepted, rejected, amount)
	}
	rest := res.Events[1:]
	if len(rest) != rejected {
		t.Fatalf("%d events after the summary, want %d rejections", len(rest), rejected)
	}
	for _, e := range rest {
		if e.Type != "receipt_rejected" {
			t.Fatalf("event %q, want receipt_rejected", e.Type)
		}
	}
	return rest
}

func itoa(n int) string { return strconv.Itoa(n) }

func (c *testChain) settlementBy(gateway keys.Address, id string) (Settlement, bool) {
	c.tb.Helper()
	s, ok, err := c.view().Settlement(gateway, id)
	if err != nil {
		c.tb.Fatal(err)
	}
	return s, ok
}

// settlement reads how w.gw's receipt id was settled.
func (w *world) settlement(id string) (Settlement, bool) { return w.settlementBy(addr(w.gw), id) }

func (c *testChain) dueList(height uint64) []keys.Address {
	c.tb.Helper()
	raw := c.state[dueKey(height)]
	if raw == nil {
		return nil
	}
	d := dec{b: raw}
	as := d.addresses()
	if err := d.end(); err != nil {
		c.tb.Fatal(err)
	}
	return as
}

func checkAccount(t *testing.T, c *testChain, a keys.Address, want Account) {
	t.Helper()
	if got := c.account(a); !reflect.DeepEqual(got, want) {
		t.Errorf("account %s:\n got %+v\nwant %+v", a, got, want)
	}
}

func TestSettleBatch(t *testing.T) {
	w := newWorld(t)
	rs := []BatchReceipt{
		batchReceipt(t, w.gw, w.prov, addr(w.alice), "r1", 1000, 333), // 1999
		batchReceipt(t, w.gw, w.prov2, addr(w.alice), "r2", 500, 0),   // 500
		batchReceipt(t, w.gw, w.prov, addr(w.alice), "r3", 0, 1000),   // 3000
	}
	tx := settleTx(w.gw, 0, rs...)
	before := snapshot(w.state)
	run := w.block(tx) // height 1: escrow releases at 6
	batchSummary(t, run.results[0], 3, 0, 5499)
	if got := attr(run.results[0].Events[0], "root"); got != BatchRoot(rs).String() {
		t.Errorf("root attr %s", got)
	}

	// alice pays from her deposit for gw: her balance is untouched.
	checkAccount(t, w.testChain, addr(w.alice), Account{PubKey: w.alice.Public(), Balance: aliceFree})
	checkAccount(t, w.testChain, addr(w.gw), Account{PubKey: w.gw.Public(), Nonce: 1, Balance: 20_274, Stake: 50_000, Roles: RoleGateway, GatewayInfo: "https://gw.example"})
	checkAccount(t, w.testChain, TreasuryAddress, Account{Balance: 54})
	checkAccount(t, w.testChain, addr(w.prov), Account{PubKey: w.prov.Public(), Stake: 2_000, Roles: RoleProvider, Escrow: []Entry{{Amount: 4_701, Height: 6}}})
	checkAccount(t, w.testChain, addr(w.prov2), Account{PubKey: w.prov2.Public(), Stake: 1_000, Roles: RoleProvider, Escrow: []Entry{{Amount: 470, Height: 6}}})
	if got := w.allowance(addr(w.alice), addr(w.gw)); got != 94_501 {
		t.Errorf("allowance %d, want 94501", got)
	}
	if got := w.allowance(addr(w.alice), addr(w.gw2)); got != aliceAllowance {
		t.Errorf("allowance for gw2 %d, want untouched %d", got, aliceAllowance)
	}
	if got, want := w.dueList(6), []keys.Address{addr(w.prov), addr(w.prov2)}; !slices.Equal(got, want) {
		t.Errorf("due at 6: %v, want %v", got, want)
	}
	s, ok := w.settlement("r1")
	want := Settlement{Height: 1, TxHash: TxHash(tx), Receipt: receipt.Sum(rs[0].Bytes), Amount: 1999, Consumer: addr(w.alice), Provider: w.prov.Public()}
	if !ok || s != want {
		t.Errorf("settlement r1 %+v %v\nwant %+v", s, ok, want)
	}
	if s, ok := w.settlement("r2"); !ok || s.Amount != 500 || s.Provider != w.prov2.Public() {
		t.Errorf("settlement r2 %+v %v", s, ok)
	}
	wantKeys := []string{
		accountKey(addr(w.gw)), accountKey(TreasuryAddress), accountKey(addr(w.prov)), accountKey(addr(w.prov2)),
		depositKey(addr(w.alice), addr(w.gw)), receiptKey(addr(w.gw), "r1"), receiptKey(addr(w.gw), "r2"), receiptKey(addr(w.gw), "r3"), dueKey(6), txKey(TxHash(tx)),
		// the providers' work in epoch 1, and the epoch's list of providers
		workKey(1, addr(w.prov)), workKey(1, addr(w.prov2)), workCountKey(1), workListKey(1, 0), workListKey(1, 1),
	}
	slices.Sort(wantKeys)
	if diff := stateDiff(before, w.state); !slices.Equal(diff, wantKeys) {
		t.Errorf("changed keys %q\nwant %q", diff, wantKeys)
	}
	w.checkSupply(worldSupply)
}

// TestSettleNoEscrow: with EscrowBlocks 0 the provider is paid at once.
func TestSettleNoEscrow(t *testing.T) {
	gw, prov, alice := testKey(t, "gw"), testKey(t, "prov"), testKey(t, "alice")
	p := testParams()
	p.EscrowBlocks = 0
	c := newChain(t, Genesis{Params: p, Accounts: []GenesisAccount{
		{Address: addr(gw), PubKey: gw.Public(), Stake: 10_000, Roles: []string{"gateway"}},
		{Address: addr(prov), PubKey: prov.Public(), Stake: 1_000, Roles: []string{"provider"}},
		{Address: addr(alice), Balance: 5_000, Approvals: []GenesisApproval{{Gateway: addr(gw), Deposit: 5_000}}},
	}})
	batchSummary(t, c.apply(settleTx(gw, 0, batchReceipt(t, gw, prov, addr(alice), "r1", 1000, 333))), 1, 0, 1999)
	checkAccount(t, c, addr(prov), Account{PubKey: prov.Public(), Balance: 1881, Stake: 1_000, Roles: RoleProvider})
	if len(c.dueList(1)) != 0 {
		t.Error("due list written without escrow")
	}
	c.checkSupply(16_000)
}

// TestSettleGatewayPays: what a consumer's deposit for the gateway cannot
// pay (no deposit, one too small, or no account at all) is covered by the
// gateway's stake; when the stake cannot cover it either, only that
// receipt is rejected. The consumer's balance is never drawn.
func TestSettleGatewayPays(t *testing.T) {
	gwAcct := func(w *world, nonce uint64, balance, stake money.Amount) Account {
		return Account{PubKey: w.gw.Public(), Nonce: nonce, Balance: balance, Stake: stake, Roles: RoleGateway, GatewayInfo: "https://gw.example"}
	}
	t.Run("no deposit", func(t *testing.T) {
		w := newWorld(t)
		batchSummary(t, w.apply(settleTx(w.gw, 0, batchReceipt(t, w.gw, w.prov, addr(w.carol), "c1", 1000, 333))), 1, 0, 1999)
		checkAccount(t, w.testChain, addr(w.gw), gwAcct(w, 1, 20_099, 48_001))
		checkAccount(t, w.testChain, addr(w.carol), Account{PubKey: w.carol.Public(), Balance: carolBalance})
		checkAccount(t, w.testChain, TreasuryAddress, Account{Balance: 19})
		if _, ok := w.state[depositKey(addr(w.carol), addr(w.gw))]; ok {
			t.Error("a receipt paid by the gateway wrote carol a deposit record")
		}
		if s, ok := w.settlement("c1"); !ok || !s.PaidByGateway || s.Amount != 1999 {
			t.Errorf("settlement %+v %v: want paid by gateway", s, ok)
		}
		w.checkSupply(worldSupply)
	})
	t.Run("deposit too small", func(t *testing.T) {
		w := newWorld(t)
		batchSummary(t, w.apply(settleTx(w.gw, 0, batchReceipt(t, w.gw, w.prov, addr(w.dave), "d1", 1000, 333))), 1, 0, 1999)
		// dave's deposit pays what it holds, the gateway's stake the rest.
		checkAccount(t, w.testChain, addr(w.gw), gwAcct(w, 1, 20_099, gwStake-(1999-daveAllowance)))
		checkAccount(t, w.testChain, addr(w.dave), Account{PubKey: w.dave.Public(), Balance: daveBalance - daveAllowance})
		if _, ok := w.state[depositKey(addr(w.dave), addr(w.gw))]; ok {
			t.Errorf("dave's emptied deposit is still recorded: %+v", w.deposit(addr(w.dave), addr(w.gw)))
		}
		if s, ok := w.settlement("d1"); !ok || !s.PaidByGateway {
			t.Errorf("settlement %+v %v: want paid by gateway", s, ok)
		}
	})
	t.Run("exactly enough", func(t *testing.T) {
		w := newWorld(t)
		batchSummary(t, w.apply(settleTx(w.gw, 0,
			batchReceipt(t, w.gw, w.prov, addr(w.dave), "d1", 100, 0), // dave's whole deposit
		)), 1, 0, 100)
		checkAccount(t, w.testChain, addr(w.dave), Account{PubKey: w.dave.Public(), Balance: daveBalance - 100})
		if got := w.allowance(addr(w.dave), addr(w.gw)); got != 0 {
			t.Errorf("dave's deposit %d, want 0", got)
		}
		checkAccount(t, w.testChain, addr(w.gw), gwAcct(w, 1, 20_005, gwStake))
		for _, id := range []string{"d1"} {
			if s, ok := w.settlement(id); !ok || s.PaidByGateway {
				t.Errorf("settlement %s %+v %v: want paid by the consumer", id, s, ok)
			}
		}
	})
	t.Run("unknown consumer", func(t *testing.T) {
		w := newWorld(t)
		nobody := addr(w.stranger)
		batchSummary(t, w.apply(settleTx(w.gw, 0, batchReceipt(t, w.gw, w.prov, nobody, "n1", 1000, 333))), 1, 0, 1999)
		checkAccount(t, w.testChain, addr(w.gw), gwAcct(w, 1, 20_099, 48_001))
		if w.exists(nobody) {
			t.Error("settling for an unknown consumer created its account")
		}
		if _, ok := w.state[depositKey(nobody, addr(w.gw))]; ok {
			t.Error("settling for an unknown consumer wrote an allowance")
		}
		w.checkSupply(worldSupply)
	})
}

// TestSettleMixedBatch: good receipts, gateway-paid ones and unpayable ones
// in one batch; each is settled or rejected on its own, in order.
func TestSettleMixedBatch(t *testing.T) {
	w := newWorld(t)
	before := snapshot(w.state)
	rs := []BatchReceipt{
		batchReceipt(t, w.gw, w.prov, addr(w.alice), "a1", 1000, 333),  // alice pays 1999
		batchReceipt(t, w.gw, w.prov, addr(w.carol), "big", 60_000, 0), // nobody can pay 60000
		batchReceipt(t, w.gw, w.prov, addr(w.carol), "c1", 1000, 333),  // gateway pays 1999
		batchReceipt(t, w.gw, w.prov2, addr(w.alice), "a2", 500, 0),    // alice pays 500
		batchReceipt(t, w.gw, w.prov, addr(w.bob), "nope", 60_000, 0),  // bob approved nobody, stake too small
		batchReceipt(t, w.gw, w.prov, addr(w.carol), "c2", 30_000, 0),  // gateway pays 30000: stake 18001 left
		batchReceipt(t, w.gw, w.prov, addr(w.carol), "c3", 30_000, 0),  // not any more
		batchReceipt(t, w.gw, w.prov, addr(w.alice), "a3", 0, 1000),    // alice pays 3000
	}
	tx := settleTx(w.gw, 0, rs...)
	rejected := batchSummary(t, w.apply(tx), 5, 3, 1999+1999+500+30_000+3000)
	for i, want := range []struct{ index, id string }{{"1", "big"}, {"4", "nope"}, {"6", "c3"}} {
		e := rejected[i]
		if attr(e, "index") != want.index || attr(e, "request_id") != want.id || !strings.Contains(attr(e, "reason"), "neither can the gateway's stake") {
			t.Errorf("rejection %d: %+v, want index %s request_id %s for lack of money", i, e.Attrs, want.index, want.id)
		}
		if _, ok := w.settlement(want.id); ok {
			t.Errorf("rejected %s has a settlement", want.id)
		}
	}
	// alice: 1999 + 500 + 3000; gateway stake: 1999 + 30000; fees on all five.
	checkAccount(t, w.testChain, addr(w.alice), Account{PubKey: w.alice.Public(), Balance: aliceFree})
	checkAccount(t, w.testChain, addr(w.carol), Account{PubKey: w.carol.Public(), Balance: carolBalance})
	checkAccount(t, w.testChain, addr(w.gw), Account{PubKey: w.gw.Public(), Nonce: 1, Balance: 20_000 + 99 + 99 + 25 + 1500 + 150, Stake: 50_000 - 31_999, Roles: RoleGateway, GatewayInfo: "https://gw.example"})
	checkAccount(t, w.testChain, TreasuryAddress, Account{Balance: 19 + 19 + 5 + 300 + 30})
	checkAccount(t, w.testChain, addr(w.prov), Account{PubKey: w.prov.Public(), Stake: 2_000, Roles: RoleProvider, Escrow: []Entry{{Amount: 1881 + 1881 + 28_200 + 2820, Height: 6}}})
	checkAccount(t, w.testChain, addr(w.prov2), Account{PubKey: w.prov2.Public(), Stake: 1_000, Roles: RoleProvider, Escrow: []Entry{{Amount: 470, Height: 6}}})
	if got := w.allowance(addr(w.alice), addr(w.gw)); got != aliceAllowance-5499 {
		t.Errorf("alice's allowance %d", got)
	}
	for id, paidByGateway := range map[string]bool{"a1": false, "c1": true, "a2": false, "c2": true, "a3": false} {
		if s, ok := w.settlement(id); !ok || s.PaidByGateway != paidByGateway {
			t.Errorf("settlement %s: %+v %v, want PaidByGateway %v", id, s, ok, paidByGateway)
		}
	}
	// bob's receipt was rejected: no trace of it (no deposit record).
	wantKeys := []string{
		accountKey(addr(w.gw)), accountKey(TreasuryAddress), accountKey(addr(w.prov)), accountKey(addr(w.prov2)),
		depositKey(addr(w.alice), addr(w.gw)), receiptKey(addr(w.gw), "a1"), receiptKey(addr(w.gw), "c1"), receiptKey(addr(w.gw), "a2"), receiptKey(addr(w.gw), "c2"), receiptKey(addr(w.gw), "a3"),
		dueKey(6), txKey(TxHash(tx)),
		workKey(1, addr(w.prov)), workKey(1, addr(w.prov2)), workCountKey(1), workListKey(1, 0), workListKey(1, 1),
	}
	slices.Sort(wantKeys)
	if diff := stateDiff(before, w.state); !slices.Equal(diff, wantKeys) {
		t.Errorf("changed keys %q\nwant %q", diff, wantKeys)
	}
	w.checkSupply(worldSupply)
}

// TestSettleRejectsReceipt: a receipt that fails on its own is named in the
// events and leaves no trace; the batch still spends the gateway's nonce.
func TestSettleRejectsReceipt(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(w *world)
		receipt func(w *world) BatchReceipt
		reason  string
		id      string
	}{{
		name:    "settled in an earlier batch",
		setup:   func(w *world) { w.block(settleTx(w.gw, 0, batchReceipt(t, w.gw, w.prov, addr(w.alice), "r1", 10, 10))) },
		receipt: func(w *world) BatchReceipt { return batchReceipt(t, w.gw, w.prov, addr(w.alice), "r1", 10, 10) },
		reason:  "already settled",
	}, {
		name:  "same request id, other content",
		setup: func(w *world) { w.block(settleTx(w.gw, 0, batchReceipt(t, w.gw, w.prov, addr(w.alice), "r1", 10, 10))) },
		receipt: func(w *world) BatchReceipt {
			return batchReceipt(t, w.gw, w.prov2, addr(w.dave), "r1", 20, 20)
		},
		reason: "already settled",
	}, {
		name:    "provider without account",
		receipt: func(w *world) BatchReceipt { return batchReceipt(t, w.gw, w.stranger, addr(w.alice), "r1", 10, 10) },
		reason:  "provider is not registered",
	}, {
		name:    "provider not registered",
		receipt: func(w *world) BatchReceipt { return batchReceipt(t, w.gw, w.plain, addr(w.alice), "r1", 10, 10) },
		reason:  "provider is not registered",
	}, {
		name:    "gateway is not a provider",
		receipt: func(w *world) BatchReceipt { return batchReceipt(t, w.gw, w.gw, addr(w.alice), "r1", 10, 10) },
		reason:  "provider is not registered",
	}, {
		name:    "provider stake below minimum",
		receipt: func(w *world) BatchReceipt { return batchReceipt(t, w.gw, w.provlow, addr(w.alice), "r1", 10, 10) },
		reason:  "below the minimum",
	}, {
		name: "provider jailed",
		setup: func(w *world) {
			a := w.account(addr(w.prov))
			a.Jailed = true
			w.putAccount(addr(w.prov), a)
		},
		receipt: func(w *world) BatchReceipt { return batchReceipt(t, w.gw, w.prov, addr(w.alice), "r1", 10, 10) },
		reason:  "jailed",
	}, {
		name: "another chain",
		receipt: func(w *world) BatchReceipt {
			return batchReceipt(t, w.gw, w.prov, addr(w.alice), "r1", 10, 10, func(r *receipt.Receipt) { r.ChainID = "other-chain" })
		},
		reason: `receipt for chain "other-chain"`,
	}, {
		name:    "countersigned by another gateway",
		receipt: func(w *world) BatchReceipt { return batchReceipt(t, w.gw2, w.prov, addr(w.alice), "r1", 10, 10) },
		reason:  "another gateway",
	}, {
		name: "tampered field",
		receipt: func(w *world) BatchReceipt {
			s := makeReceipt(t, w.gw, w.prov, addr(w.alice), "r1", 10, 10)
			s.Receipt.ResponseHash[0] ^= 1
			return NewBatchReceipt(&s)
		},
		reason: "bad receipt signature: provider",
	}, {
		name: "tampered token count",
		receipt: func(w *world) BatchReceipt {
			s := makeReceipt(t, w.gw, w.prov, addr(w.alice), "r1", 10, 10)
			s.Receipt.PromptTokens, s.Receipt.Amount = 1, 1+30 // still priced right
			return NewBatchReceipt(&s)
		},
		reason: "bad receipt signature",
	}, {
		name: "bad gateway signature",
		receipt: func(w *world) BatchReceipt {
			br := batchReceipt(t, w.gw, w.prov, addr(w.alice), "r1", 10, 10)
			br.GatewaySignature[0] ^= 1
			return br
		},
		reason: "bad receipt signature: gateway",
	}, {
		name: "signatures swapped",
		receipt: func(w *world) BatchReceipt {
			br := batchReceipt(t, w.gw, w.prov, addr(w.alice), "r1", 10, 10)
			br.GatewaySignature, br.ProviderSignature = br.ProviderSignature, br.GatewaySignature
			return br
		},
		reason: "bad receipt signature",
	}, {
		name: "amount is not tokens × prices",
		receipt: func(w *world) BatchReceipt {
			return batchReceipt(t, w.gw, w.prov, addr(w.alice), "r1", 10, 10, func(r *receipt.Receipt) { r.Amount++ })
		},
		reason: "tokens × prices",
		id:     "-",
	}, {
		name: "consumer is not an address",
		receipt: func(w *world) BatchReceipt {
			return batchReceipt(t, w.gw, w.prov, "alice", "r1", 10, 10)
		},
		reason: "address",
	}, {
		name:    "neither consumer nor gateway can pay",
		receipt: func(w *world) BatchReceipt { return batchReceipt(t, w.gw, w.prov, addr(w.carol), "r1", 50_001, 0) },
		reason:  "neither can the gateway's stake",
	}, {
		name:    "consumer without allowance, gateway cannot pay",
		receipt: func(w *world) BatchReceipt { return batchReceipt(t, w.gw, w.prov, addr(w.bob), "r1", 50_001, 0) },
		reason:  "neither can the gateway's stake",
	}, {
		name:    "consumer without account, gateway cannot pay",
		receipt: func(w *world) BatchReceipt { return batchReceipt(t, w.gw, w.prov, addr(w.stranger), "r1", 50_001, 0) },
		reason:  "neither can the gateway's stake",
	}, {
		name:    "not a receipt",
		receipt: func(*world) BatchReceipt { return BatchReceipt{Bytes: []byte("hello")} },
		reason:  "malformed",
		id:      "-",
	}, {
		name:    "no bytes",
		receipt: func(*world) BatchReceipt { return BatchReceipt{} },
		reason:  "malformed",
		id:      "-",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			nonce := uint64(0)
			if tt.setup != nil {
				tt.setup(w)
				nonce = w.account(addr(w.gw)).Nonce
			}
			settled, _ := w.settlement("r1")
			tx := settleTx(w.gw, nonce, tt.receipt(w))
			gwBefore := w.account(addr(w.gw))
			before := snapshot(w.state)
			rejected := batchSummary(t, w.apply(tx), 0, 1, 0)
			wantID := "r1"
			if tt.id == "-" {
				wantID = "" // the receipt did not decode
			}
			if e := rejected[0]; attr(e, "index") != "0" || attr(e, "request_id") != wantID || !strings.Contains(attr(e, "reason"), tt.reason) {
				t.Errorf("rejection %+v: want request_id %q and a reason with %q", e.Attrs, wantID, tt.reason)
			}
			want := []string{accountKey(addr(w.gw)), txKey(TxHash(tx))}
			slices.Sort(want)
			if diff := stateDiff(before, w.state); !slices.Equal(diff, want) {
				t.Errorf("changed keys %q, want only the gateway's nonce and the tx record", diff)
			}
			gwBefore.Nonce++
			checkAccount(t, w.testChain, addr(w.gw), gwBefore)
			if s, _ := w.settlement("r1"); s != settled {
				t.Errorf("settlement of r1 changed: %+v", s)
			}
			w.checkSupply(worldSupply)
		})
	}
}

// TestSettleZeroAmount: a receipt of zero (no tokens) settles: its
// request_id is spent, no money moves, and a consumer without an account
// does not get one.
func TestSettleZeroAmount(t *testing.T) {
	w := newWorld(t)
	before := snapshot(w.state)
	tx := settleTx(w.gw, 0,
		batchReceipt(t, w.gw, w.prov, addr(w.alice), "z1", 0, 0),
		batchReceipt(t, w.gw, w.prov, addr(w.stranger), "z2", 0, 0))
	batchSummary(t, w.apply(tx), 2, 0, 0)
	for _, id := range []string{"z1", "z2"} {
		if s, ok := w.settlement(id); !ok || s.Amount != 0 || s.PaidByGateway {
			t.Errorf("settlement %s: %+v %v", id, s, ok)
		}
	}
	if w.exists(addr(w.stranger)) {
		t.Error("a receipt of zero created the consumer's account")
	}
	// The gateway's and provider's records are rewritten unchanged; only
	// the gateway's nonce, the settlements and the tx record differ.
	want := []string{accountKey(addr(w.gw)), receiptKey(addr(w.gw), "z1"), receiptKey(addr(w.gw), "z2"), txKey(TxHash(tx))}
	slices.Sort(want)
	if diff := stateDiff(before, w.state); !slices.Equal(diff, want) {
		t.Errorf("changed keys %q\nwant %q", diff, want)
	}
	batchSummary(t, w.apply(settleTx(w.gw, 1, batchReceipt(t, w.gw, w.prov, addr(w.alice), "z1", 0, 0))), 0, 1, 0)
	w.checkSupply(worldSupply)
}

// TestSettleDuplicateInBatch: the second receipt with a request id already
// in the same batch is rejected; the first settles once.
func TestSettleDuplicateInBatch(t *testing.T) {
	w := newWorld(t)
	r := batchReceipt(t, w.gw, w.prov, addr(w.alice), "r1", 1000, 333)
	other := batchReceipt(t, w.gw, w.prov2, addr(w.alice), "r1", 500, 0)
	rejected := batchSummary(t, w.apply(settleTx(w.gw, 0, r, r, other)), 1, 2, 1999)
	for i, e := range rejected {
		if attr(e, "index") != itoa(i+1) || attr(e, "request_id") != "r1" || attr(e, "reason") != "request_id already settled" {
			t.Errorf("rejection %+v", e.Attrs)
		}
	}
	if got := w.allowance(addr(w.alice), addr(w.gw)); got != aliceAllowance-1999 {
		t.Errorf("alice's deposit %d, want %d", got, aliceAllowance-1999)
	}
	if s, ok := w.settlement("r1"); !ok || s.Receipt != receipt.Sum(r.Bytes) {
		t.Errorf("settlement %+v %v: want the first receipt", s, ok)
	}
	w.checkSupply(worldSupply)
}

// TestSettleBadBatch: batches that fail as a whole spend the gateway's nonce
// and change nothing else.
func TestSettleBadBatch(t *testing.T) {
	good := func(w *world, id string) BatchReceipt {
		return batchReceipt(t, w.gw, w.prov, addr(w.alice), id, 10, 10)
	}
	gw := func(w *world) keys.PrivateKey { return w.gw }
	cases := []badCase{{
		name: "wrong root", sender: gw, code: CodeBadBatch,
		tx: func(w *world) []byte {
			rs := []BatchReceipt{good(w, "r1"), good(w, "r2")}
			return signTx(w.gw, Tx{Kind: KindSettleBatch, Receipts: rs, Root: BatchRoot(rs[:1])})
		},
	}, {
		name: "root of another order", sender: gw, code: CodeBadBatch,
		tx: func(w *world) []byte {
			rs := []BatchReceipt{good(w, "r1"), good(w, "r2")}
			return signTx(w.gw, Tx{Kind: KindSettleBatch, Receipts: rs, Root: BatchRoot([]BatchReceipt{rs[1], rs[0]})})
		},
	}, {
		name: "zero root", sender: gw, code: CodeBadBatch,
		tx: func(w *world) []byte {
			return signTx(w.gw, Tx{Kind: KindSettleBatch, Receipts: []BatchReceipt{good(w, "r1")}})
		},
	}, {
		name: "empty", sender: gw, code: CodeBadBatch,
		tx: func(w *world) []byte { return settleTx(w.gw, 0) },
	}, {
		name: "over MaxBatchReceipts", sender: gw, code: CodeBadBatch,
		tx: func(w *world) []byte {
			var rs []BatchReceipt
			for i := range testParams().MaxBatchReceipts + 1 {
				rs = append(rs, good(w, "r"+itoa(int(i))))
			}
			return settleTx(w.gw, 0, rs...)
		},
	}, {
		name: "sender not a gateway", sender: func(w *world) keys.PrivateKey { return w.alice }, code: CodeNotRegistered,
		tx: func(w *world) []byte {
			return settleTx(w.alice, 0, batchReceipt(t, w.alice, w.prov, addr(w.alice), "r1", 10, 10))
		},
	}, {
		name: "provider settling its own receipts", sender: func(w *world) keys.PrivateKey { return w.prov }, code: CodeNotRegistered,
		tx: func(w *world) []byte {
			return settleTx(w.prov, 0, batchReceipt(t, w.prov, w.prov, addr(w.alice), "r1", 10, 10))
		},
	}, {
		name: "gateway stake below minimum", sender: func(w *world) keys.PrivateKey { return w.gwlow }, code: CodeStakeTooLow,
		tx: func(w *world) []byte {
			return settleTx(w.gwlow, 0, batchReceipt(t, w.gwlow, w.prov, addr(w.alice), "r1", 10, 10))
		},
	}}
	for _, tc := range cases {
		tc.consumes = true
		t.Run(tc.name, func(t *testing.T) { runBadCase(t, tc) })
	}
	t.Run("exactly MaxBatchReceipts", func(t *testing.T) {
		w := newWorld(t)
		var rs []BatchReceipt
		for i := range testParams().MaxBatchReceipts {
			rs = append(rs, good(w, "r"+itoa(int(i))))
		}
		n := int(testParams().MaxBatchReceipts)
		batchSummary(t, w.apply(settleTx(w.gw, 0, rs...)), n, 0, money.Amount(40*n))
	})
}

// TestEscrowRelease: a provider's share joins its balance in Begin of the
// block exactly EscrowBlocks after settlement, not before, and each
// settlement height is released on its own.
func TestEscrowRelease(t *testing.T) {
	w := newWorld(t)
	w.block(settleTx(w.gw, 0, // height 1: prov 1881 + prov2 470, due at 6
		batchReceipt(t, w.gw, w.prov, addr(w.alice), "r1", 1000, 333),
		batchReceipt(t, w.gw, w.prov2, addr(w.alice), "r2", 500, 0)))
	w.block(settleTx(w.gw, 1, batchReceipt(t, w.gw, w.prov, addr(w.alice), "r3", 0, 1000))) // height 2: prov 2820, due at 7
	provAcct := func(balance money.Amount, escrow ...Entry) Account {
		return Account{PubKey: w.prov.Public(), Balance: balance, Stake: 2_000, Roles: RoleProvider, Escrow: escrow}
	}
	for w.height < 5 {
		if run := w.block(); len(run.begin) != 0 || len(run.changes) != 0 {
			t.Fatalf("height %d: begin events %+v, changes %q", run.height, run.begin, keysOf(run.changes))
		}
	}
	checkAccount(t, w.testChain, addr(w.prov), provAcct(0, Entry{1881, 6}, Entry{2820, 7}))

	run := w.block() // height 6
	if len(run.begin) != 2 || run.begin[0].Type != "escrow_released" ||
		attr(run.begin[0], "account") != string(addr(w.prov)) || attr(run.begin[0], "amount") != "1881" ||
		attr(run.begin[1], "account") != string(addr(w.prov2)) || attr(run.begin[1], "amount") != "470" {
		t.Fatalf("begin events at 6: %+v", run.begin)
	}
	checkAccount(t, w.testChain, addr(w.prov), provAcct(1881, Entry{2820, 7}))
	checkAccount(t, w.testChain, addr(w.prov2), Account{PubKey: w.prov2.Public(), Balance: 470, Stake: 1_000, Roles: RoleProvider})
	if _, ok := w.state[dueKey(6)]; ok {
		t.Error("due list at 6 kept after release")
	}
	wantKeys := []string{accountKey(addr(w.prov)), accountKey(addr(w.prov2)), dueKey(6)}
	slices.Sort(wantKeys)
	if got := keysOf(run.changes); !slices.Equal(got, wantKeys) {
		t.Errorf("changes at 6: %q", got)
	}

	run = w.block() // height 7
	if len(run.begin) != 1 || attr(run.begin[0], "amount") != "2820" {
		t.Fatalf("begin events at 7: %+v", run.begin)
	}
	checkAccount(t, w.testChain, addr(w.prov), provAcct(1881+2820))
	if run := w.block(); len(run.changes) != 0 {
		t.Errorf("height 8 changed %q", keysOf(run.changes))
	}
	// The released money is the provider's: it can move it.
	if res := w.apply(transferTx(w.prov, 0, addr(w.bob), 4701)); res.Code != CodeOK {
		t.Fatalf("transfer of released escrow: code %d (%s)", res.Code, res.Log)
	}
	w.checkSupply(worldSupply)
}

// TestUnbondingRelease: withdraw-unbonded fails one block before the release
// height and succeeds at exactly that height.
func TestUnbondingRelease(t *testing.T) {
	w := newWorld(t)
	w.block(unstakeTx(w.prov, 0, 500)) // height 1, releases at 11
	w.skipTo(9)
	if res := w.apply(withdrawTx(w.prov, 1)); res.Code != CodeInvalid { // height 10
		t.Fatalf("withdraw at 10: code %d, want %d", res.Code, CodeInvalid)
	}
	if res := w.apply(withdrawTx(w.prov, 2)); res.Code != CodeOK { // height 11
		t.Fatalf("withdraw at 11: code %d (%s)", res.Code, res.Log)
	}
	checkAccount(t, w.testChain, addr(w.prov), Account{PubKey: w.prov.Public(), Nonce: 3, Balance: 500, Stake: 1_500, Roles: RoleProvider})
	if res := w.apply(withdrawTx(w.prov, 3)); res.Code != CodeInvalid {
		t.Fatalf("second withdraw: code %d, want %d", res.Code, CodeInvalid)
	}
	w.checkSupply(worldSupply)
}

// TestSettleSameIDAtTwoGateways: request ids are unique per gateway, so
// two gateways settle receipts with the same id, each under its own key;
// Block.settlement finds each, staged in the block and committed after.
func TestSettleSameIDAtTwoGateways(t *testing.T) {
	w := newWorld(t)
	r1 := batchReceipt(t, w.gw, w.prov, addr(w.alice), "same", 10, 10)
	r2 := batchReceipt(t, w.gw2, w.prov, addr(w.alice), "same", 20, 20)
	w.blockWith(func(apply func([]byte) Result) {
		batchSummary(t, apply(settleTx(w.gw, 0, r1)), 1, 0, 40)
		batchSummary(t, apply(settleTx(w.gw2, 0, r2)), 1, 0, 80)
	})
	b, err := NewBlock(w.state, w.height+1)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		gw   keys.Address
		want receipt.Hash
	}{{addr(w.gw), receipt.Sum(r1.Bytes)}, {addr(w.gw2), receipt.Sum(r2.Bytes)}} {
		s, ok, err := b.settlement(c.gw, "same")
		if err != nil || !ok || s.Receipt != c.want {
			t.Errorf("settlement of %s/same: %+v %v %v", c.gw, s, ok, err)
		}
	}
	if _, ok, err := b.settlement(addr(w.gwlow), "same"); ok || err != nil {
		t.Errorf("a third gateway has a settlement for the id: %v %v", ok, err)
	}
	w.checkSupply(worldSupply)
}

// TestSettleFromUnlocking: money taken out of a deposit pays the gateway's
// receipts until its release height, the soonest-released part first;
// from then on it is the consumer's, and the gateway's stake pays.
func TestSettleFromUnlocking(t *testing.T) {
	w := newWorld(t)
	w.block(approveTx(w.alice, 0, addr(w.gw), 1_000)) // 99,000 unlocks at 11
	batchSummary(t, w.apply(settleTx(w.gw, 0, batchReceipt(t, w.gw, w.prov, addr(w.alice), "u1", 1000, 333))), 1, 0, 1999)
	if d := w.deposit(addr(w.alice), addr(w.gw)); d.Locked != 1_000 || len(d.Unlocking) != 1 || d.Unlocking[0].Amount != 99_000-1999 {
		t.Errorf("deposit %+v: want the unlocking part drawn first", d)
	}
	for w.height < 11 {
		w.block()
	}
	// From height 11 the unlocking part is the consumer's: 1,000 locked is
	// all the gateway can draw, its stake pays the rest.
	batchSummary(t, w.apply(settleTx(w.gw, 1, batchReceipt(t, w.gw, w.prov, addr(w.alice), "u2", 1000, 333))), 1, 0, 1999)
	if s, ok := w.settlement("u2"); !ok || s.StakePaid != 999 || !s.PaidByGateway {
		t.Errorf("settlement %+v %v: want 999 paid by the gateway's stake", s, ok)
	}
	w.block(approveTx(w.alice, 1, addr(w.gw), 0))
	checkAccount(t, w.testChain, addr(w.alice), Account{PubKey: w.alice.Public(), Nonce: 2, Balance: aliceFree + 99_000 - 1999})
	w.checkSupply(worldSupply)
}
