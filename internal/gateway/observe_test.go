package gateway

import (
	"testing"
	"time"
)

// TestHeldBack: tokens streamed evenly from the first to the end carry no
// lag; held back after the first token they lag by about half the answer;
// held back whole, the first token is the last and the lag is nil (the
// time to first token tells).
func TestHeldBack(t *testing.T) {
	const n = 50
	total := time.Second
	at := func(arrivals func(i int) time.Duration) *segment {
		s := &segment{}
		for i := range n {
			s.arrived += 4 * arrivals(i).Seconds() // 4 bytes a token
			s.relayed += 4
		}
		return s
	}
	first := 20 * time.Millisecond
	step := (total - first) / n
	tests := []struct {
		name     string
		seg      *segment
		first    time.Duration
		min, max time.Duration
	}{
		{"streamed evenly", at(func(i int) time.Duration { return first + time.Duration(i)*step }), first, 0, 0},
		{"first token, then the rest at the end", at(func(i int) time.Duration {
			if i == 0 {
				return first
			}
			return total
		}), first, 450 * time.Millisecond, 500 * time.Millisecond},
		{"all at the end", at(func(int) time.Duration { return total }), total, 0, 0},
		{"no tokens", &segment{}, first, 0, 0},
	}
	for _, tt := range tests {
		if got := heldBack(tt.seg, tt.first, total); got < tt.min || got > tt.max {
			t.Errorf("%s: lag %s, want %s to %s", tt.name, got, tt.min, tt.max)
		}
	}
}
