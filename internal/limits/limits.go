// Package limits protects a public gateway from clients that send too
// much: a token bucket and a cap on requests in flight per API key and per
// client IP (loopback addresses, the operator's own clients, are exempt from
// the per-IP limits). A refused request gets 429 with Retry-After and an
// error in the API's own format. Memory stays bounded: idle entries are
// dropped, and the tables have a maximum size.
package limits

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Config sets the limits; a zero rate or cap turns that limit off.
type Config struct {
	// KeyRate (requests per second) and KeyBurst bound each API key;
	// KeyConcurrent its requests in flight.
	KeyRate       float64
	KeyBurst      int
	KeyConcurrent int
	// IPRate, IPBurst and IPConcurrent do the same per client IP, except
	// loopback.
	IPRate       float64
	IPBurst      int
	IPConcurrent int
}

// Enabled reports whether any limit is on.
func (c Config) Enabled() bool {
	return c.KeyRate > 0 || c.KeyConcurrent > 0 || c.IPRate > 0 || c.IPConcurrent > 0
}

// maxEntries bounds each table; idleAfter is when an entry may go.
const (
	maxEntries = 100_000
	idleAfter  = 10 * time.Minute
)

type entry struct {
	bucket   *rate.Limiter
	inflight int
	seen     time.Time
}

// table is the state of one kind of client (keys or IPs).
type table struct {
	rate       rate.Limit
	burst, cap int
	what       string
	m          map[string]*entry
}

// Limiter applies Config.
type Limiter struct {
	mu     sync.Mutex
	keys   table
	ips    table
	now    func() time.Time
	sweepT time.Time
}

// New returns a Limiter for cfg.
func New(cfg Config) *Limiter {
	mk := func(r float64, burst, cap int, what string) table {
		lim := rate.Limit(r)
		if r <= 0 {
			lim = rate.Inf
		}
		if burst <= 0 {
			burst = max(1, int(math.Ceil(r)))
		}
		return table{rate: lim, burst: burst, cap: cap, what: what, m: map[string]*entry{}}
	}
	return &Limiter{keys: mk(cfg.KeyRate, cfg.KeyBurst, cfg.KeyConcurrent, "API key"), ips: mk(cfg.IPRate, cfg.IPBurst, cfg.IPConcurrent, "client address"), now: time.Now}
}

// refusal says why a request may not go now and when to retry.
type refusal struct {
	msg        string
	retryAfter time.Duration
}

// admit takes a token and a slot for the request's key and IP, or says
// why not; release frees the slots.
func (l *Limiter) admit(key, ip string) (release func(), r *refusal) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.sweep(now)
	var taken []*entry
	undo := func() {
		for _, e := range taken {
			e.inflight--
		}
	}
	for _, c := range []struct {
		t  *table
		id string
	}{{&l.keys, key}, {&l.ips, ip}} {
		if c.id == "" {
			continue
		}
		e := c.t.m[c.id]
		if e == nil {
			if len(c.t.m) >= maxEntries {
				undo()
				return nil, &refusal{msg: "The gateway is tracking too many clients right now.", retryAfter: time.Second}
			}
			e = &entry{bucket: rate.NewLimiter(c.t.rate, c.t.burst)}
			c.t.m[c.id] = e
		}
		e.seen = now
		if c.t.cap > 0 && e.inflight >= c.t.cap {
			undo()
			return nil, &refusal{msg: fmt.Sprintf("Too many requests in flight for this %s (at most %d at once).", c.t.what, c.t.cap), retryAfter: time.Second}
		}
		res := e.bucket.ReserveN(now, 1)
		if d := res.DelayFrom(now); !res.OK() || d > 0 {
			res.CancelAt(now)
			undo()
			return nil, &refusal{msg: fmt.Sprintf("Rate limit exceeded for this %s (%s requests per second, bursts of %d).", c.t.what, rateText(c.t.rate), c.t.burst),
				retryAfter: max(d, 100*time.Millisecond)}
		}
		e.inflight++
		taken = append(taken, e)
	}
	return func() {
		l.mu.Lock()
		undo()
		l.mu.Unlock()
	}, nil
}

func rateText(r rate.Limit) string { return strconv.FormatFloat(float64(r), 'f', -1, 64) }

// sweep drops entries idle for a while, at most once a minute.
func (l *Limiter) sweep(now time.Time) {
	if now.Sub(l.sweepT) < time.Minute {
		return
	}
	l.sweepT = now
	for _, t := range []*table{&l.keys, &l.ips} {
		for id, e := range t.m {
			if e.inflight == 0 && now.Sub(e.seen) > idleAfter {
				delete(t.m, id)
			}
		}
	}
}

// Wrap applies the limits to h; requests exempt reports are let through
// untouched (the provider WebSocket endpoint, say).
func (l *Limiter) Wrap(h http.Handler, exempt func(*http.Request) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if exempt != nil && exempt(r) {
			h.ServeHTTP(w, r)
			return
		}
		release, ref := l.admit(keyID(r), clientIP(r))
		if ref != nil {
			refuse(w, r, ref)
			return
		}
		defer release()
		h.ServeHTTP(w, r)
	})
}

// keyID is a hash of the request's bearer token ("" without one): the
// limiter never holds secrets.
func keyID(r *http.Request) string {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return ""
	}
	h := sha256.Sum256([]byte(tok))
	return string(h[:])
}

// clientIP is the peer's address; "" for loopback, which is not limited.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.IsLoopback() {
		return ""
	}
	return ip.String()
}

// refuse writes 429 in the error format of the API the request is for.
func refuse(w http.ResponseWriter, r *http.Request, ref *refusal) {
	secs := int(math.Ceil(ref.retryAfter.Seconds()))
	w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusTooManyRequests)
	msg := ref.msg + fmt.Sprintf(" Retry after %d s.", max(secs, 1))
	if strings.HasPrefix(r.URL.Path, "/api/") {
		json.NewEncoder(w).Encode(map[string]string{"error": msg})
		return
	}
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"message": msg, "type": "rate_limit_error", "param": nil, "code": "rate_limited"}})
}

// BodyDeadline gives a request's body timeout to arrive: a client that
// trickles its request cannot hold a connection for long. The deadline is
// lifted once the body is read, so answers stream for as long as they take
// (http.Server.ReadTimeout would instead cut long streams: its deadline
// also ends the server's background read of an idle connection). Requests
// exempt reports (WebSocket upgrades) are left alone.
func BodyDeadline(h http.Handler, timeout time.Duration, exempt func(*http.Request) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if (exempt != nil && exempt(r)) || r.Body == nil || r.Body == http.NoBody {
			h.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		if rc.SetReadDeadline(time.Now().Add(timeout)) != nil {
			h.ServeHTTP(w, r) // a writer without deadlines (tests): nothing to lift
			return
		}
		r.Body = &liftingBody{ReadCloser: r.Body, rc: rc}
		h.ServeHTTP(w, r)
	})
}

// liftingBody clears the read deadline when the body has been read to its
// end (not on an error: a body cut short by the deadline must stay cut, or
// the server would wait for the rest of it).
type liftingBody struct {
	io.ReadCloser
	rc     *http.ResponseController
	lifted bool
}

func (b *liftingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.lifted {
		b.lifted = true
		b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}
