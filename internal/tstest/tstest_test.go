package tstest

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

func TestWaitFor(t *testing.T) {
	var n atomic.Int32
	go func() {
		for range 3 {
			time.Sleep(time.Millisecond)
			n.Add(1)
		}
	}()
	WaitFor(t, time.Minute, "three ticks", func() bool { return n.Load() == 3 })
}

// TestWaitForTimesOut: a condition that never holds fails the test with
// what it waited for.
func TestWaitForTimesOut(t *testing.T) {
	rec := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		WaitFor(rec, 20*time.Millisecond, "never", func() bool { return false })
	}()
	<-done
	if rec.msg != "timed out after 20ms waiting for never" {
		t.Fatalf("message %q", rec.msg)
	}
}

// recorder records Fatalf and ends the goroutine as testing.T does.
type recorder struct {
	testing.TB
	msg string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
