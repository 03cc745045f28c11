// Package limits protects a public gateway from clients that send too
// much: a token bucket and a cap on requests in flight per API key and per
// client address (an IPv4 address or an IPv6 /64; loopback addresses, the
// operator's own clients, are exempt from the per-address limits). Only
// API keys the gateway recognises get an entry. A refused request gets 429
// with Retry-After and an error in the API's own format. Memory stays
// bounded: idle entries are dropped, and a full table makes room by
// forgetting its least recently seen idle entry.
package limits

import (
	"container/list"
	"context"
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
	id       string
	bucket   *rate.Limiter
	inflight int
	seen     time.Time
}

// table is the state of one kind of client (keys or addresses), in order
// of last use: when it is full, the least recently seen idle entry makes
// room, so that no client can fill a table others need.
type table struct {
	rate       rate.Limit
	burst, cap int
	what       string
	m          map[string]*list.Element // of *entry
	lru        list.List                // front: most recently seen
}

// get returns id's entry, making one (and room for it) if needed; nil
// when every entry is in flight.
func (t *table) get(id string, now time.Time) *entry {
	if el := t.m[id]; el != nil {
		t.lru.MoveToFront(el)
		e := el.Value.(*entry)
		e.seen = now
		return e
	}
	if len(t.m) >= maxEntries && !t.evictOne() {
		return nil
	}
	e := &entry{id: id, bucket: rate.NewLimiter(t.rate, t.burst), seen: now}
	t.m[id] = t.lru.PushFront(e)
	return e
}

// evictScan bounds how far eviction looks for an idle entry.
const evictScan = 64

// evictOne drops the least recently seen entry with nothing in flight.
func (t *table) evictOne() bool {
	el := t.lru.Back()
	for range evictScan {
		if el == nil {
			return false
		}
		if e := el.Value.(*entry); e.inflight == 0 {
			t.lru.Remove(el)
			delete(t.m, e.id)
			return true
		}
		el = el.Prev()
	}
	return false
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
	l := &Limiter{now: time.Now}
	set := func(t *table, r float64, burst, cap int, what string) {
		t.rate = rate.Limit(r)
		if r <= 0 {
			t.rate = rate.Inf
		}
		if burst <= 0 {
			burst = max(1, int(math.Ceil(r)))
		}
		t.burst, t.cap, t.what, t.m = burst, cap, what, map[string]*list.Element{}
	}
	set(&l.keys, cfg.KeyRate, cfg.KeyBurst, cfg.KeyConcurrent, "API key")
	set(&l.ips, cfg.IPRate, cfg.IPBurst, cfg.IPConcurrent, "client address")
	return l
}

// refusal says why a request may not go now and when to retry.
type refusal struct {
	msg        string
	retryAfter time.Duration
}

var tooManyClients = &refusal{msg: "The gateway is tracking too many clients right now.", retryAfter: time.Second}

// check says whether a request from address ip would be refused now,
// without taking anything or making any entry.
func (l *Limiter) check(ip string) *refusal {
	if ip == "" {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	el := l.ips.m[ip]
	if el == nil {
		return nil
	}
	e, now := el.Value.(*entry), l.now()
	if l.ips.cap > 0 && e.inflight >= l.ips.cap {
		return l.ips.busy()
	}
	if e.bucket.TokensAt(now) < 1 {
		return l.ips.limited(time.Duration(float64(time.Second) * (1 - e.bucket.TokensAt(now)) / float64(l.ips.rate)))
	}
	return nil
}

func (t *table) busy() *refusal {
	return &refusal{msg: fmt.Sprintf("Too many requests in flight for this %s (at most %d at once).", t.what, t.cap), retryAfter: time.Second}
}

func (t *table) limited(d time.Duration) *refusal {
	return &refusal{msg: fmt.Sprintf("Rate limit exceeded for this %s (%s requests per second, bursts of %d).", t.what, rateText(t.rate), t.burst),
		retryAfter: max(d, 100*time.Millisecond)}
}

// admit takes a token and a slot for the request's key and address
// (either may be "": not limited), all or nothing, or says why not;
// release frees the slots.
func (l *Limiter) admit(key, ip string) (release func(), r *refusal) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.sweep(now)
	var taken []*entry
	var reserved []*rate.Reservation
	undo := func() {
		for _, e := range taken {
			e.inflight--
		}
		for _, res := range reserved {
			res.CancelAt(now)
		}
	}
	for _, c := range []struct {
		t  *table
		id string
	}{{&l.keys, key}, {&l.ips, ip}} {
		if c.id == "" {
			continue
		}
		e := c.t.get(c.id, now)
		if e == nil {
			undo()
			return nil, tooManyClients
		}
		if c.t.cap > 0 && e.inflight >= c.t.cap {
			undo()
			return nil, c.t.busy()
		}
		res := e.bucket.ReserveN(now, 1)
		if d := res.DelayFrom(now); !res.OK() || d > 0 {
			res.CancelAt(now)
			undo()
			return nil, c.t.limited(d)
		}
		e.inflight++
		taken = append(taken, e)
		reserved = append(reserved, res)
	}
	return func() {
		l.mu.Lock()
		for _, e := range taken {
			e.inflight--
		}
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
		for el := t.lru.Back(); el != nil; {
			e, prev := el.Value.(*entry), el.Prev()
			if now.Sub(e.seen) <= idleAfter {
				break // the rest were seen later
			}
			if e.inflight == 0 {
				t.lru.Remove(el)
				delete(t.m, e.id)
			}
			el = prev
		}
	}
}

// Known reports whether token is an API key the gateway accepts. The
// limiter keeps state only for known keys: a made-up token gets none, so
// nobody can fill the key table with tokens of their own.
type Known func(ctx context.Context, token string) bool

// Wrap applies the limits to h; requests exempt reports are let through
// untouched (the provider WebSocket endpoint, say). A request's address is
// checked first; only then is its bearer token looked up with known, and
// the per-key limits apply to known keys alone (nil known: no per-key
// limits). Unknown tokens pass on to h, which refuses them.
func (l *Limiter) Wrap(h http.Handler, exempt func(*http.Request) bool, known Known) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if exempt != nil && exempt(r) {
			h.ServeHTTP(w, r)
			return
		}
		ip := clientIP(r)
		if ref := l.check(ip); ref != nil {
			refuse(w, r, ref)
			return
		}
		key := ""
		if tok := bearer(r); tok != "" && known != nil && known(r.Context(), tok) {
			key = keyID(tok)
		}
		release, ref := l.admit(key, ip)
		if ref != nil {
			refuse(w, r, ref)
			return
		}
		defer release()
		h.ServeHTTP(w, r)
	})
}

// bearer is the request's bearer token ("" without one).
func bearer(r *http.Request) string {
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return strings.TrimSpace(tok)
}

// keyID is a hash of a bearer token: the limiter never holds secrets.
func keyID(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return string(h[:])
}

// clientIP is the key of the peer's address: the IPv4 address or the IPv6
// /64 (AddressBlock); "" for loopback, which is not limited.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.IsLoopback() {
		return ""
	}
	return AddressBlock(ip)
}

// AddressBlock is the key by which per-address limits count ip: the IPv4
// address itself, or the IPv6 /64 it is in (one host or subscriber
// typically holds a whole /64, so limits per IPv6 address would be none).
func AddressBlock(ip net.IP) string {
	if v4 := ip.To4(); v4 != nil {
		return v4.String()
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
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
