package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// holdWriter takes the store's only writing connection in a transaction, so
// that every commit waits until release is called.
func holdWriter(t *testing.T, s *Store) (release func()) {
	t.Helper()
	tx, err := s.write.BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := tx.Rollback(); err != nil {
			t.Error(err)
		}
	}
}

// waitSaving waits until n receipts are waiting to be written or being
// written.
func waitSaving(t *testing.T, s *Store, n int32) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); s.saving.Load() != n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d receipts waiting, want %d", s.saving.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// result waits for a SaveReceipt's outcome.
func result(t *testing.T, c <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-c:
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: no answer within 30 s", what)
		return nil
	}
}

// TestSaveCancelledWhileWaitingPassesTheLead: a save whose context ends
// while it waits still takes the lead when its turn comes, so the receipts
// queued behind it are written (and its own is, as SaveReceipt documents).
func TestSaveCancelledWhileWaitingPassesTheLead(t *testing.T) {
	ctx := t.Context()
	s := openSQLite(t)
	sg := newSigner(t)
	release := holdWriter(t, s)
	save := func(ctx context.Context, id string) <-chan error {
		c := make(chan error, 1)
		go func() { c <- s.SaveReceipt(ctx, sg.receipt(t, id, 10, 10)) }()
		return c
	}
	first := save(ctx, "req-first") // leads, and waits for the writer
	waitSaving(t, s, 1)
	cctx, cancel := context.WithCancel(ctx)
	cancelled := save(cctx, "req-cancelled") // next in line: the lead comes to it
	waitSaving(t, s, 2)
	last := save(ctx, "req-last")
	waitSaving(t, s, 3)
	cancel()
	if err := result(t, cancelled, "cancelled save"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled save = %v, want context.Canceled", err)
	}
	release()
	if err := result(t, first, "first save"); err != nil {
		t.Fatal(err)
	}
	if err := result(t, last, "save queued behind a cancelled one"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"req-first", "req-cancelled", "req-last"} {
		if _, err := s.Receipt(ctx, id); err != nil {
			t.Errorf("%s: %v", id, err)
		}
	}
}

// TestCloseWritesWaitingReceipts: Close answers every save already waiting
// by writing its receipt, and refuses saves after it with ErrClosed.
func TestCloseWritesWaitingReceipts(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "gateway.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	sg := newSigner(t)
	release := holdWriter(t, s)
	const n = 5
	saved := make(chan error, n)
	for i := range n {
		go func() { saved <- s.SaveReceipt(ctx, sg.receipt(t, fmt.Sprintf("req-%d", i), 10, 10)) }()
	}
	waitSaving(t, s, n)
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	// Close waits for the waiting saves, which wait for the writer.
	for deadline := time.Now().Add(30 * time.Second); ; {
		s.commits.mu.Lock()
		c := s.commits.closed
		s.commits.mu.Unlock()
		if c {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Close did not start")
		}
		time.Sleep(time.Millisecond)
	}
	if err := s.SaveReceipt(ctx, sg.receipt(t, "req-late", 10, 10)); !errors.Is(err, ErrClosed) {
		t.Errorf("save after Close = %v, want ErrClosed", err)
	}
	release()
	for range n {
		if err := result(t, saved, "save waiting at Close"); err != nil {
			t.Errorf("save waiting at Close: %v", err)
		}
	}
	if err := result(t, closed, "Close"); err != nil {
		t.Fatal(err)
	}
	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range n {
		if _, err := s.Receipt(ctx, fmt.Sprintf("req-%d", i)); err != nil {
			t.Errorf("reopened: %v", err)
		}
	}
}
