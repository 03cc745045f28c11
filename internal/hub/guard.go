package hub

import (
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/idlegrid/idlegrid/internal/limits"
)

// Guard limits provider connection attempts per client address (an IPv4
// address, or an IPv6 /64, the block one host or subscriber is given): a
// token bucket for handshakes, and a ban after repeated failed handshakes (bad
// signatures, wrong chain, garbage), so that nobody can make the gateway
// verify signatures or hold WebSockets at will. Loopback is exempt unless
// GuardLoopback is set (an operator's own providers).
type Guard struct {
	// Rate and Burst bound handshakes per address (default 2/s, burst 10).
	Rate  float64
	Burst int
	// MaxFailures failed handshakes within FailureWindow ban the address
	// for BanFor (defaults 10, 10 min, 10 min).
	MaxFailures   int
	FailureWindow time.Duration
	BanFor        time.Duration
	// Loopback applies the guard to loopback addresses too.
	Loopback bool

	mu    sync.Mutex
	addrs map[string]*guarded
	now   func() time.Time
}

type guarded struct {
	bucket      *rate.Limiter
	failures    []time.Time
	bannedUntil time.Time
	seen        time.Time
}

// maxGuarded bounds the table; past it, idle entries are dropped first.
const maxGuarded = 100_000

func (g *Guard) defaults() {
	if g.Rate <= 0 {
		g.Rate = 2
	}
	if g.Burst <= 0 {
		g.Burst = 10
	}
	if g.MaxFailures <= 0 {
		g.MaxFailures = 10
	}
	if g.FailureWindow <= 0 {
		g.FailureWindow = 10 * time.Minute
	}
	if g.BanFor <= 0 {
		g.BanFor = 10 * time.Minute
	}
	if g.now == nil {
		g.now = time.Now
	}
	if g.addrs == nil {
		g.addrs = map[string]*guarded{}
	}
}

// addr is the guarded key of a request's peer; "" when it is not guarded.
func (g *Guard) addr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if ip.IsLoopback() && !g.Loopback {
		return ""
	}
	return limits.AddressBlock(ip)
}

// allow reports whether a handshake from r may start, and if not for how
// long to wait.
func (g *Guard) allow(r *http.Request) (bool, time.Duration) {
	if g == nil {
		return true, 0
	}
	a := g.addr(r)
	if a == "" {
		return true, 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.defaults()
	now := g.now()
	e := g.addrs[a]
	if e == nil {
		if len(g.addrs) >= maxGuarded {
			g.evict(now)
		}
		e = &guarded{bucket: rate.NewLimiter(rate.Limit(g.Rate), g.Burst)}
		g.addrs[a] = e
	}
	e.seen = now
	if now.Before(e.bannedUntil) {
		return false, e.bannedUntil.Sub(now)
	}
	if !e.bucket.AllowN(now, 1) {
		return false, time.Second
	}
	return true, 0
}

// failed records a failed handshake from r, banning its address after
// MaxFailures within FailureWindow.
func (g *Guard) failed(r *http.Request) {
	if g == nil {
		return
	}
	a := g.addr(r)
	if a == "" {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.defaults()
	now := g.now()
	e := g.addrs[a]
	if e == nil {
		return
	}
	kept := e.failures[:0]
	for _, t := range e.failures {
		if now.Sub(t) < g.FailureWindow {
			kept = append(kept, t)
		}
	}
	e.failures = append(kept, now)
	if len(e.failures) >= g.MaxFailures {
		e.bannedUntil, e.failures = now.Add(g.BanFor), nil
	}
}

// evict drops entries neither banned nor seen for a while, or, if none,
// every unbanned entry.
func (g *Guard) evict(now time.Time) {
	for a, e := range g.addrs {
		if now.After(e.bannedUntil) && now.Sub(e.seen) > time.Minute {
			delete(g.addrs, a)
		}
	}
	if len(g.addrs) >= maxGuarded {
		for a, e := range g.addrs {
			if now.After(e.bannedUntil) {
				delete(g.addrs, a)
			}
		}
	}
}
