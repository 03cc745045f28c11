package scheduler

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/idlegrid/idlegrid/internal/keys"
)

func failing(c Candidate) Candidate {
	c.Failing = true
	return c
}

// TestFailingAndExcluded: providers whose breaker is open, and providers
// that already failed this request, are never picked and are counted as
// failing when nothing else can take the request.
func TestFailingAndExcluded(t *testing.T) {
	tests := []struct {
		name    string
		cands   []Candidate
		exclude []keys.PublicKey
		want    byte // picked provider; 0: unplaceable
		msg     string
		busy    bool
	}{
		{name: "open breaker skipped",
			cands: []Candidate{failing(offering(1, 1, 0, false, "sim")), offering(2, 1, 0, false, "sim")}, want: 2},
		{name: "failed provider excluded",
			cands: []Candidate{offering(1, 1, 0, false, "sim"), offering(2, 1, 0, false, "sim")}, exclude: []keys.PublicKey{key(2)}, want: 1},
		{name: "all failing",
			cands: []Candidate{failing(offering(1, 1, 0, false, "sim")), offering(2, 1, 0, false, "sim")}, exclude: []keys.PublicKey{key(2)},
			msg: `model "sim": 2 providers online, all failing`},
		{name: "failing, paused and busy",
			cands: []Candidate{failing(offering(1, 1, 0, false, "sim")), offering(2, 1, 0, true, "sim"), offering(3, 1, 1, false, "sim")},
			msg:   `model "sim": 3 providers online, 1 failing, 1 paused, 1 busy`, busy: true},
		{name: "a failing provider with a full slot counts as failing",
			cands: []Candidate{failing(offering(1, 1, 1, false, "sim")), offering(2, 1, 0, true, "sim")},
			msg:   `model "sim": 2 providers online, 1 failing, 1 paused`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newScheduler(t, Config{Rand: rand.New(rand.NewPCG(1, 2))})
			r := Request{Model: "sim", Exclude: tt.exclude}
			for range 20 { // power of two choices is random: every draw must avoid them
				c, err := s.Pick(tt.cands, &r)
				if tt.want != 0 {
					if err != nil || c.Key != key(tt.want) {
						t.Fatalf("picked %v (%v), want provider %d", c.Key, err, tt.want)
					}
					continue
				}
				var u *Unplaceable
				if !errors.As(err, &u) {
					t.Fatalf("picked %v, want unplaceable", c.Key)
				}
				if u.Error() != tt.msg || u.OnlyBusy() != tt.busy {
					t.Fatalf("%q (only busy %v), want %q (%v)", u.Error(), u.OnlyBusy(), tt.msg, tt.busy)
				}
			}
		})
	}
}
