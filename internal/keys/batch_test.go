package keys

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
)

func batchItems(t testing.TB, n int) []SignedMessage {
	t.Helper()
	items := make([]SignedMessage, n)
	for i := range items {
		k, err := FromSeed(bytes.Repeat([]byte{byte(i % 7), byte(i)}, 16))
		if err != nil {
			t.Fatal(err)
		}
		msg := []byte(fmt.Sprintf("message %d", i))
		items[i] = SignedMessage{Key: k.Public(), Message: msg, Signature: k.Sign(msg)}
	}
	return items
}

// TestVerifyBatchAgreesWithVerify: on valid signatures and on every kind of
// broken one, the batch answers exactly what Verify answers, item by item,
// and the same every time.
func TestVerifyBatchAgreesWithVerify(t *testing.T) {
	valid := batchItems(t, 64)
	if got := VerifyBatch(valid); slices.Contains(got, false) {
		t.Fatalf("all-valid batch: %v", got)
	}
	broken := batchItems(t, 64)
	broken[3].Signature[0] ^= 1                        // R changed
	broken[10].Signature[40] ^= 1                      // S changed
	broken[17].Message = []byte("another message")     // message changed
	broken[25].Key = broken[26].Key                    // someone else's key
	broken[33].Key = PublicKey{}                       // weak key
	broken[40].Signature[63] |= 0xe0                   // S not canonical
	broken[50] = SignedMessage{Key: smallOrderKeys[1]} // identity key, zero signature: forgeable, so refused
	got := VerifyBatch(broken)
	for i, it := range broken {
		if want := it.Key.Verify(it.Message, it.Signature); got[i] != want {
			t.Errorf("item %d: batch %v, Verify %v", i, got[i], want)
		}
	}
	if again := VerifyBatch(broken); !slices.Equal(again, got) {
		t.Error("the same batch verified twice gave different answers")
	}
	if len(VerifyBatch(nil)) != 0 {
		t.Error("empty batch")
	}
}

func BenchmarkVerifyBatch(b *testing.B) {
	items := batchItems(b, 1000)
	b.Run("batch", func(b *testing.B) {
		for b.Loop() {
			VerifyBatch(items)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(items)), "ns/sig")
	})
	few := fewKeyItems(b, 1000)
	b.Run("batch-3-keys", func(b *testing.B) {
		for b.Loop() {
			VerifyBatch(few)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(few)), "ns/sig")
	})
	b.Run("one-by-one", func(b *testing.B) {
		for b.Loop() {
			for _, it := range items {
				it.Key.Verify(it.Message, it.Signature)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(items)), "ns/sig")
	})
}

// fewKeyItems are n messages signed by only three keys, as the receipts
// of a batch are.
func fewKeyItems(t testing.TB, n int) []SignedMessage {
	t.Helper()
	items := make([]SignedMessage, n)
	for i := range items {
		k, err := FromSeed(bytes.Repeat([]byte{byte(i % 3)}, 32))
		if err != nil {
			t.Fatal(err)
		}
		msg := []byte(fmt.Sprintf("message %d", i))
		items[i] = SignedMessage{Key: k.Public(), Message: msg, Signature: k.Sign(msg)}
	}
	return items
}

// TestVerifyCombined: the equation with the terms of each key added up
// holds for valid signatures from repeated keys and fails as soon as one
// signature is wrong, so VerifyBatch falls back to checking each.
func TestVerifyCombined(t *testing.T) {
	items := fewKeyItems(t, 300)
	seed := batchSeed(items)
	if !verifyCombined(items, &hashStream{seed: seed}) {
		t.Fatal("valid batch from repeated keys refused")
	}
	for _, breakIt := range []func(it *SignedMessage){
		func(it *SignedMessage) { it.Signature[40] ^= 1 },
		func(it *SignedMessage) { it.Signature[0] ^= 1 },
		func(it *SignedMessage) { it.Message = []byte("another message") },
		func(it *SignedMessage) { it.Key = items[2].Key }, // item 7 is signed by key 1
	} {
		broken := slices.Clone(items)
		breakIt(&broken[7])
		if verifyCombined(broken, &hashStream{seed: batchSeed(broken)}) {
			t.Error("batch with a broken signature passed the combined equation")
		}
		got := VerifyBatch(broken)
		for i, it := range broken {
			if want := it.Key.Verify(it.Message, it.Signature); got[i] != want {
				t.Errorf("item %d: batch %v, Verify %v", i, got[i], want)
			}
		}
	}
}

// TestVerifyBatchAcrossChunks: a batch longer than one chunk answers item by
// item across chunk boundaries, a bad signature failing only itself.
func TestVerifyBatchAcrossChunks(t *testing.T) {
	n := 2*batchChunk + 37
	items := fewKeyItems(t, n)
	bad := []int{0, batchChunk - 1, batchChunk, 2*batchChunk + 1, n - 1}
	for _, i := range bad {
		items[i].Signature[40] ^= 1
	}
	got := VerifyBatch(items)
	for i := range items {
		if want := !slices.Contains(bad, i); got[i] != want {
			t.Errorf("item %d: %v, want %v", i, got[i], want)
		}
	}
}
