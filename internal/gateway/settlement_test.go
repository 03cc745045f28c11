package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/hub"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/receipt"
	"github.com/idlegrid/idlegrid/internal/store"
	"github.com/idlegrid/idlegrid/internal/tstest"
)

// batchLedger settles batches after a delay, fails the first batch that
// holds each id listed in fail, and records what it was sent: which
// receipts each batch held, whether a receipt was sent while another batch
// still held it, and how many batches were in flight at once. Its delay is
// a sleep, so in a synctest bubble it takes no wall time.
type batchLedger struct {
	fixedLedger
	delay time.Duration
	fail  map[string]bool // a batch holding one of these ids fails, once

	failed      map[string]bool // ids of the batches that failed
	mu          sync.Mutex
	calls       int
	inFlight    int
	maxInFlight int
	held        map[string]bool
	sent        map[string]int // times each request id was sent
	settled     map[string]int64
	overlap     []string
}

func (l *batchLedger) SettleBatch(ctx context.Context, rs []receipt.Signed) (chainrpc.BatchOutcome, error) {
	l.mu.Lock()
	l.calls++
	call := l.calls
	for _, r := range rs {
		id := r.Receipt.RequestID
		if l.held[id] {
			l.overlap = append(l.overlap, id)
		}
		l.held[id] = true
		l.sent[id]++
	}
	l.inFlight++
	l.maxInFlight = max(l.maxInFlight, l.inFlight)
	l.mu.Unlock()
	time.Sleep(l.delay)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inFlight--
	for _, r := range rs {
		delete(l.held, r.Receipt.RequestID)
	}
	for _, r := range rs {
		if l.fail[r.Receipt.RequestID] {
			delete(l.fail, r.Receipt.RequestID)
			for _, r := range rs {
				l.failed[r.Receipt.RequestID] = true
			}
			return chainrpc.BatchOutcome{}, fmt.Errorf("call %d: ledger unavailable", call)
		}
	}
	out := chainrpc.BatchOutcome{Height: int64(call), Settled: map[string]int64{}}
	for _, r := range rs {
		id := r.Receipt.RequestID
		if _, done := l.settled[id]; !done {
			l.settled[id] = int64(call)
		}
		out.Settled[id] = l.settled[id]
	}
	return out, nil
}

// signedReceipt is a receipt for id (2 base units) signed by prov and gw.
func signedReceipt(id string, gw, prov, consumer keys.PrivateKey) receipt.Signed {
	r := receipt.Receipt{Version: receipt.Version, ChainID: "c", RequestID: id, Gateway: gw.Public(), Provider: prov.Public(),
		Consumer: consumer.Public().Address(), Model: "m", ModelDigest: "d", PromptTokens: 1, CompletionTokens: 1,
		PricePromptPerMTok: 1_000_000, PriceCompletionPerMTok: 1_000_000, Amount: 2, StartUnixMs: 1_700_000_000_000, EndUnixMs: 1_700_000_000_001}
	return receipt.Signed{Receipt: r, ProviderSignature: receipt.SignProvider(prov, &r), GatewaySignature: receipt.SignGateway(gw, &r)}
}

// settlementParties opens a store (closed with the test) and makes the
// gateway, provider and consumer keys of the receipts.
func settlementParties(t *testing.T) (st *store.Store, gw, prov, consumer keys.PrivateKey) {
	t.Helper()
	st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "gateway.db"), store.WithProcessDurability())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	gw, _ = keys.Generate()
	prov, _ = keys.Generate()
	consumer, _ = keys.Generate()
	return st, gw, prov, consumer
}

// TestSettlementPipeline: with batches in flight settlement reads on after
// the receipts they hold (never sending one twice at once), never has more
// than SettleInFlight batches out, and the receipts of a failed batch go
// out again; in the end every receipt is settled and marked. It runs on
// synctest's clock: the ledger's delay and the settle interval pass in no
// wall time, and how far the batches overlap does not depend on the
// machine's load.
func TestSettlementPipeline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		st, gw, prov, consumer := settlementParties(t)
		const n, inFlight = 23, 3
		for i := range n {
			if err := st.SaveReceipt(ctx, signedReceipt(fmt.Sprintf("req-%02d", i), gw, prov, consumer)); err != nil {
				t.Fatal(err)
			}
		}
		l := &batchLedger{fixedLedger: fixedLedger{funds: map[keys.Address]chainrpc.Funds{}}, delay: 20 * time.Millisecond,
			fail: map[string]bool{"req-00": true, "req-13": true}, failed: map[string]bool{}, held: map[string]bool{}, sent: map[string]int{}, settled: map[string]int64{}}
		g, err := New(Config{Key: gw, ChainID: "c", Store: st, Hub: hub.New(hub.Config{Key: gw, ChainID: "c"}), Ledger: l,
			SettleBatchSize: 4, SettleInFlight: inFlight, SettleInterval: 5 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- g.RunSettlement(runCtx) }()
		tstest.WaitFor(t, 20*time.Second, "every receipt to be marked settled", func() bool {
			rest, err := st.UnsettledReceipts(ctx, n)
			if err != nil {
				t.Fatal(err)
			}
			return len(rest) == 0
		})
		stop()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		if len(l.overlap) > 0 {
			t.Errorf("receipts sent while another batch held them: %v", l.overlap)
		}
		if l.maxInFlight != inFlight {
			t.Errorf("at most %d batches in flight at once, want %d", l.maxInFlight, inFlight)
		}
		if len(l.settled) != n {
			t.Errorf("ledger settled %d receipts, want %d", len(l.settled), n)
		}
		// Two batches failed; their receipts, and only those, went out again.
		if len(l.failed) < 2 || len(l.failed) > 8 {
			t.Errorf("receipts in failed batches: %d, want 2 to 8", len(l.failed))
		}
		for id, times := range l.sent {
			if want := map[bool]int{false: 1, true: 2}[l.failed[id]]; times != want {
				t.Errorf("%s sent %d times, want %d (in a failed batch: %v)", id, times, want, l.failed[id])
			}
		}
	})
}

// TestPruneSettled: the gateway deletes receipts settled longer ago than
// KeepSettled, keeps the unsettled ones, and a consumer asking for a pruned
// receipt is told where it still is. A retention under MinKeepSettled is
// refused. It runs on synctest's clock, so the retention really passes
// (the store stamps settled_at and pruneSettled reads its cutoff from the
// same clock) without the test waiting an hour.
func TestPruneSettled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		st, gw, prov, consumer := settlementParties(t)
		secret, _, err := st.CreateAPIKey(ctx, "test", consumer.Public().Address())
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if err := st.SaveReceipt(ctx, signedReceipt(fmt.Sprintf("req-%d", i), gw, prov, consumer)); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.MarkSettled(ctx, []string{"req-0", "req-1"}, 5); err != nil {
			t.Fatal(err)
		}
		h := hub.New(hub.Config{Key: gw, ChainID: "c"})
		if _, err := New(Config{Key: gw, ChainID: "c", Store: st, Hub: h, KeepSettled: 30 * time.Minute}); err == nil {
			t.Fatal("a 30-minute retention was accepted")
		}
		g, err := New(Config{Key: gw, ChainID: "c", Store: st, Hub: h, KeepSettled: MinKeepSettled})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(MinKeepSettled - time.Second)
		g.pruneSettled(ctx) // settled just under the retention ago: kept
		if _, err := st.Receipt(ctx, "req-0"); err != nil {
			t.Fatalf("a receipt settled %s ago was pruned with a retention of %s: %v", MinKeepSettled-time.Second, MinKeepSettled, err)
		}
		time.Sleep(2 * time.Second)
		g.pruneSettled(ctx)
		for id, kept := range map[string]bool{"req-0": false, "req-1": false, "req-2": true} {
			if _, err := st.Receipt(ctx, id); (err == nil) != kept {
				t.Errorf("%s: %v; want kept %v", id, err, kept)
			}
		}
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/v1/receipts/req-0", nil)
		req.Header.Set("Authorization", "Bearer "+secret)
		g.Handler().ServeHTTP(rec, req)
		if rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "idlegrid ledger receipt "+string(g.cfg.Key.Public().Address())+"/req-0") {
			t.Errorf("pruned receipt: %d %s", rec.Code, rec.Body)
		}
	})
}
