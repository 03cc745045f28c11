package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/gateway"
	"github.com/idlegrid/idlegrid/internal/gateway/api/apitypes"
	"github.com/idlegrid/idlegrid/internal/gateway/client"
	"github.com/idlegrid/idlegrid/internal/node"
)

// OverheadConfig sizes the overhead benchmark.
type OverheadConfig struct {
	// Requests per latency measurement (per concurrency level and side).
	Requests int
	// Concurrency levels for the non-streaming latency comparison.
	Concurrency []int
	// Streams, StreamRate (tokens/s each) and StreamTokens size the relay
	// delay measurement.
	Streams, StreamTokens int
	StreamRate            float64
	// RPSDuration is how long the max-throughput run lasts per side.
	RPSDuration time.Duration
	// ReceiptSync is passed to the gateway ("disk" or "process").
	ReceiptSync string
	// Slots are the provider's slots (jobs at once) in the network measured
	// (default DefaultSlots); the relay measurement has at least one per
	// stream.
	Slots int
	// Peer runs the Portkey AI gateway in front of the same upstream in
	// the non-streaming comparison, when Node.js and npm are present.
	Peer bool
	Out  io.Writer
}

// DefaultOverhead is what `idlegrid bench overhead` runs.
func DefaultOverhead() OverheadConfig {
	return OverheadConfig{Requests: 2000, Concurrency: []int{1, 64}, Streams: 256, StreamTokens: 100, StreamRate: 50, RPSDuration: 5 * time.Second, Slots: DefaultSlots, Peer: true}
}

// Side is one target's latencies in a closed-loop run and the requests per
// second it completed.
type Side struct {
	Dist
	RPS float64
}

// Latency compares one measurement through the network with the baseline.
type Latency struct {
	Concurrency int
	Direct, Via Side
	// Proxy is the same requests through two bare reverse proxies
	// (net/http/httputil) chained in front of the simulator, in the same
	// process: what the network path's two extra hops (consumer → gateway
	// → agent → simulator, where the direct baseline has one) cost on this
	// machine with nothing else in them, for scale.
	Proxy Side
	// Peer is the same requests through the Portkey AI gateway (Node.js)
	// in front of the simulator; empty when Node is missing.
	Peer Side
	// Stages says where the Via requests spent their time.
	Stages StageShares
}

// Added is the difference of the q-quantiles (via − direct).
func (l Latency) Added(q float64) time.Duration { return l.Via.Q(q) - l.Direct.Q(q) }

// ProxyAdded is what the bare proxies add at the q-quantile (proxy − direct).
func (l Latency) ProxyAdded(q float64) time.Duration { return l.Proxy.Q(q) - l.Direct.Q(q) }

// table prints one concurrency level's targets as rows.
func (l Latency) table(out io.Writer) {
	fmt.Fprintf(out, "  %d client(s)\n  | target | requests/s | p50 | p90 | p99 | p99.9 |\n  |---|---|---|---|---|---|\n", l.Concurrency)
	row := func(name string, s Side) {
		if len(s.Dist) == 0 {
			return
		}
		fmt.Fprintf(out, "  | %s | %.0f | %s | %s | %s | %s |\n", name, s.RPS, ms(s.Q(.5)), ms(s.Q(.9)), ms(s.Q(.99)), ms(s.Q(.999)))
	}
	row("upstream directly", l.Direct)
	row("two bare reverse proxies", l.Proxy)
	row("Portkey "+PortkeyVersion, l.Peer)
	row("idlegrid (gateway+hub+agent)", l.Via)
}

// proxyChain puts hops bare reverse proxies (net/http/httputil, flushing
// every write so a stream stays a stream) in front of origin and returns
// the first one's URL and a function that closes them.
func proxyChain(origin string, hops int) (string, func()) {
	var servers []*httptest.Server
	for range hops {
		u, _ := url.Parse(origin)
		p := httputil.NewSingleHostReverseProxy(u)
		p.FlushInterval = -1
		hop := httptest.NewServer(p)
		servers = append(servers, hop)
		origin = hop.URL
	}
	return origin, func() {
		for _, s := range servers {
			s.Close()
		}
	}
}

// OverheadResult holds every figure.
type OverheadResult struct {
	NonStreaming []Latency
	// TTFT is the time to first token with one client: Direct and Via
	// stream Ollama's /api/chat; Peer is Portkey streaming OpenAI's
	// /v1/chat/completions (server-sent events), empty without the peer.
	TTFT Latency
	// TTFTOpenAI is the upstream's own OpenAI stream, the baseline of
	// TTFT.Peer; empty without the peer.
	TTFTOpenAI Side
	Relay      RelayResult
	// RelayBare is the same streams through two bare reverse proxies.
	RelayBare RelayResult
	RelayRate float64
	RPSDirect float64
	RPSVia    float64
}

const benchKey = "ig-bench-0123456789abcdefghijklmnop"

// Overhead measures what the gateway + hub + provider agent path adds to
// calling the simulator directly.
func Overhead(ctx context.Context, cfg OverheadConfig) (*OverheadResult, error) {
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	simCfg := sim.DefaultConfig()
	for i := range simCfg.Models {
		simCfg.Models[i].FirstToken, simCfg.Models[i].TokensPerSecond = 0, 0
	}
	s, err := sim.New(simCfg)
	if err != nil {
		return nil, err
	}
	simSrv := httptest.NewServer(sim.NewServer(s))
	defer simSrv.Close()
	model := simCfg.Models[0].Name

	b, err := node.OpenBackend(ctx, node.BackendOllama, simSrv.URL, nil)
	if err != nil {
		return nil, err
	}
	timed := newTimedBackend(b.Backend, cfg.StreamRate)
	slots := cfg.Slots
	if slots <= 0 {
		slots = DefaultSlots
	}
	stages := &stageLog{}
	n, stop, err := startOverheadNet(ctx, cfg, timed, slots, stages.record)
	if err != nil {
		return nil, err
	}
	defer stop()
	via := n.Gateway.URL()
	bare, closeBare := proxyChain(simSrv.URL, 2)
	defer closeBare()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024, MaxConnsPerHost: 0}}
	res := &OverheadResult{}
	out := cfg.Out

	body := func(stream bool, tokens int, prompt string) []byte {
		b, _ := json.Marshal(map[string]any{"model": model, "stream": stream, "messages": []map[string]string{{"role": "user", "content": prompt}},
			"options": map[string]any{"num_predict": tokens, "seed": 1, "temperature": 0}})
		return b
	}
	call := func(base string, b []byte) (time.Duration, error) {
		start := time.Now()
		req, _ := http.NewRequestWithContext(ctx, "POST", base+"/api/chat", bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+benchKey)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return 0, fmt.Errorf("%s: status %d", base, resp.StatusCode)
		}
		return time.Since(start), err
	}

	fmt.Fprintf(out, "non-streaming, OpenAI chat completions, 16-token answers from an instant upstream, %d requests per target and concurrency\n", cfg.Requests)
	var peer *portkeyPeer
	if cfg.Peer {
		peer, err = startPortkey(ctx, simSrv.URL, func(s string) { fmt.Fprintln(out, "  "+s) })
		switch {
		case errors.Is(err, errNoNode):
			fmt.Fprintf(out, "  no Portkey column: %v (it needs Node.js to run @portkey-ai/gateway@%s)\n", err, PortkeyVersion)
		case err != nil:
			return nil, err
		default:
			defer peer.Close()
		}
	}
	openai := func(i int) []byte {
		b, _ := json.Marshal(map[string]any{"model": model, "messages": []map[string]string{{"role": "user", "content": fmt.Sprintf("request %d", i%50)}},
			"max_tokens": 16, "seed": 1, "temperature": 0})
		return b
	}
	complete := func(base string, peer *portkeyPeer, b []byte) (time.Duration, error) {
		start := time.Now()
		req, _ := http.NewRequestWithContext(ctx, "POST", base+"/v1/chat/completions", bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+benchKey)
		req.Header.Set("Content-Type", "application/json")
		if peer != nil {
			peer.header(req.Header)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return 0, fmt.Errorf("%s: status %d: %.200s", base, resp.StatusCode, got)
		}
		return time.Since(start), err
	}
	for _, c := range cfg.Concurrency {
		l := Latency{Concurrency: c}
		targets := []struct {
			base string
			peer *portkeyPeer
			side *Side
		}{{simSrv.URL, nil, &l.Direct}, {bare, nil, &l.Proxy}, {via, nil, &l.Via}}
		if peer != nil {
			targets = append(targets[:2:2], struct {
				base string
				peer *portkeyPeer
				side *Side
			}{peer.URL, peer, &l.Peer}, targets[2])
		}
		for _, tg := range targets {
			// A quarter as many requests first, not measured: Node's JIT and
			// every side's connection pools warm up before the clock runs.
			do := func(i int) (time.Duration, error) { return complete(tg.base, tg.peer, openai(i)) }
			if _, err := runClosed(ctx, c, max(cfg.Requests/4, c), do); err != nil {
				return nil, err
			}
			if tg.side == &l.Via {
				stages.start()
			}
			side, err := runClosed(ctx, c, cfg.Requests, do)
			if err != nil {
				return nil, err
			}
			*tg.side = side
		}
		l.Stages = stageShares(stages.stop())
		res.NonStreaming = append(res.NonStreaming, l)
		l.table(out)
		fmt.Fprintln(out, l.Stages)
	}

	ttft := func(base string, b []byte) (time.Duration, error) {
		start := time.Now()
		req, _ := http.NewRequestWithContext(ctx, "POST", base+"/api/chat", bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+benchKey)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		r := bufio.NewReader(resp.Body)
		if _, err := r.ReadBytes('\n'); err != nil {
			return 0, err
		}
		d := time.Since(start)
		_, err = io.Copy(io.Discard, r)
		return d, err
	}
	res.TTFT.Concurrency = 1
	if res.TTFT.Direct, err = runClosed(ctx, 1, cfg.Requests/2, func(i int) (time.Duration, error) {
		return ttft(simSrv.URL, body(true, 16, fmt.Sprintf("ttft %d", i%50)))
	}); err != nil {
		return nil, err
	}
	if res.TTFT.Via, err = runClosed(ctx, 1, cfg.Requests/2, func(i int) (time.Duration, error) {
		return ttft(via, body(true, 16, fmt.Sprintf("ttft %d", i%50)))
	}); err != nil {
		return nil, err
	}
	line := fmt.Sprintf("time to first token, c=1: direct p50 %s p99 %s | via p50 %s p99 %s | added p50 %s p99 %s",
		ms(res.TTFT.Direct.Q(.5)), ms(res.TTFT.Direct.Q(.99)), ms(res.TTFT.Via.Q(.5)), ms(res.TTFT.Via.Q(.99)), ms(res.TTFT.Added(.5)), ms(res.TTFT.Added(.99)))
	if peer != nil {
		// Portkey speaks OpenAI's API only: its first token is the first
		// content event of an OpenAI stream, next to the upstream's own
		// OpenAI stream as its baseline.
		if res.TTFTOpenAI, err = runClosed(ctx, 1, cfg.Requests/2, openaiTTFT(ctx, client, simSrv.URL, nil, model)); err != nil {
			return nil, err
		}
		// Portkey's streaming path warms up first, as its non-streaming one
		// did; a Portkey that does not stream is said on the line, not fatal.
		viaPeer := openaiTTFT(ctx, client, peer.URL, peer, model)
		_, err := runClosed(ctx, 1, max(cfg.Requests/8, 1), viaPeer)
		if err == nil {
			res.TTFT.Peer, err = runClosed(ctx, 1, cfg.Requests/2, viaPeer)
		}
		if p, d := res.TTFT.Peer, res.TTFTOpenAI; err == nil {
			line += fmt.Sprintf(" | Portkey %s p50 %s p99 %s, added p50 %s p99 %s over the upstream's OpenAI stream (p50 %s p99 %s)", PortkeyVersion,
				ms(p.Q(.5)), ms(p.Q(.99)), ms(p.Q(.5)-d.Q(.5)), ms(p.Q(.99)-d.Q(.99)), ms(d.Q(.5)), ms(d.Q(.99)))
		} else {
			res.TTFT.Peer = Side{}
			line += fmt.Sprintf(" | Portkey %s: no time to first token (%v)", PortkeyVersion, err)
		}
	}
	fmt.Fprintln(out, line)

	for _, side := range []struct {
		base string
		dst  *float64
	}{{simSrv.URL, &res.RPSDirect}, {via, &res.RPSVia}} {
		rps, err := maxRPS(ctx, 64, cfg.RPSDuration, func(i int) error {
			_, err := call(side.base, body(false, 4, fmt.Sprintf("rps %d", i%50)))
			return err
		})
		if err != nil {
			return nil, err
		}
		*side.dst = rps
	}
	fmt.Fprintf(out, "max requests/s (64 clients, 4-token answers, instant upstream): direct %.0f | via %.0f (%.0f%%)\n",
		res.RPSDirect, res.RPSVia, 100*res.RPSVia/res.RPSDirect)
	// The relay streams all run at once: on a network with a slot for each.
	stop()
	rn, stopRelay, err := startOverheadNet(ctx, cfg, timed, max(slots, cfg.Streams), nil)
	if err != nil {
		return nil, err
	}
	defer stopRelay()
	if res.Relay, err = relayDelay(ctx, client, rn.Gateway.URL(), model, timed, cfg); err != nil {
		return nil, err
	}
	res.RelayRate = float64(cfg.Streams) * cfg.StreamRate
	fmt.Fprintf(out, "relay delay per token, %d streams × %.0f tokens/s = %.0f tokens/s (backend emission → consumer arrival):\n", cfg.Streams, cfg.StreamRate, res.RelayRate)
	st, all := res.Relay.Steady, res.Relay.All
	fmt.Fprintf(out, "  while all %d streams run: p50 %s p99 %s max %s (%d tokens)\n", cfg.Streams, ms(st.Q(.5)), ms(st.Q(.99)), ms(st.Max()), len(st))
	fmt.Fprintf(out, "  all tokens, streams starting and ending included: p50 %s p99 %s max %s (%d tokens)\n", ms(all.Q(.5)), ms(all.Q(.99)), ms(all.Max()), len(all))
	if res.RelayBare, err = bareRelay(ctx, client, timed, cfg); err != nil {
		return nil, err
	}
	bst := res.RelayBare.Steady
	fmt.Fprintf(out, "  the same streams through two bare proxy hops, nothing else: p50 %s p99 %s max %s (%d tokens)\n", ms(bst.Q(.5)), ms(bst.Q(.99)), ms(bst.Max()), len(bst))

	for _, t := range res.Targets(cfg) {
		fmt.Fprintln(out, t)
	}
	return res, nil
}

// openaiTTFT returns a call that streams one OpenAI chat completion
// (16 tokens) from base, through Portkey when p is set, and returns the
// time to its first event with a choice: the first token, or the end of an
// empty answer, as the first line of an /api/chat stream is. An answer
// that is not a stream of server-sent events is an error.
func openaiTTFT(ctx context.Context, hc *http.Client, base string, p *portkeyPeer, model string) func(i int) (time.Duration, error) {
	api := client.New(base, benchKey, client.WithHTTPClient(hc))
	header := http.Header{}
	if p != nil {
		p.header(header)
	}
	return func(i int) (time.Duration, error) {
		req := map[string]any{"model": model, "stream": true, "max_tokens": 16, "seed": 1, "temperature": 0,
			"messages": []map[string]string{{"role": "user", "content": fmt.Sprintf("ttft %d", i%50)}}}
		start := time.Now()
		resp, err := api.Do(ctx, http.MethodPost, "/v1/chat/completions", req, header)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || !strings.HasPrefix(ct, "text/event-stream") {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
			return 0, fmt.Errorf("%s: status %d, %q, not a stream: %s", base, resp.StatusCode, ct, b)
		}
		var first time.Duration
		err = client.ReadChatStream(resp.Body, client.DefaultMaxLine, func(ch apitypes.ChatChunk) error {
			if first == 0 && len(ch.Choices) > 0 {
				first = time.Since(start)
			}
			return nil
		}, resp.StatusCode, "")
		if err == nil && first == 0 {
			err = fmt.Errorf("%s: a stream without a choice", base)
		}
		return first, err
	}
}

// DefaultSlots is the bench network's provider slots unless configured:
// `idlegrid up`'s default, so that the figures are what up serves.
const DefaultSlots = 4

// startOverheadNet starts the network the bench measures, in a temporary
// directory, with the given provider slots; stop shuts it down and removes
// the directory (more than one call does nothing).
func startOverheadNet(ctx context.Context, cfg OverheadConfig, timed *timedBackend, slots int, onStages func(gateway.Stages)) (*node.Network, func(), error) {
	dir, err := os.MkdirTemp("", "idlegrid-bench-")
	if err != nil {
		return nil, nil, err
	}
	n, err := node.StartUp(ctx, node.UpConfig{Addr: "127.0.0.1:0", DataDir: dir, DevAPIKey: benchKey, Slots: slots, ReceiptSync: cfg.ReceiptSync,
		BackendOverride: &node.LocalBackend{Backend: timed, Description: "simulator"}, Gateway: gateway.Config{OnStages: onStages}})
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	var once sync.Once
	return n, func() {
		once.Do(func() {
			n.Shutdown(context.Background())
			os.RemoveAll(dir)
		})
	}, nil
}

// runClosed runs n calls with c workers and returns their latencies and
// the rate at which they completed.
func runClosed(ctx context.Context, c, n int, f func(i int) (time.Duration, error)) (Side, error) {
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr error
	var once sync.Once
	start := time.Now()
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				d, err := f(i)
				if err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				lat[i] = d
			}
		}()
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	return Side{Dist: NewDist(lat), RPS: float64(n) / time.Since(start).Seconds()}, firstErr
}

// maxRPS runs c closed-loop workers for d and returns completed requests/s.
func maxRPS(ctx context.Context, c int, d time.Duration, f func(i int) error) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var done, next atomic.Int64
	var wg sync.WaitGroup
	var firstErr error
	var once sync.Once
	start := time.Now()
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := f(int(next.Add(1))); err != nil {
					if ctx.Err() == nil {
						once.Do(func() { firstErr = err })
					}
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	if firstErr != nil && !errors.Is(firstErr, context.DeadlineExceeded) {
		return 0, firstErr
	}
	return float64(done.Load()) / time.Since(start).Seconds(), nil
}
