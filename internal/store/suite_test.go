package store

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// runSuite checks the behaviour every backend must share. open returns a
// fresh, empty store that is closed when the test ends.
func runSuite(t *testing.T, open func(t *testing.T) *Store) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s *Store)
	}{
		{"APIKeys", testAPIKeys},
		{"EnsureAPIKey", testEnsureAPIKey},
		{"APIKeyPreferences", testAPIKeyPreferences},
		{"ReceiptRoundTrip", testReceiptRoundTrip},
		{"ReceiptDuplicate", testReceiptDuplicate},
		{"ReceiptRejectsBadSignature", testReceiptRejectsBadSignature},
		{"ReceiptOutOfRange", testReceiptOutOfRange},
		{"ReceiptConcurrentSave", testReceiptConcurrentSave},
		{"Settlement", testSettlement},
		{"UnsettledCursor", testUnsettledCursor},
		{"PruneSettled", testPruneSettled},
		{"RejectionAndSpend", testRejectionAndSpend},
		{"ReceiptCorrupt", testReceiptCorrupt},
		{"ForGateway", testForGateway},
		{"Reservations", testReservations},
		{"ReservationsConcurrent", testReservationsConcurrent},
		{"PeerModels", testPeerModels},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

func TestSQLite(t *testing.T) { runSuite(t, openSQLite) }

var secretForm = regexp.MustCompile(`^ig-[A-Za-z0-9_-]{43}$`)

func testAPIKeys(t *testing.T, s *Store) {
	ctx := t.Context()
	account := newSigner(t).consumer

	secret, key, err := s.CreateAPIKey(ctx, "laptop", account)
	if err != nil {
		t.Fatalf("CreateAPIKey: %v", err)
	}
	if !secretForm.MatchString(secret) {
		t.Errorf("secret %q does not look like ig- + 43 base64url characters", secret)
	}
	if key.ID == "" || key.Name != "laptop" || key.Account != account || key.CreatedAt.IsZero() || key.Revoked() {
		t.Errorf("created key = %+v", key)
	}
	if key.Prefix != secret[:len(SecretPrefix)+displayLen] {
		t.Errorf("prefix %q, want the first %d characters after %q of %q", key.Prefix, displayLen, SecretPrefix, secret)
	}
	got, err := s.LookupAPIKey(ctx, secret)
	if err != nil || got != key {
		t.Fatalf("LookupAPIKey = %+v, %v; want %+v", got, err, key)
	}

	secret2, key2, err := s.CreateAPIKey(ctx, "server", account)
	if err != nil {
		t.Fatalf("second CreateAPIKey: %v", err)
	}
	if secret2 == secret || key2.ID == key.ID {
		t.Fatalf("two keys share a secret or an id: %+v %+v", key, key2)
	}

	for _, bad := range []string{"", "ig-", secret + "x", secret[:len(secret)-1], strings.ToUpper(secret)} {
		if _, err := s.LookupAPIKey(ctx, bad); !errors.Is(err, ErrNotFound) {
			t.Errorf("LookupAPIKey(%q) error = %v, want ErrNotFound", bad, err)
		}
	}
	if _, _, err := s.CreateAPIKey(ctx, "bad", keys.Address("not-an-address")); err == nil {
		t.Error("CreateAPIKey accepted a malformed account")
	}

	list, err := s.ListAPIKeys(ctx)
	if err != nil {
		t.Fatalf("ListAPIKeys: %v", err)
	}
	byID := map[string]APIKey{}
	for _, k := range list {
		byID[k.ID] = k
	}
	if len(list) != 2 || byID[key.ID] != key || byID[key2.ID] != key2 {
		t.Fatalf("ListAPIKeys = %+v, want %+v and %+v", list, key, key2)
	}

	if err := s.RevokeAPIKey(ctx, key.ID); err != nil {
		t.Fatalf("RevokeAPIKey: %v", err)
	}
	revoked, err := s.LookupAPIKey(ctx, secret)
	if !errors.Is(err, ErrRevoked) || revoked.ID != key.ID || !revoked.Revoked() {
		t.Fatalf("LookupAPIKey of a revoked key = %+v, %v; want the key and ErrRevoked", revoked, err)
	}
	if err := s.RevokeAPIKey(ctx, key.ID); err != nil {
		t.Fatalf("second RevokeAPIKey: %v", err)
	}
	again, _ := s.LookupAPIKey(ctx, secret)
	if !again.RevokedAt.Equal(revoked.RevokedAt) {
		t.Errorf("revoking twice moved RevokedAt from %v to %v", revoked.RevokedAt, again.RevokedAt)
	}
	if _, err := s.LookupAPIKey(ctx, secret2); err != nil {
		t.Errorf("revoking one key affected another: %v", err)
	}
	if err := s.RevokeAPIKey(ctx, "key_nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("RevokeAPIKey(unknown) = %v, want ErrNotFound", err)
	}
	list, err = s.ListAPIKeys(ctx)
	if err != nil {
		t.Fatalf("ListAPIKeys: %v", err)
	}
	for _, k := range list {
		if k.Revoked() != (k.ID == key.ID) {
			t.Errorf("after revoking %s, listed %+v", key.ID, k)
		}
	}
}

func testEnsureAPIKey(t *testing.T, s *Store) {
	ctx := t.Context()
	alice, bob := newSigner(t).consumer, newSigner(t).consumer
	const devSecret = "dev-secret-0123456789"

	if _, err := s.EnsureAPIKey(ctx, "short-secret-15", "dev", alice); err == nil {
		t.Error("EnsureAPIKey accepted a 15-character secret")
	}
	if _, err := s.EnsureAPIKey(ctx, devSecret, "dev", keys.Address("idgXYZ")); err == nil {
		t.Error("EnsureAPIKey accepted a malformed account")
	}

	key, err := s.EnsureAPIKey(ctx, devSecret, "dev", alice)
	if err != nil {
		t.Fatalf("EnsureAPIKey: %v", err)
	}
	if key.Account != alice || key.Name != "dev" {
		t.Errorf("ensured key = %+v", key)
	}
	// A secret without the ig- form shows at most a quarter of itself.
	if want := devSecret[:len(devSecret)/4]; key.Prefix != want {
		t.Errorf("prefix %q, want %q", key.Prefix, want)
	}
	again, err := s.EnsureAPIKey(ctx, devSecret, "renamed", alice)
	if err != nil || again != key {
		t.Errorf("second EnsureAPIKey = %+v, %v; want the same key %+v", again, err, key)
	}
	if got, err := s.LookupAPIKey(ctx, devSecret); err != nil || got != key {
		t.Errorf("LookupAPIKey(ensured) = %+v, %v", got, err)
	}
	if _, err := s.EnsureAPIKey(ctx, devSecret, "dev", bob); !errors.Is(err, ErrDuplicate) {
		t.Errorf("EnsureAPIKey for another account = %v, want ErrDuplicate", err)
	}

	// A generated secret can be pinned too, and is found, not duplicated.
	secret, created, err := s.CreateAPIKey(ctx, "generated", alice)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.EnsureAPIKey(ctx, secret, "generated", alice); err != nil || got != created {
		t.Errorf("EnsureAPIKey(generated secret) = %+v, %v; want %+v", got, err, created)
	}

	if err := s.RevokeAPIKey(ctx, key.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.EnsureAPIKey(ctx, devSecret, "dev", alice); !errors.Is(err, ErrRevoked) {
		t.Errorf("EnsureAPIKey of a revoked secret = %v, want ErrRevoked", err)
	}
	list, err := s.ListAPIKeys(ctx)
	if err != nil || len(list) != 2 {
		t.Errorf("ListAPIKeys = %d keys, %v; want 2", len(list), err)
	}
}

func testReceiptRoundTrip(t *testing.T, s *Store) {
	ctx := t.Context()
	sg := newSigner(t)
	want := sg.receipt(t, "req-round-trip", 1_234, 5_678)
	if err := s.SaveReceipt(ctx, want); err != nil {
		t.Fatalf("SaveReceipt: %v", err)
	}
	got, err := s.Receipt(ctx, want.Receipt.RequestID)
	if err != nil {
		t.Fatalf("Receipt: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Receipt = %+v\nwant %+v", got, want)
	}
	if err := got.Verify(); err != nil {
		t.Errorf("read-back receipt does not verify: %v", err)
	}
	if _, err := s.Receipt(ctx, "req-unknown"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Receipt(unknown) = %v, want ErrNotFound", err)
	}

	other := sg.receipt(t, "req-round-trip-2", 10, 20)
	if err := s.SaveReceipt(ctx, other); err != nil {
		t.Fatal(err)
	}
	count, amount, err := s.ReceiptStats(ctx, sg.consumer)
	if wantSum := want.Receipt.Amount + other.Receipt.Amount; err != nil || count != 2 || amount != wantSum {
		t.Errorf("ReceiptStats = %d, %d, %v; want 2, %d", count, amount, err, wantSum)
	}
	if count, amount, err := s.ReceiptStats(ctx, newSigner(t).consumer); err != nil || count != 0 || amount != 0 {
		t.Errorf("ReceiptStats(stranger) = %d, %d, %v; want 0, 0", count, amount, err)
	}
}

func testReceiptDuplicate(t *testing.T, s *Store) {
	ctx := t.Context()
	sg := newSigner(t)
	first := sg.receipt(t, "req-dup", 100, 200)
	if err := s.SaveReceipt(ctx, first); err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]receipt.Signed{
		"identical":     first,
		"other content": sg.receipt(t, "req-dup", 999, 999),
	} {
		if err := s.SaveReceipt(ctx, r); !errors.Is(err, ErrDuplicate) {
			t.Errorf("%s: second SaveReceipt = %v, want ErrDuplicate", name, err)
		}
	}
	got, err := s.Receipt(ctx, "req-dup")
	if err != nil || !reflect.DeepEqual(got, first) {
		t.Errorf("after duplicates, Receipt = %+v, %v; want the first", got, err)
	}
	if count, _, _ := s.ReceiptStats(ctx, sg.consumer); count != 1 {
		t.Errorf("%d receipts stored, want 1", count)
	}
}

// testReceiptRejectsBadSignature: SaveReceipt checks fields but trusts the
// caller's signatures (the gateway verified and made them a moment before);
// a receipt whose signatures do not verify can be stored by a buggy caller,
// but never comes back out as valid: every read verifies both.
func testReceiptRejectsBadSignature(t *testing.T, s *Store) {
	ctx := t.Context()
	sg := newSigner(t)
	tests := map[string]func(*receipt.Signed){
		"provider signature": func(r *receipt.Signed) { r.ProviderSignature[0] ^= 1 },
		"gateway signature":  func(r *receipt.Signed) { r.GatewaySignature[5] ^= 1 },
		"field after signing": func(r *receipt.Signed) {
			r.Receipt.ResponseHash = receipt.Sum([]byte("something else"))
		},
	}
	for name, mutate := range tests {
		r := sg.receipt(t, "req-bad-"+strings.ReplaceAll(name, " ", "-"), 10, 10)
		mutate(&r)
		if err := s.SaveReceipt(ctx, r); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := s.Receipt(ctx, r.Receipt.RequestID); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: a receipt that does not verify was read back: %v", name, err)
		}
		if _, err := s.UnsettledReceipts(ctx, 100); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: a receipt that does not verify was offered for settlement: %v", name, err)
		}
		if _, err := s.write.ExecContext(ctx, `DELETE FROM receipts WHERE request_id = $1`, r.Receipt.RequestID); err != nil {
			t.Fatal(err)
		}
	}
	// Fields are checked on the way in: an amount that is not tokens ×
	// prices is refused.
	r := sg.receipt(t, "req-bad-amount", 10, 10)
	r.Receipt.Amount++
	if err := s.SaveReceipt(ctx, r); err == nil {
		t.Error("SaveReceipt accepted an amount that is not tokens × prices")
	}
	if _, err := s.Receipt(ctx, r.Receipt.RequestID); !errors.Is(err, ErrNotFound) {
		t.Errorf("rejected receipt is readable: %v", err)
	}
}

func testReceiptOutOfRange(t *testing.T, s *Store) {
	ctx := t.Context()
	sg := newSigner(t)
	for name, r := range map[string]receipt.Signed{
		"tokens above MaxInt64": sg.priced(t, "req-huge-tokens", math.MaxUint64, 0, 1, 0),
		"amount above MaxInt64": sg.priced(t, "req-huge-amount", 1<<62, 0, 3*money.Unit, 0),
	} {
		if err := s.SaveReceipt(ctx, r); !errors.Is(err, ErrOutOfRange) {
			t.Errorf("%s: SaveReceipt = %v, want ErrOutOfRange", name, err)
		}
		if _, err := s.Receipt(ctx, r.Receipt.RequestID); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: refused receipt was stored: %v", name, err)
		}
	}

	// The largest storable values survive exactly.
	largest := sg.priced(t, "req-max", math.MaxInt64, math.MaxInt64, money.Unit, 0)
	if largest.Receipt.Amount != math.MaxInt64 {
		t.Fatalf("test setup: amount %d, want MaxInt64", largest.Receipt.Amount)
	}
	if err := s.SaveReceipt(ctx, largest); err != nil {
		t.Fatalf("SaveReceipt(MaxInt64 amount): %v", err)
	}
	got, err := s.Receipt(ctx, "req-max")
	if err != nil || !reflect.DeepEqual(got, largest) {
		t.Fatalf("Receipt(req-max) = %+v, %v", got, err)
	}
	if count, amount, err := s.ReceiptStats(ctx, sg.consumer); err != nil || count != 1 || amount != math.MaxInt64 {
		t.Errorf("ReceiptStats = %d, %d, %v; want 1, MaxInt64", count, amount, err)
	}
	// One more base unit and the sum no longer fits: an error, never a wrap.
	if err := s.SaveReceipt(ctx, sg.priced(t, "req-one-more", 1, 0, money.Unit, 0)); err != nil {
		t.Fatal(err)
	}
	if count, amount, err := s.ReceiptStats(ctx, sg.consumer); err == nil {
		t.Errorf("ReceiptStats over MaxInt64 = %d, %d; want an error", count, amount)
	}
}

func testReceiptConcurrentSave(t *testing.T, s *Store) {
	ctx := t.Context()
	sg := newSigner(t)
	const n = 200
	rs := make([]receipt.Signed, n)
	var want money.Amount
	for i := range rs {
		rs[i] = sg.receipt(t, fmt.Sprintf("req-concurrent-%03d", i), uint64(100+i), uint64(1_000+i))
		want += rs[i].Receipt.Amount
	}

	// Every receipt is saved by two goroutines at once: exactly one of them
	// must win.
	var saved, dup atomic.Int64
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			for _, r := range []receipt.Signed{rs[i], rs[(i+1)%n]} {
				switch err := s.SaveReceipt(ctx, r); {
				case err == nil:
					saved.Add(1)
				case errors.Is(err, ErrDuplicate):
					dup.Add(1)
				default:
					t.Errorf("SaveReceipt(%s): %v", r.Receipt.RequestID, err)
				}
			}
		})
	}
	wg.Wait()
	if saved.Load() != n || dup.Load() != n {
		t.Errorf("saved %d, duplicates %d; want %d each", saved.Load(), dup.Load(), n)
	}
	count, amount, err := s.ReceiptStats(ctx, sg.consumer)
	if err != nil || count != n || amount != want {
		t.Errorf("ReceiptStats = %d, %d, %v; want %d, %d", count, amount, err, n, want)
	}
	unsettled, err := s.UnsettledReceipts(ctx, 2*n)
	if err != nil || len(unsettled) != n {
		t.Fatalf("UnsettledReceipts = %d receipts, %v; want %d", len(unsettled), err, n)
	}
	seen := map[string]bool{}
	for _, r := range unsettled {
		seen[r.Receipt.RequestID] = true
	}
	if len(seen) != n {
		t.Errorf("%d distinct receipts stored, want %d", len(seen), n)
	}
}

func testSettlement(t *testing.T, s *Store) {
	ctx := t.Context()
	s.now = newFakeClock().now
	sg := newSigner(t)
	// Saved in an order unlike their ids, so "oldest first" cannot pass by
	// sorting on request_id.
	ids := []string{"req-e", "req-c", "req-a", "req-d", "req-b"}
	for i, id := range ids {
		if err := s.SaveReceipt(ctx, sg.receipt(t, id, uint64(i+1), 1)); err != nil {
			t.Fatal(err)
		}
	}
	unsettledIDs := func() []string {
		t.Helper()
		rs, err := s.UnsettledReceipts(ctx, 100)
		if err != nil {
			t.Fatalf("UnsettledReceipts: %v", err)
		}
		var out []string
		for _, r := range rs {
			if err := r.Verify(); err != nil {
				t.Errorf("unsettled %s does not verify: %v", r.Receipt.RequestID, err)
			}
			out = append(out, r.Receipt.RequestID)
		}
		return out
	}
	if got := unsettledIDs(); !slices.Equal(got, ids) {
		t.Fatalf("unsettled = %v, want oldest first %v", got, ids)
	}
	if rs, err := s.UnsettledReceipts(ctx, 2); err != nil || len(rs) != 2 || rs[1].Receipt.RequestID != ids[1] {
		t.Errorf("UnsettledReceipts(2) = %d receipts, %v", len(rs), err)
	}
	if _, err := s.UnsettledReceipts(ctx, 0); err == nil {
		t.Error("UnsettledReceipts(0) accepted")
	}

	if err := s.MarkSettled(ctx, ids[:2], 7); err != nil {
		t.Fatalf("MarkSettled: %v", err)
	}
	if got := unsettledIDs(); !slices.Equal(got, ids[2:]) {
		t.Fatalf("after settling %v, unsettled = %v", ids[:2], got)
	}
	var height int64
	if err := s.read.QueryRowContext(ctx, `SELECT settle_height FROM receipts WHERE request_id = $1`, ids[0]).Scan(&height); err != nil || height != 7 {
		t.Errorf("settle_height = %d, %v; want 7", height, err)
	}

	// Each failure is all-or-nothing: ids[2] stays unsettled.
	for _, tc := range []struct {
		name  string
		ids   []string
		want  error
		named string
	}{
		{"already settled", []string{ids[2], ids[0]}, ErrAlreadySettled, ids[0]},
		{"unknown", []string{ids[2], "req-nope"}, ErrNotFound, "req-nope"},
		{"repeated", []string{ids[2], ids[2]}, ErrAlreadySettled, ids[2]},
	} {
		err := s.MarkSettled(ctx, tc.ids, 8)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.named) {
			t.Errorf("%s: MarkSettled = %v; want %v naming %s", tc.name, err, tc.want, tc.named)
		}
		if got := unsettledIDs(); !slices.Equal(got, ids[2:]) {
			t.Fatalf("%s: failed MarkSettled changed state: unsettled = %v", tc.name, got)
		}
	}
	if err := s.MarkSettled(ctx, nil, 8); err != nil {
		t.Errorf("MarkSettled(no ids) = %v", err)
	}
	if err := s.MarkSettled(ctx, ids[2:3], 0); err == nil {
		t.Error("MarkSettled at height 0 accepted")
	}
	if err := s.MarkSettled(ctx, ids[2:], 9); err != nil {
		t.Fatalf("MarkSettled(rest): %v", err)
	}
	if got := unsettledIDs(); len(got) != 0 {
		t.Errorf("all settled, yet unsettled = %v", got)
	}
	// Settled receipts stay readable and still count for the account.
	if _, err := s.Receipt(ctx, ids[0]); err != nil {
		t.Errorf("Receipt(settled): %v", err)
	}
	if count, _, err := s.ReceiptStats(ctx, sg.consumer); err != nil || count != int64(len(ids)) {
		t.Errorf("ReceiptStats = %d, %v; want %d", count, err, len(ids))
	}
}

func testReceiptCorrupt(t *testing.T, s *Store) {
	ctx := t.Context()
	sg := newSigner(t)
	decoy := sg.receipt(t, "req-decoy", 1, 1)
	tests := []struct {
		name  string
		query string // the UPDATE to run; empty replaces receipt_bytes
		value func(r receipt.Signed) any
	}{
		{name: "truncated", value: func(r receipt.Signed) any { b := r.Receipt.Bytes(); return b[:len(b)-1] }},
		{name: "trailing byte", value: func(r receipt.Signed) any { return append(r.Receipt.Bytes(), 0) }},
		{name: "empty", value: func(receipt.Signed) any { return []byte{} }},
		{name: "flipped response hash", value: func(r receipt.Signed) any {
			b := r.Receipt.Bytes()
			b[len(b)-17] ^= 0x80 // last byte of ResponseHash: decodes, but signatures fail
			return b
		}},
		{name: "another receipt's bytes", value: func(receipt.Signed) any { return decoy.Receipt.Bytes() }},
		{name: "provider signature", query: `UPDATE receipts SET provider_signature = $1 WHERE request_id = $2`,
			value: func(r receipt.Signed) any { sig := r.ProviderSignature; sig[0] ^= 1; return sig[:] }},
		{name: "amount column", query: `UPDATE receipts SET amount = amount + $1 WHERE request_id = $2`,
			value: func(receipt.Signed) any { return 1 }},
	}
	for i, tc := range tests {
		r := sg.receipt(t, fmt.Sprintf("req-corrupt-%d", i), 10, 20)
		if err := s.SaveReceipt(ctx, r); err != nil {
			t.Fatal(err)
		}
		query := tc.query
		if query == "" {
			query = `UPDATE receipts SET receipt_bytes = $1 WHERE request_id = $2`
		}
		if _, err := s.write.ExecContext(ctx, query, tc.value(r), r.Receipt.RequestID); err != nil {
			t.Fatalf("%s: corrupting: %v", tc.name, err)
		}
		got, err := s.Receipt(ctx, r.Receipt.RequestID)
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: Receipt = %+v, %v; want ErrCorrupt", tc.name, got, err)
		}
		if rs, err := s.UnsettledReceipts(ctx, 100); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), r.Receipt.RequestID) {
			t.Errorf("%s: UnsettledReceipts = %d receipts, %v; want ErrCorrupt naming the receipt", tc.name, len(rs), err)
		}
		// Remove it so the next case's UnsettledReceipts sees only its own.
		if _, err := s.write.ExecContext(ctx, `DELETE FROM receipts WHERE request_id = $1`, r.Receipt.RequestID); err != nil {
			t.Fatal(err)
		}
	}
}

func testRejectionAndSpend(t *testing.T, s *Store) {
	ctx := t.Context()
	sg := newSigner(t)
	other := newSigner(t)
	amounts := map[string]money.Amount{}
	for i, id := range []string{"r1", "r2", "r3", "r4"} {
		sr := sg.receipt(t, id, uint64(1000*(i+1)), 2000)
		amounts[id] = sr.Receipt.Amount
		if err := s.SaveReceipt(ctx, sr); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SaveReceipt(ctx, other.receipt(t, "o1", 10, 10)); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkSettled(ctx, []string{"r1"}, 3); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkRejected(ctx, "r2", "consumer cannot pay"); err != nil {
		t.Fatalf("MarkRejected: %v", err)
	}
	if err := s.MarkRejected(ctx, "r1", "late"); !errors.Is(err, ErrAlreadySettled) {
		t.Errorf("MarkRejected(settled) = %v, want ErrAlreadySettled", err)
	}
	if err := s.MarkRejected(ctx, "nope", "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("MarkRejected(unknown) = %v, want ErrNotFound", err)
	}
	rs, err := s.UnsettledReceipts(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range rs {
		ids = append(ids, r.Receipt.RequestID)
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"o1", "r3", "r4"}) {
		t.Errorf("unsettled after one settled and one rejected = %v", ids)
	}
	sp, err := s.ConsumerSpend(ctx, sg.consumer)
	if err != nil {
		t.Fatal(err)
	}
	want := Spend{Settled: amounts["r1"], SettledCount: 1, Pending: amounts["r3"] + amounts["r4"], PendingCount: 2, Rejected: amounts["r2"], RejectedCount: 1}
	if sp != want {
		t.Errorf("ConsumerSpend = %+v, want %+v", sp, want)
	}
	pending, err := s.PendingByConsumer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != 2 || pending[sg.consumer] != want.Pending || pending[other.consumer] == 0 {
		t.Errorf("PendingByConsumer = %v", pending)
	}
	// The ledger is the authority: a receipt marked rejected that the ledger
	// did settle (a lost reply) can still be marked settled.
	if err := s.MarkSettled(ctx, []string{"r2"}, 4); err != nil {
		t.Errorf("MarkSettled(rejected) = %v", err)
	}
	if sp, _ := s.ConsumerSpend(ctx, sg.consumer); sp.RejectedCount != 0 || sp.SettledCount != 2 {
		t.Errorf("after settling the rejected receipt: %+v", sp)
	}
}

// testUnsettledCursor: reading on from a cursor visits every unsettled
// receipt once, in the order UnsettledReceipts gives (created_at, ties
// broken by request_id), skips what was settled meanwhile, and stays in
// this gateway's receipts when scoped.
func testUnsettledCursor(t *testing.T, s *Store) {
	ctx := t.Context()
	clock := newFakeClock()
	tick := 0
	s.now = func() time.Time { // two receipts per instant: ties to break
		tick++
		if tick%2 == 1 {
			return clock.now()
		}
		return clock.t
	}
	sg, other := newSigner(t), newSigner(t)
	ids := []string{"req-h", "req-b", "req-f", "req-d", "req-a", "req-g", "req-c", "req-e"}
	for _, id := range ids {
		if err := s.SaveReceipt(ctx, sg.receipt(t, id, 1, 1)); err != nil {
			t.Fatal(err)
		}
		if err := s.SaveReceipt(ctx, other.receipt(t, id+"-other", 1, 1)); err != nil {
			t.Fatal(err)
		}
	}
	s.gateway = sg.gateway.Public().String()
	defer func() { s.gateway = "" }()
	all, err := s.UnsettledReceipts(ctx, 100)
	if err != nil || len(all) != len(ids) {
		t.Fatalf("UnsettledReceipts = %d, %v; want %d", len(all), err, len(ids))
	}
	var want []string
	for _, r := range all {
		want = append(want, r.Receipt.RequestID)
	}
	var got []string
	var cur Cursor
	for page := 0; ; page++ {
		rs, next, err := s.UnsettledReceiptsAfter(ctx, cur, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) == 0 {
			if next != cur {
				t.Errorf("an empty page moved the cursor")
			}
			break
		}
		for _, r := range rs {
			got = append(got, r.Receipt.RequestID)
		}
		if page == 0 {
			// Settle the first receipt of the next page: it is not read.
			nextPage, _, err := s.UnsettledReceiptsAfter(ctx, next, 1)
			if err != nil || len(nextPage) != 1 {
				t.Fatal(len(nextPage), err)
			}
			if err := s.MarkSettled(ctx, []string{nextPage[0].Receipt.RequestID}, 3); err != nil {
				t.Fatal(err)
			}
			want = slices.DeleteFunc(want, func(id string) bool { return id == nextPage[0].Receipt.RequestID })
		}
		cur = next
	}
	if !slices.Equal(got, want) {
		t.Errorf("pages = %v, want %v", got, want)
	}
	if _, _, err := s.UnsettledReceiptsAfter(ctx, Cursor{}, 0); err == nil {
		t.Error("limit 0 accepted")
	}
}

// testPruneSettled: only receipts settled before the cutoff go, oldest
// first and at most limit per call, and only this gateway's when scoped;
// unsettled and rejected receipts stay, however old.
func testPruneSettled(t *testing.T, s *Store) {
	ctx := t.Context()
	clock := newFakeClock() // each reading one second later
	s.now = clock.now
	sg, other := newSigner(t), newSigner(t)
	save := func(sg signer, id string) {
		t.Helper()
		if err := s.SaveReceipt(ctx, sg.receipt(t, id, 1, 1)); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"old-1", "old-2", "old-3", "recent", "unsettled", "rejected"} {
		save(sg, id)
	}
	save(other, "other-gateway")
	for i, id := range []string{"old-2", "old-1", "old-3", "other-gateway"} { // settled in this order
		if err := s.MarkSettled(ctx, []string{id}, int64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.MarkRejected(ctx, "rejected", "test"); err != nil {
		t.Fatal(err)
	}
	cutoff := clock.now() // everything settled so far is older
	if err := s.MarkSettled(ctx, []string{"recent"}, 9); err != nil {
		t.Fatal(err)
	}
	s.gateway = sg.gateway.Public().String()
	defer func() { s.gateway = "" }()
	if n, err := s.PruneSettled(ctx, cutoff, 2); err != nil || n != 2 {
		t.Fatalf("first prune: %d, %v; want 2", n, err)
	}
	for _, id := range []string{"old-2", "old-1"} { // the two settled first
		if _, err := s.Receipt(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s after the first prune: %v; want it gone", id, err)
		}
	}
	if n, err := s.PruneSettled(ctx, cutoff, 2); err != nil || n != 1 {
		t.Fatalf("second prune: %d, %v; want 1", n, err)
	}
	if n, err := s.PruneSettled(ctx, cutoff, 2); err != nil || n != 0 {
		t.Fatalf("third prune: %d, %v; want 0", n, err)
	}
	for _, id := range []string{"recent", "unsettled", "rejected", "other-gateway"} {
		if _, err := s.Receipt(ctx, id); err != nil {
			t.Errorf("%s: %v; want it kept", id, err)
		}
	}
	if _, err := s.PruneSettled(ctx, cutoff, 0); err == nil {
		t.Error("limit 0 accepted")
	}
}
