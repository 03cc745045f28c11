package gateway

import (
	"sync"
	"time"

	"github.com/idlegrid/idlegrid/internal/keys"
)

// health is a circuit breaker per provider. After Threshold consecutive
// failed jobs (an error, a lost connection — including heartbeat loss, which
// the hub reports as a lost connection —, a first-token stall or an invalid
// receipt) the breaker opens: the scheduler skips the provider for
// Cooldown. Then it is half-open: one request may try it; success closes
// the breaker, failure opens it for another Cooldown. Only failing
// providers have an entry, so the map stays as small as the trouble.
type health struct {
	threshold int
	cooldown  time.Duration
	now       func() time.Time

	mu sync.Mutex
	m  map[keys.PublicKey]*breaker
}

type breaker struct {
	fails     int       // consecutive failures
	openUntil time.Time // zero while fewer than threshold failures
	trial     bool      // half-open and its trial request is in flight
}

func newHealth(threshold int, cooldown time.Duration, now func() time.Time) *health {
	return &health{threshold: threshold, cooldown: cooldown, now: now, m: map[keys.PublicKey]*breaker{}}
}

// failing reports whether requests should avoid the provider now: its
// breaker is open, or half-open with the trial taken.
func (h *health) failing(k keys.PublicKey) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	b := h.m[k]
	if b == nil || b.openUntil.IsZero() {
		return false
	}
	return h.now().Before(b.openUntil) || b.trial
}

// dispatched notes that a job went to the provider: when its breaker is
// half-open, this job is the trial and others keep away until it ends.
func (h *health) dispatched(k keys.PublicKey) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if b := h.m[k]; b != nil && !b.openUntil.IsZero() {
		b.trial = true
	}
}

// success closes the provider's breaker.
func (h *health) success(k keys.PublicKey) {
	h.mu.Lock()
	delete(h.m, k)
	h.mu.Unlock()
}

// failure counts a failed job; the threshold-th in a row (or a failed
// trial) opens the breaker for the cool-down.
func (h *health) failure(k keys.PublicKey) {
	h.mu.Lock()
	defer h.mu.Unlock()
	b := h.m[k]
	if b == nil {
		b = &breaker{}
		h.m[k] = b
	}
	b.fails++
	b.trial = false
	if b.fails >= h.threshold {
		b.openUntil = h.now().Add(h.cooldown)
	}
}

// abandoned ends a job that proved nothing either way (the consumer went
// away, or the request itself was refused): a half-open breaker may try
// again with the next request.
func (h *health) abandoned(k keys.PublicKey) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if b := h.m[k]; b != nil {
		b.trial = false
	}
}
