package store

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"modernc.org/sqlite"
)

// TestReceiptNotHeldBehindSettlement: a receipt saved while a large
// settlement batch is being marked commits between two of its
// transactions, not after the whole batch (the store has one writer; a
// thousand receipts marked in one transaction held a request's receipt for
// 10–20 ms).
func TestReceiptNotHeldBehindSettlement(t *testing.T) {
	ctx := t.Context()
	s := openSQLite(t)
	sg := newSigner(t)
	const n = 6400 // 100 chunks
	ids := make([]string, n)
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < n; i += 16 {
				ids[i] = fmt.Sprintf("req-settle-%05d", i)
				if err := s.SaveReceipt(ctx, sg.receipt(t, ids[i], 10, 10)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	settled := func() (c int) {
		t.Helper()
		if err := s.read.QueryRowContext(ctx, `SELECT COUNT(*) FROM receipts WHERE settled_at IS NOT NULL`).Scan(&c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	marked := make(chan error, 1)
	go func() { marked <- s.MarkSettled(ctx, ids, 5) }()
	// Wait for the first chunk to commit, then save a receipt.
	for deadline := time.Now().Add(time.Minute); settled() == 0; {
		select {
		case err := <-marked:
			t.Fatalf("MarkSettled returned (%v) before any receipt was seen settled: one transaction for the whole batch", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("no receipt settled within a minute")
		}
		runtime.Gosched()
	}
	if err := s.SaveReceipt(ctx, sg.receipt(t, "req-during", 10, 10)); err != nil {
		t.Fatal(err)
	}
	if c := settled(); c >= n {
		t.Errorf("the receipt committed after all %d receipts of the batch were marked; want it between two chunks", c)
	}
	if err := <-marked; err != nil {
		t.Fatal(err)
	}
	if c := settled(); c != n {
		t.Errorf("%d receipts settled, want %d", c, n)
	}
}

// TestCommitsWithFdatasync: on Linux an opened store has SQLite commit with
// fdatasync (see syncWithFdatasync).
func TestCommitsWithFdatasync(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skipf("fdatasync is checked on Linux only (here %s)", runtime.GOOS)
	}
	if _, err := sqlite.Fdatasync(false); err != nil {
		t.Fatal(err)
	}
	openSQLite(t)
	if !sqlite.FdatasyncEnabled() {
		t.Error("SQLite commits with fsync after Open; want fdatasync")
	}
}

// TestMarkSettledLeavesReceiptsSynced: settlement marks commit without
// syncing, on the writer the receipts use; whatever happens to them, the
// writer syncs again afterwards (synchronous FULL, 2).
func TestMarkSettledLeavesReceiptsSynced(t *testing.T) {
	ctx := t.Context()
	s := openSQLite(t)
	sg := newSigner(t)
	level := func() (l int) {
		t.Helper()
		if err := s.write.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&l); err != nil {
			t.Fatal(err)
		}
		return l
	}
	if l := level(); l != 2 {
		t.Fatalf("synchronous = %d on a fresh store, want 2 (FULL)", l)
	}
	for _, id := range []string{"req-a", "req-b"} {
		if err := s.SaveReceipt(ctx, sg.receipt(t, id, 10, 10)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.MarkSettled(ctx, []string{"req-a"}, 3); err != nil {
		t.Fatal(err)
	}
	if l := level(); l != 2 {
		t.Errorf("synchronous = %d after MarkSettled, want 2 (FULL)", l)
	}
	// A failure inside the marking transaction (a receipt settled since
	// the check, as a concurrent MarkSettled would) restores it too.
	s.settleChunk = 1
	if err := s.markSettledOnce(ctx, []string{"req-a"}); !errors.Is(err, ErrAlreadySettled) {
		t.Errorf("marking a settled receipt = %v, want ErrAlreadySettled", err)
	}
	if l := level(); l != 2 {
		t.Errorf("synchronous = %d after a failed marking, want 2 (FULL)", l)
	}
}

// markSettledOnce runs one marking transaction past MarkSettled's check.
func (s *Store) markSettledOnce(ctx context.Context, ids []string) error {
	_, err := s.markSettled(ctx, ids, micros(s.now()), 9)
	return err
}

// TestSettlementKeepsUpWhileReceiptsWait: with receipts always waiting (a
// busy gateway), each marking transaction still marks minSettleChunk
// receipts before it hands the writer over, so settlement's bookkeeping
// keeps pace with the receipts stored; and it marks up to maxSettleChunk
// when none waits.
func TestSettlementKeepsUpWhileReceiptsWait(t *testing.T) {
	ctx := t.Context()
	s := openSQLite(t)
	sg := newSigner(t)
	ids := make([]string, 3*minSettleChunk)
	for i := range ids {
		ids[i] = fmt.Sprintf("req-%03d", i)
		if err := s.SaveReceipt(ctx, sg.receipt(t, ids[i], 10, 10)); err != nil {
			t.Fatal(err)
		}
	}
	s.saving.Add(1) // a receipt waits, for as long as this test runs
	n, err := s.markSettled(ctx, ids, micros(s.now()), 4)
	s.saving.Add(-1)
	if err != nil || n != minSettleChunk {
		t.Fatalf("with a receipt waiting: marked %d (%v), want %d in one transaction", n, err, minSettleChunk)
	}
	if n, err = s.markSettled(ctx, ids[n:], micros(s.now()), 4); err != nil || n != len(ids)-minSettleChunk {
		t.Fatalf("with no receipt waiting: marked %d (%v), want the other %d", n, err, len(ids)-minSettleChunk)
	}
}
