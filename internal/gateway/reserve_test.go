package gateway

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
	"github.com/idlegrid/idlegrid/internal/store"
	"github.com/idlegrid/idlegrid/internal/store/pgtemp/pgtest"
	"github.com/idlegrid/idlegrid/internal/tstest"
)

// sharedFunds is one gateway's admission bookkeeping on its own connection
// pool to the shared database, as a separate gateway process has.
// sharedFunds is one process of the gateway with key k (a new key when
// k is nil) on the shared database at url.
func sharedFunds(t *testing.T, url string, l Chain, k *keys.PrivateKey) (*funds, *store.Store, *keys.PrivateKey) {
	t.Helper()
	if k == nil {
		g, err := keys.Generate()
		if err != nil {
			t.Fatal(err)
		}
		k = &g
	}
	st, err := store.OpenPostgres(t.Context(), url, store.ForGateway(k.Public()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := newFunds(l, time.Millisecond, nil)
	f.shared, f.gateway = st, k.Public()
	return f, st, k
}

// TestSharedFundsTwoGatewaysRace: two processes of one gateway (one key,
// one deposit on the ledger) admitting requests for one consumer at once,
// each with its own ledger reading, never reserve more than the deposit
// between them — the in-memory bookkeeping would let each reserve the
// whole of it.
func TestSharedFundsTwoGatewaysRace(t *testing.T) {
	url := pgtest.Database(t, "gateways")
	const balance, cost = 1000, 7
	l := &fixedLedger{funds: map[keys.Address]chainrpc.Funds{alice: {Balance: 5 * balance, Deposit: balance}}}
	gws := []*funds{}
	_, _, k := sharedFunds(t, url, l, nil)
	for range 2 {
		f, _, _ := sharedFunds(t, url, l, k)
		gws = append(gws, f)
	}
	var granted [2]atomic.Int64
	var wg sync.WaitGroup
	for w := range 24 {
		wg.Go(func() {
			f := gws[w%2]
			for range 10 {
				_, e := f.reserve(context.Background(), alice, cost, "test")
				switch {
				case e == nil:
					granted[w%2].Add(1)
				case e.Status != http.StatusPaymentRequired:
					t.Errorf("reserve: %v", e)
				}
			}
		})
	}
	wg.Wait()
	a, b := granted[0].Load(), granted[1].Load()
	if total := (a + b) * cost; total > balance || a+b != balance/cost {
		t.Errorf("gateways admitted %d + %d requests of %d (worst case %d) against a balance of %d; want exactly %d",
			a, b, cost, total, balance, balance/cost)
	}
	if a == 0 || b == 0 {
		t.Logf("one gateway took every reservation (%d, %d): the race was not exercised evenly", a, b)
	}
	// Both gateways see the same holdings.
	for i, f := range gws {
		res, pend, err := f.holdings(t.Context(), alice)
		if err != nil || res != money.Amount((a+b)*cost) || pend != 0 {
			t.Errorf("gateway %d: holdings %d reserved, %d pending, %v", i, res, pend, err)
		}
	}
}

// TestSharedFundsReceiptStaysCharged: a request's reservation becomes its
// stored receipt at one process of a gateway; the other process counts
// that receipt as pending until the ledger settles it.
func TestSharedFundsReceiptStaysCharged(t *testing.T) {
	url := pgtest.Database(t, "gateways")
	l := &fixedLedger{funds: map[keys.Address]chainrpc.Funds{alice: {Balance: 1000, Deposit: 1000}}}
	a, storeA, keyA := sharedFunds(t, url, l, nil)
	b, _, _ := sharedFunds(t, url, l, keyA)
	ctx := t.Context()
	r, e := a.reserve(ctx, alice, 600, "test")
	if e != nil {
		t.Fatal(e)
	}
	if _, e := b.reserve(ctx, alice, 401, "test"); e == nil || e.Status != http.StatusPaymentRequired {
		t.Fatalf("b reserved past a's hold: %v", e)
	}
	sr := receiptFor(t, *keyA, alice, 300) // the request cost 300 of its 600
	if err := storeA.SaveReceipt(ctx, sr); err != nil {
		t.Fatal(err)
	}
	r.charged(sr.Receipt.Amount)
	if _, e := b.reserve(ctx, alice, 701, "test"); e == nil {
		t.Fatal("b reserved past a's pending receipt")
	}
	if _, e := b.reserve(ctx, alice, 700, "test"); e != nil {
		t.Fatalf("b could not reserve what a's receipt left: %v", e)
	}
}

// TestSharedFundsCrashedGatewayLapses: a gateway process that dies holding
// a reservation blocks the consumer's deposit only until that request's
// deadline (plus the grace), not forever.
func TestSharedFundsCrashedGatewayLapses(t *testing.T) {
	url := pgtest.Database(t, "gateways")
	l := &fixedLedger{funds: map[keys.Address]chainrpc.Funds{alice: {Balance: 1000, Deposit: 1000}}}
	dead, deadStore, k := sharedFunds(t, url, l, nil)
	live, _, _ := sharedFunds(t, url, l, k)
	dead.grace = 0
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	if _, e := dead.reserve(ctx, alice, 1000, "test"); e != nil {
		t.Fatal(e)
	}
	// The gateway dies: its connections close, nothing is released.
	if err := deadStore.Close(); err != nil {
		t.Fatal(err)
	}
	if _, e := live.reserve(t.Context(), alice, 1, "test"); e == nil || e.Status != http.StatusPaymentRequired {
		t.Fatalf("while the dead gateway's hold lasts: %v, want 402", e)
	}
	tstest.WaitFor(t, 10*time.Second, "the dead gateway's reservation to lapse", func() bool {
		_, e := live.reserve(t.Context(), alice, 1000, "test")
		return e == nil
	})
}

// receiptFor is a real signed receipt by gw for consumer, amount base units
// (completion tokens at 1 per token).
func receiptFor(t *testing.T, gw keys.PrivateKey, consumer keys.Address, amount uint64) receipt.Signed {
	t.Helper()
	prov, err := keys.Generate()
	if err != nil {
		t.Fatal(err)
	}
	r := receipt.Receipt{
		Version: receipt.Version, ChainID: "test", RequestID: fmt.Sprintf("req-%d", receiptSeq.Add(1)),
		Gateway: gw.Public(), Provider: prov.Public(), Consumer: consumer, Model: "m", ModelDigest: "sha256:00",
		CompletionTokens: amount, PriceCompletionPerMTok: 1_000_000, Amount: money.Amount(amount),
		RequestHash: receipt.Sum([]byte("q")), ResponseHash: receipt.Sum([]byte("a")), StartUnixMs: 1_700_000_000_000, EndUnixMs: 1_700_000_000_001,
	}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	return receipt.Signed{Receipt: r, ProviderSignature: receipt.SignProvider(prov, &r), GatewaySignature: receipt.SignGateway(gw, &r)}
}

var receiptSeq atomic.Int64
