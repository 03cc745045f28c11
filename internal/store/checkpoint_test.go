package store

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestBackgroundCheckpointBoundsWAL: the writer never checkpoints, so the
// WAL stops growing only if the background checkpoints run and the
// committer finishes one once the WAL is long. Each receipt's commit adds a
// few pages; 3,000 of them grow the WAL past 40 MiB without checkpoints.
// The limit is lowered to 1,000 frames (4 MiB) for the test.
func TestBackgroundCheckpointBoundsWAL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateway.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	s.walFrames = 1000
	sg := newSigner(t)
	const n = 3000
	var maxWAL int64
	for i := range n {
		if err := s.SaveReceipt(t.Context(), sg.receipt(t, fmt.Sprintf("req-%05d", i), 10, 20)); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(path + "-wal"); err == nil {
			maxWAL = max(maxWAL, fi.Size())
		}
	}
	const limit = 12 << 20 // 1,000 frames, plus what arrives before the committer finishes
	if maxWAL > limit {
		t.Errorf("WAL grew to %d bytes over %d commits; want at most %d (background checkpoints not running?)", maxWAL, n, limit)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Every receipt is in the database after reopening.
	s, err = Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.UnsettledReceipts(t.Context(), n+1)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Errorf("after reopen: %d receipts, want %d", len(got), n)
	}
	t.Logf("largest WAL over %d commits: %d KiB", n, maxWAL>>10)
}
