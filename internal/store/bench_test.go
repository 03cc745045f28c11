package store

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/receipt"
)

// BenchmarkSaveReceipt measures one durable SaveReceipt after another (each
// a committed, fsynced transaction, signature checks included). Signing the
// receipts is test setup and runs with the timer stopped.
func BenchmarkSaveReceipt(b *testing.B) {
	ctx := b.Context()
	s, err := Open(ctx, filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	sg := newSigner(b)

	const batch = 1024
	var (
		pending []receipt.Signed
		next    int
	)
	for b.Loop() {
		if len(pending) == 0 {
			// Refill in batches: stopping the timer per iteration would
			// cost more than the noise it removes.
			b.StopTimer()
			for range batch {
				pending = append(pending, sg.receipt(b, fmt.Sprintf("req-bench-%09d", next), 512, 256))
				next++
			}
			b.StartTimer()
		}
		if err := s.SaveReceipt(ctx, pending[0]); err != nil {
			b.Fatal(err)
		}
		pending = pending[1:]
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "receipts/s")
}

// BenchmarkUnsettledReceipts reads a page of 1,000 unsettled receipts, as
// settlement does for each batch; every receipt's two signatures are
// checked on the way out (in one batch verification).
func BenchmarkUnsettledReceipts(b *testing.B) {
	ctx := b.Context()
	s, sg := openBench(b)
	const page = 1000
	for i := range page {
		if err := s.SaveReceipt(ctx, sg.receipt(b, fmt.Sprintf("req-bench-%09d", i), 512, 256)); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		rs, err := s.UnsettledReceipts(ctx, page)
		if err != nil || len(rs) != page {
			b.Fatalf("%d receipts, %v", len(rs), err)
		}
	}
	b.ReportMetric(float64(b.N*page)/b.Elapsed().Seconds(), "receipts/s")
}

// BenchmarkMarkSettled marks 1,000 receipts settled in one call, as
// settlement does after a batch commits: while it runs, the single writer
// is busy and every receipt waiting to commit waits for it. The reported
// figure is how long one call holds the writer. (Marking in chunks of 100,
// one transaction each, did not lower the 64-client p99 of bench overhead
// and cost throughput: each transaction is a sync.)
func BenchmarkMarkSettled(b *testing.B) {
	ctx := b.Context()
	s, sg := openBench(b)
	const batch = 1000
	next := 0
	var held time.Duration
	for b.Loop() {
		b.StopTimer()
		ids := make([]string, batch)
		for i := range ids {
			ids[i] = fmt.Sprintf("req-bench-%09d", next)
			next++
			if err := s.SaveReceipt(ctx, sg.receipt(b, ids[i], 512, 256)); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		start := time.Now()
		if err := s.MarkSettled(ctx, ids, int64(next)); err != nil {
			b.Fatal(err)
		}
		held += time.Since(start)
	}
	b.ReportMetric(float64(held.Microseconds())/float64(b.N)/1000, "ms/batch")
}

// openBench opens a store with process durability (the benchmarks measure
// the store's work, not the disk's syncs) that closes with the benchmark,
// and a signer.
func openBench(b *testing.B) (*Store, signer) {
	b.Helper()
	s, err := Open(b.Context(), filepath.Join(b.TempDir(), "bench.db"), WithProcessDurability())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s, newSigner(b)
}
