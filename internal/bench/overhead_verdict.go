package bench

import (
	"fmt"
	"strings"
	"time"
)

// The first targets.
const (
	targetAddedP99 = time.Millisecond     // added p99, non-streaming, one client
	targetRelayMax = 5 * time.Millisecond // relay delay, 256 streams × 50 tokens/s
)

// Targets says, for each first target this run measured, whether the
// network met it, next to what two bare proxy hops did in the same run:
// a target that the bare hops miss cannot be met on this machine by any
// path with as many hops.
func (r *OverheadResult) Targets(cfg OverheadConfig) []string {
	verdict := func(got, bare, target time.Duration) string {
		met := "not met"
		if got <= target {
			met = "met"
		}
		bareMet := "misses it too"
		if bare <= target {
			bareMet = "meets it"
		}
		return fmt.Sprintf("%s (%s; two bare proxy hops: %s, %s)", met, ms(got), ms(bare), bareMet)
	}
	var out []string
	for _, l := range r.NonStreaming {
		if l.Concurrency == 1 {
			out = append(out, fmt.Sprintf("target: added p99 ≤ %s with one client: %s", ms(targetAddedP99),
				verdict(l.Added(.99), l.ProxyAdded(.99), targetAddedP99)))
		}
	}
	out = append(out, r.Saturation())
	if cfg.Streams == 256 && cfg.StreamRate == 50 {
		out = append(out, fmt.Sprintf("target: no relay delay above %s at 256 streams × 50 tokens/s: %s", ms(targetRelayMax),
			verdict(r.Relay.Steady.Max(), r.RelayBare.Steady.Max(), targetRelayMax)))
	}
	return out
}

// The saturation targets (issue 20), ratios within one run.
const (
	targetSpread    = 3.0 // p90 ≤ 3× its own p50 at the highest concurrency
	targetPeerRPS   = 1.5 // requests/s ≥ 1.5× the peer's at the highest concurrency
	targetProxyTail = 2.5 // one client: added p99 ≤ 2.5× the two bare proxies'
)

// Saturation is the one-line verdict on the saturation targets: at the
// highest concurrency measured, p99 no worse than the peer's, p90 within 3×
// its own p50 and 1.5× the peer's requests/s; with one client, added p99
// within 2.5× what two bare proxies add. Targets that need a measurement
// this run lacks (no peer, no one-client run) are named as not measured.
func (r *OverheadResult) Saturation() string {
	var one, top *Latency
	for i := range r.NonStreaming {
		l := &r.NonStreaming[i]
		if l.Concurrency == 1 {
			one = l
		}
		if top == nil || l.Concurrency > top.Concurrency {
			top = l
		}
	}
	var parts []string
	met, measured := 0, 0
	check := func(ok bool, format string, args ...any) {
		measured++
		verdict := "not met"
		if ok {
			met++
			verdict = "met"
		}
		parts = append(parts, fmt.Sprintf(format, args...)+" "+verdict)
	}
	if top != nil && top.Concurrency > 1 {
		v, p := top.Via, top.Peer
		if len(p.Dist) > 0 {
			check(v.Q(.99) <= p.Q(.99), "c=%d p99 %s vs Portkey %s:", top.Concurrency, ms(v.Q(.99)), ms(p.Q(.99)))
		} else {
			parts = append(parts, "no Portkey run: its targets not measured")
		}
		check(float64(v.Q(.9)) <= targetSpread*float64(v.Q(.5)), "p90 %s ≤ %.0f× p50 %s:", ms(v.Q(.9)), targetSpread, ms(v.Q(.5)))
		if len(p.Dist) > 0 {
			check(v.RPS >= targetPeerRPS*p.RPS, "%.0f requests/s ≥ %.1f× Portkey's %.0f:", v.RPS, targetPeerRPS, p.RPS)
		}
	}
	if one != nil {
		check(float64(one.Added(.99)) <= targetProxyTail*float64(one.ProxyAdded(.99)), "c=1 added p99 %s ≤ %.1f× bare proxies' %s:",
			ms(one.Added(.99)), targetProxyTail, ms(one.ProxyAdded(.99)))
	}
	return fmt.Sprintf("verdict: %d of %d saturation targets met (%s)", met, measured, strings.Join(parts, "; "))
}

// Summary is the one-line result.
func (r *OverheadResult) Summary() string {
	var parts []string
	for _, l := range r.NonStreaming {
		parts = append(parts, fmt.Sprintf("added c=%d p50 %s p99 %s (two bare proxy hops: %s / %s)", l.Concurrency, ms(l.Added(.5)), ms(l.Added(.99)),
			ms(l.ProxyAdded(.5)), ms(l.ProxyAdded(.99))))
	}
	ttft := fmt.Sprintf("added TTFT p50 %s p99 %s", ms(r.TTFT.Added(.5)), ms(r.TTFT.Added(.99)))
	if p, d := r.TTFT.Peer, r.TTFTOpenAI; len(p.Dist) > 0 && len(d.Dist) > 0 {
		ttft += fmt.Sprintf(" (Portkey added p50 %s p99 %s)", ms(p.Q(.5)-d.Q(.5)), ms(p.Q(.99)-d.Q(.99)))
	}
	parts = append(parts, ttft,
		fmt.Sprintf("relay @%.0f tok/s steady p50 %s p99 %s max %s (all tokens p99 %s max %s; two bare proxy hops p99 %s max %s)", r.RelayRate,
			ms(r.Relay.Steady.Q(.5)), ms(r.Relay.Steady.Q(.99)), ms(r.Relay.Steady.Max()), ms(r.Relay.All.Q(.99)), ms(r.Relay.All.Max()),
			ms(r.RelayBare.Steady.Q(.99)), ms(r.RelayBare.Steady.Max())),
		fmt.Sprintf("rps via %.0f / direct %.0f", r.RPSVia, r.RPSDirect))
	return "overhead: " + strings.Join(parts, "; ")
}
