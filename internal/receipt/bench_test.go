package receipt

import "testing"

// BenchmarkBytesHash is the cost of identifying a receipt (settlement and
// Merkle trees hash every receipt of a batch).
func BenchmarkBytesHash(b *testing.B) {
	r := validReceipt(b)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		n += len(r.Bytes())
		_ = r.Hash()
	}
	b.ReportMetric(float64(n)/float64(b.N), "bytes/receipt")
}

// BenchmarkSignProvider is the provider's per-job signing cost.
func BenchmarkSignProvider(b *testing.B) {
	k := seedKey(b, 1)
	r := validReceipt(b)
	b.ReportAllocs()
	for b.Loop() {
		_ = SignProvider(k, &r)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "receipts/s")
}

// BenchmarkVerifySigned is what the gateway (before storing) and every ledger
// node (at settlement) pay per receipt: Validate plus both signatures.
func BenchmarkVerifySigned(b *testing.B) {
	s := signedReceipt(b)
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Verify(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "receipts/s")
}
