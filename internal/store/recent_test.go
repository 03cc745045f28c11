package store

import (
	"slices"
	"testing"
	"time"
)

func TestRecentReceiptsAndTokensPerMinute(t *testing.T) {
	s := openSQLite(t)
	ctx := t.Context()
	// Each save reads the clock once; 25 s apart, the saves span minutes.
	clock := time.Date(2030, 1, 2, 3, 4, 0, 0, time.UTC)
	s.now = func() time.Time { clock = clock.Add(25 * time.Second); return clock }
	sg := newSigner(t)
	ids := []string{"req-c", "req-a", "req-d", "req-b"}
	for i, id := range ids {
		if err := s.SaveReceipt(ctx, sg.receipt(t, id, 10, uint64(i+1))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.MarkSettled(ctx, []string{"req-a"}, 7); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkRejected(ctx, "req-d", "no funds"); err != nil {
		t.Fatal(err)
	}

	if _, err := s.RecentReceipts(ctx, 0); err == nil {
		t.Error("limit 0 accepted")
	}
	rs, err := s.RecentReceipts(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rs {
		got = append(got, r.Receipt.RequestID)
		if err := r.Verify(); err != nil {
			t.Errorf("%s does not verify: %v", r.Receipt.RequestID, err)
		}
	}
	if want := []string{"req-b", "req-d", "req-a"}; !slices.Equal(got, want) {
		t.Fatalf("recent = %v, want newest first %v", got, want)
	}
	if rs[1].Rejected != true || rs[1].RejectedReason != "no funds" || rs[1].SettleHeight != 0 {
		t.Errorf("rejected receipt: %+v", rs[1])
	}
	if rs[2].SettleHeight != 7 || rs[2].Rejected || rs[0].SettleHeight != 0 {
		t.Errorf("settlement state: %d %v %d", rs[2].SettleHeight, rs[2].Rejected, rs[0].SettleHeight)
	}
	if want := time.Date(2030, 1, 2, 3, 5, 40, 0, time.UTC); !rs[0].StoredAt.Equal(want) {
		t.Errorf("stored at %v, want %v", rs[0].StoredAt, want)
	}

	// Saved at 3:04:25, 3:04:50, 3:05:15 and 3:05:40.
	mins, err := s.TokensPerMinute(ctx, time.Date(2030, 1, 2, 3, 4, 30, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	want := []MinuteTokens{
		{Minute: time.Date(2030, 1, 2, 3, 4, 0, 0, time.UTC), Requests: 1, PromptTokens: 10, Completion: 2},
		{Minute: time.Date(2030, 1, 2, 3, 5, 0, 0, time.UTC), Requests: 2, PromptTokens: 20, Completion: 7},
	}
	if len(mins) != len(want) {
		t.Fatalf("per minute = %+v, want %+v", mins, want)
	}
	for i := range want {
		if !mins[i].Minute.Equal(want[i].Minute) || mins[i].Requests != want[i].Requests ||
			mins[i].PromptTokens != want[i].PromptTokens || mins[i].Completion != want[i].Completion {
			t.Errorf("minute %d = %+v, want %+v", i, mins[i], want[i])
		}
	}
}
