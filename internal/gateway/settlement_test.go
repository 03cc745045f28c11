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
	"time"

	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/hub"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/receipt"
	"github.com/idlegrid/idlegrid/internal/store"
)

// batchLedger settles batches after a delay, fails the first batch that
// holds each id listed in fail, and records what it was sent: which receipts each batch held and
// whether a receipt was sent while another batch still held it.
type batchLedger struct {
	fixedLedger
	delay time.Duration
	fail  map[string]bool // a batch holding one of these ids fails, once

	failed  map[string]bool // ids of the batches that failed
	mu      sync.Mutex
	calls   int
	held    map[string]bool
	sent    map[string]int // times each request id was sent
	settled map[string]int64
	overlap []string
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
	l.mu.Unlock()
	time.Sleep(l.delay)
	l.mu.Lock()
	defer l.mu.Unlock()
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
// the receipts they hold (never sending one twice at once), and the
// receipts of a failed batch go out again; in the end every receipt is
// settled and marked.
func TestSettlementPipeline(t *testing.T) {
	ctx := t.Context()
	st, gw, prov, consumer := settlementParties(t)
	const n = 23
	for i := range n {
		if err := st.SaveReceipt(ctx, signedReceipt(fmt.Sprintf("req-%02d", i), gw, prov, consumer)); err != nil {
			t.Fatal(err)
		}
	}
	l := &batchLedger{fixedLedger: fixedLedger{funds: map[keys.Address]chainrpc.Funds{}}, delay: 20 * time.Millisecond,
		fail: map[string]bool{"req-00": true, "req-13": true}, failed: map[string]bool{}, held: map[string]bool{}, sent: map[string]int{}, settled: map[string]int64{}}
	g, err := New(Config{Key: gw, ChainID: "c", Store: st, Hub: hub.New(hub.Config{Key: gw, ChainID: "c"}), Ledger: l,
		SettleBatchSize: 4, SettleInFlight: 3, SettleInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- g.RunSettlement(runCtx) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		rest, err := st.UnsettledReceipts(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if len(rest) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d receipts still unsettled", len(rest))
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.overlap) > 0 {
		t.Errorf("receipts sent while another batch held them: %v", l.overlap)
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
}

// TestPruneSettled: the gateway deletes receipts settled longer ago than
// KeepSettled, keeps the unsettled ones, and a consumer asking for a pruned
// receipt is told where it still is. A retention under MinKeepSettled is
// refused.
func TestPruneSettled(t *testing.T) {
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
	g.pruneSettled(ctx) // settled just now: kept
	if _, err := st.Receipt(ctx, "req-0"); err != nil {
		t.Fatalf("a receipt settled just now was pruned: %v", err)
	}
	time.Sleep(2 * time.Millisecond)
	g.cfg.KeepSettled = time.Millisecond // what an hour does, an hour later
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
}
