package store

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
)

// The parts of the suite for gateways sharing one database.

func gatewayKey(t *testing.T) keys.PublicKey {
	t.Helper()
	k, err := keys.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k.Public()
}

// testForGateway: a store scoped to one gateway settles and counts only
// the receipts that gateway countersigned.
func testForGateway(t *testing.T, s *Store) {
	ctx := t.Context()
	a, b := newSigner(t), newSigner(t)
	b.consumer = a.consumer
	for i := range 3 {
		for _, sg := range []signer{a, b} {
			if err := s.SaveReceipt(ctx, sg.receipt(t, fmt.Sprintf("req-%s-%d", sg.gateway.Public().String()[:8], i), 10, uint64(i+1))); err != nil {
				t.Fatal(err)
			}
		}
	}
	all, err := s.UnsettledReceipts(ctx, 100)
	if err != nil || len(all) != 6 {
		t.Fatalf("unscoped: %d unsettled, %v; want 6", len(all), err)
	}
	s.gateway = a.gateway.Public().String()
	defer func() { s.gateway = "" }()
	mine, err := s.UnsettledReceipts(ctx, 100)
	if err != nil || len(mine) != 3 {
		t.Fatalf("scoped: %d unsettled, %v; want 3", len(mine), err)
	}
	var want money.Amount
	for _, r := range mine {
		if r.Receipt.Gateway != a.gateway.Public() {
			t.Errorf("scoped to %s, offered %s's receipt %s", a.gateway.Public(), r.Receipt.Gateway, r.Receipt.RequestID)
		}
		want += r.Receipt.Amount
	}
	if c, err := s.CountReceipts(ctx); err != nil || c.Pending != 3 {
		t.Errorf("scoped CountReceipts = %+v, %v; want 3 pending", c, err)
	}
	if p, err := s.PendingByConsumer(ctx); err != nil || p[a.consumer] != want {
		t.Errorf("scoped PendingByConsumer = %v, %v; want %d", p, err, want)
	}
}

func testReservations(t *testing.T, s *Store) {
	ctx := t.Context()
	clock := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	s.now = func() time.Time { return clock }
	sg := newSigner(t)
	alice := sg.consumer
	g1, g2 := sg.gateway.Public(), gatewayKey(t)
	later := clock.Add(time.Minute)
	hold := func(id string, gw keys.PublicKey, amt money.Amount) Hold {
		return Hold{ID: id, Consumer: alice, Gateway: gw, Amount: amt, Expires: later}
	}
	view := func(allowance money.Amount) FundsView {
		return FundsView{Balance: 1000, Allowance: allowance, AsOf: clock}
	}
	steps := []struct {
		name    string
		h       Hold
		v       FundsView
		wantErr bool
		before  Holdings // holdings the decision saw
	}{
		{"first at g1", hold("r1", g1, 500), view(800), false, Holdings{}},
		{"beyond g1's allowance", hold("r2", g1, 301), view(800), true, Holdings{Reserved: 500, ReservedHere: 500}},
		{"the rest of g1's allowance", hold("r3", g1, 300), view(800), false, Holdings{Reserved: 500, ReservedHere: 500}},
		{"beyond the balance at g2", hold("r4", g2, 201), view(1000), true, Holdings{Reserved: 800}},
		{"the rest of the balance at g2", hold("r5", g2, 200), view(1000), false, Holdings{Reserved: 800}},
		{"nothing left", hold("r6", g2, 1), view(1000), true, Holdings{Reserved: 1000, ReservedHere: 200}},
		{"an id twice", hold("r5", g2, 0), view(1000), true, Holdings{Reserved: 1000, ReservedHere: 200}},
	}
	for _, st := range steps {
		got, err := s.Reserve(ctx, st.h, st.v)
		if (err != nil) != st.wantErr {
			t.Fatalf("%s: Reserve = %v, want error %v", st.name, err, st.wantErr)
		}
		if st.wantErr && st.name != "an id twice" && !errors.Is(err, ErrInsufficientFunds) {
			t.Errorf("%s: error %v, want ErrInsufficientFunds", st.name, err)
		}
		if got != st.before {
			t.Errorf("%s: holdings %+v, want %+v", st.name, got, st.before)
		}
	}

	// Released money is free again, at once and from any gateway.
	if err := s.Release(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, "r1"); err != nil {
		t.Errorf("second Release = %v", err)
	}
	if _, err := s.Reserve(ctx, hold("r7", g2, 500), view(1000)); err != nil {
		t.Fatalf("after releasing 500: %v", err)
	}

	// A receipt stored by g1 counts as pending for the balance and for g1's
	// allowance until the ledger settles it.
	for _, id := range []string{"r3", "r5", "r7"} {
		if err := s.Release(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	rc := sg.receipt(t, "req-held", 100, 100) // 200 at the test prices: 0.05 + 0.15 base units per token
	if err := s.SaveReceipt(ctx, rc); err != nil {
		t.Fatal(err)
	}
	amt := rc.Receipt.Amount
	h, err := s.ConsumerHoldings(ctx, alice, g1, clock)
	if err != nil || h != (Holdings{Pending: amt, PendingHere: amt}) {
		t.Fatalf("holdings with a stored receipt = %+v, %v; want %d pending here", h, err, amt)
	}
	if _, err := s.Reserve(ctx, hold("r8", g1, 800-amt+1), view(800)); !errors.Is(err, ErrInsufficientFunds) {
		t.Errorf("reserving past the allowance minus a pending receipt = %v", err)
	}
	// Settled at clock+1s: a ledger reading from before still counts it,
	// a reading from after does not (the balance already shows it).
	clock = clock.Add(time.Second)
	if err := s.MarkSettled(ctx, []string{"req-held"}, 5); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		asOf time.Time
		want money.Amount
	}{{clock.Add(-time.Second), amt}, {clock.Add(time.Second), 0}} {
		if h, err := s.ConsumerHoldings(ctx, alice, g1, tc.asOf); err != nil || h.Pending != tc.want {
			t.Errorf("pending for a reading at %v = %+v, %v; want %d", tc.asOf, h, err, tc.want)
		}
	}

	// A reservation whose gateway never released it lapses at its expiry.
	fresh := FundsView{Balance: 1000, Allowance: 1000, AsOf: clock.Add(time.Second)}
	if _, err := s.Reserve(ctx, hold("r9", g2, 1000), fresh); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reserve(ctx, hold("r10", g1, 1), fresh); !errors.Is(err, ErrInsufficientFunds) {
		t.Fatalf("with 1000 held: %v", err)
	}
	clock = later
	if h, err := s.ConsumerHoldings(ctx, alice, g1, clock); err != nil || h.Reserved != 0 {
		t.Errorf("after expiry, holdings = %+v, %v", h, err)
	}
	if _, err := s.Reserve(ctx, Hold{ID: "r11", Consumer: alice, Gateway: g1, Amount: 1000, Expires: later.Add(time.Minute)},
		FundsView{Balance: 1000, Allowance: 1000, AsOf: clock}); err != nil {
		t.Errorf("after the dead gateway's reservation lapsed: %v", err)
	}
	// Other consumers are untouched.
	if h, err := s.ConsumerHoldings(ctx, newSigner(t).consumer, g1, clock); err != nil || h != (Holdings{}) {
		t.Errorf("stranger's holdings = %+v, %v", h, err)
	}
	if _, err := s.Reserve(ctx, Hold{ID: "r12", Consumer: alice, Gateway: g1, Amount: 1 << 63}, FundsView{}); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("amount beyond MaxInt64 = %v, want ErrOutOfRange", err)
	}
}

// testReservationsConcurrent: many requests at two gateways racing for one
// balance never reserve more than it holds.
func testReservationsConcurrent(t *testing.T, s *Store) {
	ctx := t.Context()
	alice := newSigner(t).consumer
	gws := []keys.PublicKey{gatewayKey(t), gatewayKey(t)}
	var granted atomic.Int64
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := range 12 {
				h := Hold{ID: fmt.Sprintf("w%d-%d", w, i), Consumer: alice, Gateway: gws[w%2], Amount: 7, Expires: time.Now().Add(time.Hour)}
				_, err := s.Reserve(ctx, h, FundsView{Balance: 1000, Allowance: 1000, AsOf: time.Now()})
				switch {
				case err == nil:
					granted.Add(1)
				case !errors.Is(err, ErrInsufficientFunds):
					t.Errorf("Reserve: %v", err)
				}
			}
		})
	}
	wg.Wait()
	if got := granted.Load(); got != 1000/7 {
		t.Errorf("%d reservations of 7 granted from 1000, want %d", got, 1000/7)
	}
}

func testPeerModels(t *testing.T, s *Store) {
	ctx := t.Context()
	clock := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	s.now = func() time.Time { return clock }
	g1, g2, g3 := gatewayKey(t), gatewayKey(t), gatewayKey(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.PublishModels(ctx, g1, "http://g1", []PeerModel{{Model: "tiny", Providers: 2, FreeSlots: 5}}, 10*time.Second))
	must(s.PublishModels(ctx, g2, "http://g2", []PeerModel{{Model: "tiny", Providers: 1, FreeSlots: 9}, {Model: "big", Providers: 1}}, 10*time.Second))
	urls := func(model string, except keys.PublicKey) []string {
		t.Helper()
		ps, err := s.PeersFor(ctx, model, except)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, p := range ps {
			out = append(out, p.URL)
			if p.Model != model {
				t.Errorf("asked for %q, got %+v", model, p)
			}
		}
		return out
	}
	for _, tc := range []struct {
		model  string
		except keys.PublicKey
		want   []string
	}{
		{"tiny", g3, []string{"http://g2", "http://g1"}}, // most free slots first
		{"tiny", g2, []string{"http://g1"}},              // never itself
		{"big", g2, nil},
		{"nope", g3, nil},
	} {
		if got := urls(tc.model, tc.except); !slices.Equal(got, tc.want) {
			t.Errorf("PeersFor(%q) = %v, want %v", tc.model, got, tc.want)
		}
	}
	// The catalog of the others sums over gateways, per model.
	for _, tc := range []struct {
		except keys.PublicKey
		want   []PeerModel
	}{
		{g3, []PeerModel{{Model: "big", Providers: 1}, {Model: "tiny", Providers: 3, FreeSlots: 14}}},
		{g2, []PeerModel{{Model: "tiny", Providers: 2, FreeSlots: 5}}},
	} {
		got, err := s.PeerModels(ctx, tc.except)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("PeerModels = %+v, %v; want %+v", got, err, tc.want)
		}
	}
	// Publishing replaces; an empty list withdraws.
	must(s.PublishModels(ctx, g2, "http://g2", nil, 10*time.Second))
	if got := urls("tiny", g3); !slices.Equal(got, []string{"http://g1"}) {
		t.Errorf("after g2 withdrew: %v", got)
	}
	// A gateway that stops publishing (it died) drops out when its lease ends.
	clock = clock.Add(5 * time.Second)
	must(s.PublishModels(ctx, g3, "http://g3", []PeerModel{{Model: "tiny", Providers: 1, FreeSlots: 1}}, 10*time.Second))
	clock = clock.Add(6 * time.Second)
	if got := urls("tiny", g2); !slices.Equal(got, []string{"http://g3"}) {
		t.Errorf("after g1's lease ended: %v", got)
	}
	if err := s.PublishModels(ctx, g1, "http://g1", []PeerModel{{Model: "", Providers: 1}}, time.Second); err == nil {
		t.Error("an entry without a model was published")
	}
	if err := s.PublishModels(ctx, g1, "http://g1", nil, 0); err == nil {
		t.Error("a lease of 0 was accepted")
	}
}
