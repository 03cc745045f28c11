package gateway

import (
	"testing"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/scheduler"
)

// TestLinesTurnOrder: the head of a line is its first arrival; when the
// head leaves the next one gets its turn, when another waiter leaves
// nobody does; lines are per model and need for log-probabilities, and a
// request with preferences or exclusions waits on its own.
func TestLinesTurnOrder(t *testing.T) {
	l := newLines()
	turned := func(w *waiter) bool {
		select {
		case <-w.turn:
			return true
		default:
			return false
		}
	}
	a, b, c := l.join("m"), l.join("m"), l.join("m")
	other := l.join("m\x00logprobs")
	if !l.head(a) || l.head(b) || l.head(c) || !l.head(other) || !l.waiting("m") || l.waiting("n") {
		t.Fatal("heads: want the first of each line")
	}
	l.leave(b) // not the head: nobody's turn
	if turned(a) || turned(c) {
		t.Fatal("a waiter behind the head left, and somebody got a turn")
	}
	l.leave(a)
	if !turned(c) || !l.head(c) {
		t.Fatal("the head left; the next one did not get its turn")
	}
	l.leave(c)
	if l.waiting("m") || len(l.lines) != 1 {
		t.Fatalf("empty line kept: %v", l.lines)
	}

	plain := &call{asked: "sim:latest"}
	if k := lineKey(plain); k != "sim" {
		t.Errorf("line of %q = %q", plain.asked, k)
	}
	for _, c := range []*call{
		{asked: "sim", sched: scheduler.Request{Exclude: []keys.PublicKey{{1}}}},
		{asked: "sim", sched: scheduler.Request{Prefs: scheduler.Preferences{RequireDigest: "ab"}}},
	} {
		if k := lineKey(c); k != "" {
			t.Errorf("%+v waits in line %q, want on its own", c.sched, k)
		}
		w := l.join("")
		if !l.head(w) || l.waiting("") {
			t.Error("a request on its own is not its own head")
		}
		l.leave(w)
	}
}
