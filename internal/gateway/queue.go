package gateway

import (
	"strings"
	"sync"
)

// Waiting for a provider slot, in arrival order.
//
// Requests that find every provider of their model busy wait in a line,
// one line per model (and per need for log-probabilities, which narrows the
// providers). Only the head of a line tries to place itself when capacity
// may have appeared (the hub's change signal); when it is placed, or gives
// up, the next one takes its turn at once and tries too, since more than
// one slot may have freed. A request that arrives while its line is not
// empty joins the tail without trying, so a late arrival never takes a
// slot before a request that has waited longer, and a freed slot costs one
// placement attempt, not one per waiting request.
//
// A request with routing preferences, or one moving on after a provider
// failed it, waits on its own: its providers are not its line's, and it
// must not hold up (or be held up by) requests that could be placed.

// lines holds the waiting lines by key.
type lines struct {
	mu    sync.Mutex
	lines map[string][]*waiter
}

// waiter is one request waiting in a line.
type waiter struct {
	key string
	// turn receives when the waiter has become the head of its line:
	// try to place now (capacity 1, never blocks the sender).
	turn chan struct{}
}

func newLines() *lines { return &lines{lines: map[string][]*waiter{}} }

// lineKey is the line c waits in; "" when it waits on its own.
func lineKey(c *call) string {
	s := &c.sched
	if len(s.Exclude) > 0 || !s.Prefs.IsZero() {
		return ""
	}
	key, _ := strings.CutSuffix(c.asked, ":latest")
	if s.Logprobs {
		key += "\x00logprobs"
	}
	return key
}

// waiting reports whether anybody waits in line key.
func (l *lines) waiting(key string) bool {
	if key == "" {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.lines[key]) > 0
}

// join puts a new waiter at the tail of line key (alone for "").
func (l *lines) join(key string) *waiter {
	w := &waiter{key: key, turn: make(chan struct{}, 1)}
	if key == "" {
		return w
	}
	l.mu.Lock()
	l.lines[key] = append(l.lines[key], w)
	l.mu.Unlock()
	return w
}

// head reports whether w is at the head of its line.
func (l *lines) head(w *waiter) bool {
	if w.key == "" {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	q := l.lines[w.key]
	return len(q) > 0 && q[0] == w
}

// leave takes w out of its line; when w was the head, the next waiter's
// turn comes.
func (l *lines) leave(w *waiter) {
	if w.key == "" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	q := l.lines[w.key]
	for i, x := range q {
		if x != w {
			continue
		}
		q = append(q[:i], q[i+1:]...)
		if i == 0 && len(q) > 0 {
			select {
			case q[0].turn <- struct{}{}:
			default:
			}
		}
		break
	}
	if len(q) == 0 {
		delete(l.lines, w.key)
	} else {
		l.lines[w.key] = q
	}
}
