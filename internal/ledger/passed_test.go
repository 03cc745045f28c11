package ledger

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// judgeDigest settles a free receipt of prov served with digest (label
// tells cases apart) and, in the same block, opens its case with ver2's
// verdict, which decides it (75 % of the verifier stake).
func (w *rewardWorld) judgeDigest(prov keys.PrivateKey, digest, label string, pass bool) {
	w.tb.Helper()
	br := batchReceipt(w.tb, w.gw, prov, addr(w.alice), "digest-case-"+label, 0, 0, func(r *receipt.Receipt) { r.ModelDigest = digest })
	rs := []BatchReceipt{br}
	verdict := signTx(w.ver2, Tx{Kind: KindVerdict, Nonce: w.next(w.ver2), Subject: addr(prov), Digest: digest,
		Evidence: CaseEvidence(rs, false), Pass: pass, CaseReceipts: rs})
	run := w.block(settleTx(w.gw, w.next(w.gw), rs...), verdict)
	for _, res := range run.results {
		if res.Code != CodeOK {
			w.tb.Fatalf("case %s: code %d %s", label, res.Code, res.Log)
		}
	}
}

// TestPassesCountedPerDigest: a provider's record counts its passed cases
// per digest, with the height of the last pass, sorted by digest; failed
// cases count for no digest.
func TestPassesCountedPerDigest(t *testing.T) {
	w := newRewardWorld(t, rewardParams()) // verdict delay 5, 3 failures convict
	const a, b = "sha256:aa", "sha256:bb"
	// Opened at heights 1 to 7, matured at 6 to 12.
	for i, c := range []struct {
		digest string
		pass   bool
	}{{b, true}, {a, true}, {a, true}, {b, false}, {a, true}, {b, true}, {a, false}} {
		w.judgeDigest(w.p1, c.digest, fmt.Sprint(i), c.pass)
		if r := w.record(w.p1); i == 0 && len(r.Passed) != 0 {
			t.Fatalf("a pass counted before its case matured: %+v", r.Passed)
		}
	}
	w.skipTo(12)
	r := w.record(w.p1)
	want := PassedDigests{{Digest: a, Passes: 3, Height: 10}, {Digest: b, Passes: 2, Height: 11}}
	if !reflect.DeepEqual(r.Passed, want) || r.Audits != 7 || r.Failures != 2 {
		t.Fatalf("record %+v, want passed %+v of 7 audits, 2 failed", r, want)
	}
	if r.Passed.Passes(a) != 3 || r.Passed.Passes(b) != 2 || r.Passed.Passes("sha256:cc") != 0 {
		t.Errorf("Passes: %d %d %d", r.Passed.Passes(a), r.Passed.Passes(b), r.Passed.Passes("sha256:cc"))
	}
	if r := w.record(w.p2); len(r.Passed) != 0 {
		t.Errorf("another provider's record holds passes: %+v", r.Passed)
	}
}

// TestConvictionClearsPassedDigests: a conviction clears the passes the
// record counted, so a provider back from jail is on probation for every
// digest again, the ones it passed with before included.
func TestConvictionClearsPassedDigests(t *testing.T) {
	w := newRewardWorld(t, rewardParams()) // verdict delay 5, 3 failures convict
	const a, b = "sha256:aa", "sha256:bb"
	for i := range 3 {
		w.judgeDigest(w.p1, a, fmt.Sprint("pass-", i), true)
	}
	w.skipTo(w.height + 5)
	if r := w.record(w.p1); r.Passed.Passes(a) != 3 {
		t.Fatalf("before: %+v", r.Passed)
	}
	for i := range 3 {
		w.judgeDigest(w.p1, b, fmt.Sprint("fail-", i), false)
	}
	w.skipTo(w.height + 5)
	if r := w.record(w.p1); r.Convictions != 1 || len(r.Passed) != 0 {
		t.Fatalf("after the conviction: %d convictions, passed %+v, want none", r.Convictions, r.Passed)
	}
}

// TestPassedDigestsBound: the record holds at most maxPassedDigests
// digests; a new one takes the place of the digest whose last pass is
// oldest, the smallest digest among equally old ones; a digest it holds
// counts on without evicting any; a case without a digest counts for none.
func TestPassedDigestsBound(t *testing.T) {
	var r ProviderRecord
	digest := func(i int) string { return fmt.Sprintf("sha256:%02d", i) }
	for i := range maxPassedDigests {
		h := uint64(100 + i)
		if i == 3 || i == 7 {
			h = 50 // the oldest two, equally old
		}
		r.countPass(digest(i), h)
	}
	r.countPass("", 300)
	if len(r.Passed) != maxPassedDigests {
		t.Fatalf("%d digests, want %d", len(r.Passed), maxPassedDigests)
	}
	r.countPass(digest(10), 200) // held: counts on
	if len(r.Passed) != maxPassedDigests || r.Passed.Passes(digest(10)) != 2 || r.Passed.Passes(digest(3)) != 1 {
		t.Fatalf("a held digest's pass evicted one or did not count: %+v", r.Passed)
	}
	for _, c := range []struct{ add, evicted string }{
		{"sha256:new1", digest(3)}, // tie at 50: the smaller digest goes first
		{"sha256:new2", digest(7)},
		{"sha256:new3", digest(0)}, // then the oldest, 100
	} {
		r.countPass(c.add, 201)
		if len(r.Passed) != maxPassedDigests || r.Passed.Passes(c.evicted) != 0 || r.Passed.Passes(c.add) != 1 {
			t.Fatalf("adding %s: %+v, want %s evicted", c.add, r.Passed, c.evicted)
		}
		if !slices.IsSortedFunc(r.Passed, func(x, y DigestPasses) int { return strings.Compare(x.Digest, y.Digest) }) {
			t.Fatalf("not sorted: %+v", r.Passed)
		}
	}
	if r.Passed.Passes(digest(10)) != 2 || r.Passed.Passes(digest(1)) != 1 {
		t.Errorf("a digest that was not the oldest was evicted: %+v", r.Passed)
	}
	if _, err := decodeProviderRecord(r.encode()); err != nil {
		t.Errorf("a full record does not decode: %v", err)
	}
}

// recordWithPassed is a record's encoding followed by passed-digest
// entries as given, canonical or not.
func recordWithPassed(ps []DigestPasses) []byte {
	base := (&ProviderRecord{Audits: 9, Failures: 1, Recent: []uint64{4}, Last: []CaseOutcome{{Pass: true, Height: 3}}, Open: 2}).encode()
	e := enc{b: base[:len(base)-4]} // without the empty list's count
	e.u32(uint32(len(ps)))
	for _, p := range ps {
		e.str(p.Digest)
		e.u64(p.Passes)
		e.u64(p.Height)
	}
	return e.b
}

// TestProviderRecordEncoding: a record with its passed digests decodes to
// itself, and decoding accepts only what encoding writes: the entries
// sorted by digest, unique, non-empty, each with a pass, within the bounds.
func TestProviderRecordEncoding(t *testing.T) {
	r := ProviderRecord{Audits: 9, Failures: 1, Recent: []uint64{4}, Convictions: 1, JailedAt: 2,
		Last: []CaseOutcome{{Evidence: receipt.Sum([]byte("x")), Pass: true, Height: 3}}, Open: 2,
		Passed: PassedDigests{{Digest: "sha256:aa", Passes: 3, Height: 7}, {Digest: "sha256:bb", Passes: 1, Height: 9}}}
	got, err := decodeProviderRecord(r.encode())
	if err != nil || !reflect.DeepEqual(got, r) {
		t.Fatalf("round trip: %+v %v, want %+v", got, err, r)
	}
	if b := recordWithPassed([]DigestPasses{{"sha256:aa", 3, 7}, {"sha256:bb", 1, 9}}); func() error { _, err := decodeProviderRecord(b); return err }() != nil {
		t.Fatal("the test's encoding of a canonical record is refused")
	}
	full := make([]DigestPasses, maxPassedDigests+1)
	for i := range full {
		full[i] = DigestPasses{Digest: fmt.Sprintf("sha256:%02d", i), Passes: 1, Height: 1}
	}
	for name, b := range map[string][]byte{
		"unsorted":        recordWithPassed([]DigestPasses{{"sha256:bb", 1, 9}, {"sha256:aa", 3, 7}}),
		"duplicate":       recordWithPassed([]DigestPasses{{"sha256:aa", 1, 9}, {"sha256:aa", 3, 7}}),
		"empty digest":    recordWithPassed([]DigestPasses{{"", 1, 9}}),
		"no pass":         recordWithPassed([]DigestPasses{{"sha256:aa", 0, 9}}),
		"too many":        recordWithPassed(full),
		"digest too long": recordWithPassed([]DigestPasses{{"sha256:" + strings.Repeat("a", receipt.MaxDigest), 1, 9}}),
		"not UTF-8":       recordWithPassed([]DigestPasses{{"sha256:\xff", 1, 9}}),
		"truncated":       r.encode()[:len(r.encode())-1],
		"trailing":        append(r.encode(), 0),
	} {
		if _, err := decodeProviderRecord(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: decoded (err %v), want ErrMalformed", name, err)
		}
	}
}

// FuzzDecodeProviderRecord: decoding a provider record never panics,
// fails only with ErrMalformed, and accepts only canonical bytes.
func FuzzDecodeProviderRecord(f *testing.F) {
	for _, r := range []ProviderRecord{
		{},
		{Audits: 9, Failures: 1, Recent: []uint64{4}, Last: []CaseOutcome{{Pass: true, Height: 3}}, Open: 2,
			Passed: PassedDigests{{Digest: "sha256:aa", Passes: 3, Height: 7}, {Digest: "sha256:bb", Passes: 1, Height: 9}}},
	} {
		b := r.encode()
		f.Add(b)
		f.Add(b[:len(b)-1])
	}
	f.Add(recordWithPassed([]DigestPasses{{"sha256:bb", 1, 9}, {"sha256:aa", 3, 7}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeProviderRecord(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if again := r.encode(); !bytes.Equal(again, b) {
			t.Fatalf("non-canonical bytes accepted:\n  in %x\n out %x", b, again)
		}
	})
}
