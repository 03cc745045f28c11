package store

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"modernc.org/sqlite"

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

// BenchmarkSaveReceiptWhileSettling is one client's receipts saved one after
// another, durably, while settlement marks every 1,000 of them settled in one
// MarkSettled call, as the gateway does: it reports the receipts' p50, p99
// and p99.9 in milliseconds. The sub-benchmarks compare, in one run, SQLite
// syncing with fsync or fdatasync, and MarkSettled holding the writer for
// the whole batch in one synced transaction ("batch") or marking without
// syncing and handing the writer over whenever a receipt waits ("yield",
// the store's way).
func BenchmarkSaveReceiptWhileSettling(b *testing.B) {
	for _, sync := range []string{"fsync", "fdatasync"} {
		for _, marking := range []string{"batch", "yield"} {
			b.Run(sync+"/"+marking, func(b *testing.B) {
				ctx := b.Context()
				s, err := Open(ctx, filepath.Join(b.TempDir(), "bench.db"))
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				prev, err := sqlite.Fdatasync(sync == "fdatasync")
				if err != nil {
					b.Skipf("%s: %v", sync, err)
				}
				defer sqlite.Fdatasync(prev)
				if marking == "batch" {
					s.settleChunk, s.settleSynced = 1<<30, true
				}
				sg := newSigner(b)
				const batch = 1000
				settle := make(chan []string, 64)
				settled := make(chan error, 1)
				go func() {
					var err error
					for ids := range settle {
						if err == nil {
							err = s.MarkSettled(ctx, ids, 1)
						}
					}
					settled <- err
				}()
				var lat []time.Duration
				var ids []string
				next := 0
				for b.Loop() {
					b.StopTimer()
					r := sg.receipt(b, fmt.Sprintf("req-bench-%09d", next), 512, 256)
					next++
					b.StartTimer()
					start := time.Now()
					if err := s.SaveReceipt(ctx, r); err != nil {
						b.Fatal(err)
					}
					lat = append(lat, time.Since(start))
					if ids = append(ids, r.Receipt.RequestID); len(ids) == batch {
						settle <- ids
						ids = nil
					}
				}
				close(settle)
				if err := <-settled; err != nil {
					b.Fatal(err)
				}
				slices.Sort(lat)
				at := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) / 1000 }
				b.ReportMetric(at(0.5), "p50-ms")
				b.ReportMetric(at(0.99), "p99-ms")
				b.ReportMetric(at(0.999), "p99.9-ms")
			})
		}
	}
}
