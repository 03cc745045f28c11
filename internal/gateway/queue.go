package gateway

import (
	"strings"
	"sync"
)

// Waiting for a provider slot, in arrival order.
//
// Requests that find every provider of their model busy wait in a line per
// model. Only the head of a line tries to place itself when capacity may
// have appeared (the hub's change signal); whoever tries and is placed, or
// gives up, hands the turn to the next one, which tries at once, since more
// than one slot may have freed. A request that arrives while its line is
// not empty joins its tail without trying, so a late arrival never takes a
// slot before a request that has waited longer, and a freed slot costs one
// placement attempt, not one per waiting request.
//
// Some requests can use fewer of the model's providers than others: those
// with routing preferences, asking for log-probabilities or for
// capabilities (tools, structured output), or moving on after a provider
// failed them. When such a restricted request tries and
// finds its providers busy, the next one tries too (the slot may be one it
// cannot use); an unrestricted request that finds every provider busy ends
// the round, since nobody behind it can be placed either. So a restricted
// request neither holds up the line nor, with a preference that narrows
// nothing, jumps it.

// lines holds the waiting lines by key.
type lines struct {
	mu    sync.Mutex
	lines map[string][]*waiter
}

// waiter is one request waiting in a line.
type waiter struct {
	key string
	// turn receives when the waiter should try to place itself: it has
	// become the head of its line, or the one before it handed the turn
	// on (capacity 1, never blocks the sender).
	turn chan struct{}
}

func newLines() *lines { return &lines{lines: map[string][]*waiter{}} }

// lineKey is the line c waits in: its model, by name with or without
// ":latest".
func lineKey(c *call) string {
	key, _ := strings.CutSuffix(c.asked, ":latest")
	return key
}

// restricted reports whether c can use fewer of its model's providers than
// a plain request (see the scheduler's filters).
func restricted(c *call) bool {
	s := &c.sched
	return len(s.Exclude) > 0 || !s.Prefs.IsZero() || s.Logprobs || len(s.Needs) > 0 || s.Format
}

// waiting reports whether anybody waits in line key.
func (l *lines) waiting(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.lines[key]) > 0
}

// join puts a new waiter at the tail of line key.
func (l *lines) join(key string) *waiter {
	w := &waiter{key: key, turn: make(chan struct{}, 1)}
	l.mu.Lock()
	l.lines[key] = append(l.lines[key], w)
	l.mu.Unlock()
	return w
}

// head reports whether w is at the head of its line.
func (l *lines) head(w *waiter) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	q := l.lines[w.key]
	return len(q) > 0 && q[0] == w
}

// handOn gives the turn to the waiter after w, if any.
func (l *lines) handOn(w *waiter) {
	l.mu.Lock()
	defer l.mu.Unlock()
	q := l.lines[w.key]
	for i, x := range q {
		if x == w && i+1 < len(q) {
			give(q[i+1])
			return
		}
	}
}

// leave takes w out of its line. The waiter after it gets the turn when w
// was the head (the next one is the head now) or when tried says w had
// the turn (it was placed or gave up trying, and more may be placeable).
func (l *lines) leave(w *waiter, tried bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	q := l.lines[w.key]
	for i, x := range q {
		if x != w {
			continue
		}
		q = append(q[:i], q[i+1:]...)
		if (i == 0 || tried) && i < len(q) {
			give(q[i])
		}
		break
	}
	if len(q) == 0 {
		delete(l.lines, w.key)
	} else {
		l.lines[w.key] = q
	}
}

func give(w *waiter) {
	select {
	case w.turn <- struct{}{}:
	default:
	}
}
