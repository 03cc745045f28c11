// Package tstest holds what idlegrid's tests share: one way to wait for
// a condition, instead of a copy in every package. Only tests import it.
//
// Time in a test is a parameter, never an assertion on the wall clock.
// Code that runs wholly in process (no real socket: the simulator, the
// settlement loop on a fake ledger, a store) runs inside a
// testing/synctest bubble, where sleeps and timers pass in no wall time
// and elapsed times are exact. Code on real sockets (a CometBFT node, a
// gateway with connected providers) is checked by what a time bound
// meant: an order (answered while another request still waits), a count
// (broadcasts sent), or a state reached, waited for with WaitFor and a
// generous deadline; a lower bound stays only where a timer the code sets
// guarantees it.
package tstest

import (
	"testing"
	"time"
)

// pollEvery is how often WaitFor checks its condition: often enough that
// a test waits a few milliseconds past the moment it could go on, rarely
// enough not to steal a busy machine's cores from what it waits for.
const pollEvery = 5 * time.Millisecond

// WaitFor checks cond until it holds, and fails t naming what it waited
// for when d passes first. A test that needs something to happen
// eventually waits with it instead of sleeping a fixed time, so it is as
// fast as the machine allows and does not flake when the machine is busy.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(pollEvery)
	}
}
