package gateway

import (
	"testing"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/scheduler"
)

// TestLinesTurnOrder: the head of a line is its first arrival; when the
// head leaves, or a waiter that had the turn leaves or hands it on, the
// next one gets the turn; a waiter that leaves without having tried gives
// nobody a turn. One line per model, with or without ":latest"; requests
// with preferences, exclusions or log-probabilities are restricted.
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
	a, b, c, d := l.join("m"), l.join("m"), l.join("m"), l.join("m")
	other := l.join("n")
	if !l.head(a) || l.head(b) || l.head(c) || !l.head(other) || !l.waiting("m") || l.waiting("x") {
		t.Fatal("heads: want the first of each line")
	}
	l.leave(c, false) // behind the head, timed out: nobody's turn
	if turned(a) || turned(b) || turned(d) {
		t.Fatal("a waiter behind the head left without trying, and somebody got a turn")
	}
	l.handOn(a) // a restricted head found its providers busy
	if !turned(b) || turned(d) {
		t.Fatal("the head handed on; the next one did not get the turn")
	}
	l.leave(b, true) // b had the turn and was placed: d may be placeable too
	if !turned(d) || l.head(d) {
		t.Fatal("a waiter placed on its turn did not hand it on")
	}
	l.leave(a, false)
	if !turned(d) || !l.head(d) {
		t.Fatal("the head left; the next one did not get its turn")
	}
	l.leave(d, false)
	if l.waiting("m") || len(l.lines) != 1 {
		t.Fatalf("empty line kept: %v", l.lines)
	}

	plain := &call{asked: "sim:latest"}
	if k := lineKey(plain); k != "sim" || restricted(plain) {
		t.Errorf("line of %q = %q, restricted %v", plain.asked, k, restricted(plain))
	}
	for _, c := range []*call{
		{asked: "sim", sched: scheduler.Request{Exclude: []keys.PublicKey{{1}}}},
		{asked: "sim", sched: scheduler.Request{Prefs: scheduler.Preferences{RequireDigest: "ab"}}},
		{asked: "sim", sched: scheduler.Request{Logprobs: true}},
		{asked: "sim", sched: scheduler.Request{Needs: []string{"tools"}}},
		{asked: "sim", sched: scheduler.Request{Format: true}},
	} {
		if k := lineKey(c); k != "sim" || !restricted(c) {
			t.Errorf("%+v: line %q, restricted %v", c.sched, k, restricted(c))
		}
	}
}
