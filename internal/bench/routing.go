package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/gateway"
	"github.com/idlegrid/idlegrid/internal/gateway/client"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/node"
	"github.com/idlegrid/idlegrid/internal/scheduler"
)

// RoutingConfig sizes the routing benchmark.
type RoutingConfig struct {
	// Speeds are the simulated providers' speeds relative to the base
	// rates (FirstToken, PromptRate, TokenRate): a provider at 0.5 takes
	// twice as long for everything.
	Speeds                []float64
	FirstToken            time.Duration
	PromptRate, TokenRate float64
	// Slots per provider and prefix cache size per provider, in tokens.
	Slots, CacheTokens int

	// Chat workload: Conversations concurrent clients, each running
	// conversations of Turns turns over its own ContextTokens-token system
	// prompt, with TurnTokens-token questions and AnswerTokens-token
	// answers, for ChatDuration per policy. Between turns a client thinks
	// for a random time (exponential, mean Think): without it every client
	// would keep its place in a fixed rotation and round robin would send
	// each conversation back to the same provider by accident.
	Conversations, Turns, ContextTokens, TurnTokens, AnswerTokens int
	Think, ChatDuration                                           time.Duration

	// No-reuse workload: Clients concurrent clients sending unique
	// PromptTokens-token prompts, for NoReuseDuration per policy.
	Clients, PromptTokens int
	NoReuseDuration       time.Duration

	Out io.Writer
}

// DefaultRouting is what `idlegrid bench routing` runs, in about 45 s.
//
// The sizes make prompt processing dominate a cache miss (1500 tokens at
// 10000 tokens/s is 150 ms at full speed, against 80 ms for a 16-token
// answer) and give each provider a cache that holds its share of the
// conversations (36 × about 1.8k tokens over 6 providers) but not all of
// them, which is the situation prefix-aware routing is for: spread evenly,
// every provider would need every conversation.
func DefaultRouting() RoutingConfig {
	return RoutingConfig{
		Speeds: []float64{1, 0.8, 0.6, 0.5, 0.4, 0.3}, FirstToken: 5 * time.Millisecond, PromptRate: 10_000, TokenRate: 200,
		Slots: 8, CacheTokens: 16_000,
		Conversations: 36, Turns: 6, ContextTokens: 1500, TurnTokens: 40, AnswerTokens: 16, Think: 50 * time.Millisecond, ChatDuration: 8 * time.Second,
		Clients: 24, PromptTokens: 300, NoReuseDuration: 5 * time.Second,
	}
}

// PolicyResult is one policy's run of one workload.
type PolicyResult struct {
	Policy scheduler.Policy
	// Requests completed in the measured time, and per second.
	Requests   int
	Throughput float64
	// CacheHitRate is the share of prompt tokens the providers' prefix
	// caches served.
	CacheHitRate float64
	Latency      Dist
}

// RoutingResult holds both workloads, each run under every policy.
type RoutingResult struct {
	Chat, NoReuse []PolicyResult
}

// routingPolicies are compared in this order; results index by policy.
var routingPolicies = []scheduler.Policy{scheduler.PolicyMarket, scheduler.PolicyRoundRobin, scheduler.PolicyLeastLoaded}

// Routing compares the marketplace policy with round robin and least
// loaded on the same simulated providers: a chat workload whose
// conversations reuse long prefixes, and one without any reuse. Each
// policy gets a fresh network, so caches start cold for all.
func Routing(ctx context.Context, cfg RoutingConfig) (*RoutingResult, error) {
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	out := cfg.Out
	speeds := make([]string, len(cfg.Speeds))
	for i, s := range cfg.Speeds {
		speeds[i] = fmt.Sprintf("%.2f", s)
	}
	fmt.Fprintf(out, "%d simulated providers at speeds %s × (%s to first token, %.0f prompt tokens/s, %.0f tokens/s), %d slots and a %d-token prefix cache each\n",
		len(cfg.Speeds), strings.Join(speeds, " "), cfg.FirstToken, cfg.PromptRate, cfg.TokenRate, cfg.Slots, cfg.CacheTokens)
	res := &RoutingResult{}
	fmt.Fprintf(out, "(a) shared-prefix chat: %d concurrent conversations, each on its own %d-token context, %d turns of %d tokens, %d-token answers, %s mean think time, %s per policy\n",
		cfg.Conversations, cfg.ContextTokens, cfg.Turns, cfg.TurnTokens, cfg.AnswerTokens, cfg.Think, cfg.ChatDuration)
	for _, p := range routingPolicies {
		r, err := runPolicy(ctx, cfg, p, cfg.ChatDuration, cfg.Conversations, chatClient(cfg))
		if err != nil {
			return nil, fmt.Errorf("chat workload, %s: %w", p, err)
		}
		res.Chat = append(res.Chat, r)
		printPolicy(out, r)
	}
	fmt.Fprintf(out, "  market vs round-robin: %.2f× throughput, %.2f× cache-hit rate (targets ≥ 1.5×, ≥ 3×)\n",
		res.chatThroughputRatio(), res.chatHitRatio())
	fmt.Fprintf(out, "(b) no reuse: %d concurrent clients, unique %d-token prompts, %d-token answers, %s per policy\n",
		cfg.Clients, cfg.PromptTokens, cfg.AnswerTokens, cfg.NoReuseDuration)
	for _, p := range routingPolicies {
		r, err := runPolicy(ctx, cfg, p, cfg.NoReuseDuration, cfg.Clients, noReuseClient(cfg))
		if err != nil {
			return nil, fmt.Errorf("no-reuse workload, %s: %w", p, err)
		}
		res.NoReuse = append(res.NoReuse, r)
		printPolicy(out, r)
	}
	fmt.Fprintf(out, "  market vs least-loaded: %.3f× throughput (target ≥ 0.95×)\n", res.noReuseRatio())
	return res, nil
}

func (cfg *RoutingConfig) check() error {
	switch {
	case len(cfg.Speeds) < 2:
		return errors.New("routing benchmark: want at least two providers")
	case cfg.Slots <= 0 || cfg.Conversations <= 0 || cfg.Clients <= 0 || cfg.Turns <= 0 || cfg.AnswerTokens <= 0:
		return errors.New("routing benchmark: slots, conversations, clients, turns and answer tokens must be positive")
	case cfg.ChatDuration <= 0 || cfg.NoReuseDuration <= 0:
		return errors.New("routing benchmark: durations must be positive")
	case cfg.PromptRate < 0 || cfg.TokenRate < 0 || cfg.Think < 0 || cfg.CacheTokens < 0 || cfg.ContextTokens < 0 || cfg.TurnTokens < 0 || cfg.PromptTokens < 0:
		return errors.New("routing benchmark: negative rate or size")
	}
	for _, s := range cfg.Speeds {
		if !(s > 0) {
			return fmt.Errorf("routing benchmark: speed %v: want a positive number", s)
		}
	}
	return nil
}

func printPolicy(out io.Writer, r PolicyResult) {
	fmt.Fprintf(out, "  %-13s %7.1f req/s  cache hits %5.1f%%  latency p50 %s p99 %s  (%d requests)\n",
		r.Policy, r.Throughput, 100*r.CacheHitRate, ms(r.Latency.Q(.5)), ms(r.Latency.Q(.99)), r.Requests)
}

func (r *RoutingResult) chatThroughputRatio() float64 {
	return ratio(r.Chat[0].Throughput, r.Chat[1].Throughput)
}

func (r *RoutingResult) chatHitRatio() float64 {
	return ratio(r.Chat[0].CacheHitRate, r.Chat[1].CacheHitRate)
}

func (r *RoutingResult) noReuseRatio() float64 {
	return ratio(r.NoReuse[0].Throughput, r.NoReuse[2].Throughput)
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// Met reports whether the marketplace policy met the targets.
func (r *RoutingResult) Met() bool {
	return r.chatThroughputRatio() >= 1.5 && r.chatHitRatio() >= 3 && r.noReuseRatio() >= 0.95
}

// Summary is the one-line result.
func (r *RoutingResult) Summary() string {
	verdict := "targets met"
	if !r.Met() {
		verdict = "TARGETS MISSED"
	}
	return fmt.Sprintf("routing: shared-prefix chat %.1f req/s, %.2f× round-robin throughput and %.2f× its cache-hit rate (%.0f%% vs %.0f%%); no reuse %.1f req/s, %.3f× least-loaded; %s (≥ 1.5×, ≥ 3×, ≥ 0.95×)",
		r.Chat[0].Throughput, r.chatThroughputRatio(), r.chatHitRatio(), 100*r.Chat[0].CacheHitRate, 100*r.Chat[1].CacheHitRate,
		r.NoReuse[0].Throughput, r.noReuseRatio(), verdict)
}

// routingNet is a gateway with simulator providers, in this process.
type routingNet struct {
	dir       string
	gw        *node.Gateway
	providers []*node.Provider
	sims      []*sim.Sim
}

func startRoutingNet(ctx context.Context, cfg RoutingConfig, policy scheduler.Policy) (n *routingNet, err error) {
	dir, err := os.MkdirTemp("", "idlegrid-bench-routing-")
	if err != nil {
		return nil, err
	}
	n = &routingNet{dir: dir}
	defer func() {
		if err != nil {
			n.close()
		}
	}()
	n.gw, err = node.StartGateway(ctx, node.GatewayConfig{Addr: "127.0.0.1:0", DataDir: dir, ReceiptSync: "process",
		Gateway: gateway.Config{Policy: policy, MaxQueued: 1 << 16}})
	if err != nil {
		return n, err
	}
	consumer, err := keys.Generate()
	if err != nil {
		return n, err
	}
	if _, err := n.gw.Store.EnsureAPIKey(ctx, benchKey, "bench", consumer.Public().Address()); err != nil {
		return n, err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for i, speed := range cfg.Speeds {
		mc := sim.DefaultConfig().Models[0]
		mc.FirstToken = time.Duration(float64(cfg.FirstToken) / speed)
		mc.PromptTokensPerSecond, mc.TokensPerSecond = cfg.PromptRate*speed, cfg.TokenRate*speed
		mc.PrefixCacheTokens, mc.IgnoreEOS = cfg.CacheTokens, true
		s, err := sim.New(sim.Config{Models: []sim.ModelConfig{mc}})
		if err != nil {
			return n, err
		}
		n.sims = append(n.sims, s)
		p, err := node.StartProvider(node.ProviderConfig{Gateway: n.gw.URL(), KeyFile: filepath.Join(dir, fmt.Sprintf("provider-%d.key", i)),
			Backend: &node.LocalBackend{Backend: s, Description: "simulator"}, Slots: cfg.Slots})
		if err != nil {
			return n, err
		}
		n.providers = append(n.providers, p)
		if err := p.WaitConnected(wctx); err != nil {
			return n, err
		}
	}
	for len(n.gw.Hub.Snapshot()) < len(cfg.Speeds) {
		select {
		case <-wctx.Done():
			return n, errors.New("the providers did not all become routable")
		case <-time.After(10 * time.Millisecond):
		}
	}
	return n, nil
}

func (n *routingNet) close() {
	for _, p := range n.providers {
		p.Stop()
	}
	if n.gw != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		n.gw.Shutdown(ctx)
		cancel()
	}
	os.RemoveAll(n.dir)
}

// cacheHitRate is the share of prompt tokens served from the providers'
// prefix caches.
func (n *routingNet) cacheHitRate() float64 {
	var total sim.CacheStats
	for _, s := range n.sims {
		st := s.CacheStats()
		total.PromptTokens += st.PromptTokens
		total.CachedTokens += st.CachedTokens
	}
	return total.HitRate()
}

// loop runs requests in a closed loop until ctx ends, calling done after
// each completed one.
type loop func(ctx context.Context, id int, c *client.Client, done func(time.Duration)) error

func runPolicy(ctx context.Context, cfg RoutingConfig, policy scheduler.Policy, d time.Duration, clients int, run loop) (PolicyResult, error) {
	n, err := startRoutingNet(ctx, cfg, policy)
	if err != nil {
		return PolicyResult{}, err
	}
	defer n.close()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	defer hc.CloseIdleConnections()
	api := client.New(n.gw.URL(), benchKey, client.WithHTTPClient(hc))
	rctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		mu       sync.Mutex
		lat      []time.Duration
		wg       sync.WaitGroup
		firstErr error
	)
	start := time.Now()
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := run(rctx, i, api, func(l time.Duration) {
				mu.Lock()
				lat = append(lat, l)
				mu.Unlock()
			})
			if err != nil && rctx.Err() == nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				cancel()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return PolicyResult{}, firstErr
	}
	if err := ctx.Err(); err != nil {
		return PolicyResult{}, err
	}
	return PolicyResult{Policy: policy, Requests: len(lat), Throughput: float64(len(lat)) / elapsed.Seconds(),
		CacheHitRate: n.cacheHitRate(), Latency: NewDist(lat)}, nil
}

// chatClient runs conversations: each on a fresh context of its own, turn
// after turn, every turn sending the whole history back.
func chatClient(cfg RoutingConfig) loop {
	return func(ctx context.Context, id int, c *client.Client, done func(time.Duration)) error {
		rng := rand.New(rand.NewPCG(uint64(id), 1))
		for ctx.Err() == nil {
			msgs := []chatMessage{{Role: "system", Content: words(rng, cfg.ContextTokens)}}
			for turn := 0; turn < cfg.Turns && ctx.Err() == nil; turn++ {
				msgs = append(msgs, chatMessage{Role: "user", Content: words(rng, cfg.TurnTokens)})
				start := time.Now()
				answer, err := chat(ctx, c, msgs, cfg.AnswerTokens)
				if err != nil {
					return err
				}
				done(time.Since(start))
				msgs = append(msgs, chatMessage{Role: "assistant", Content: answer})
				if err := think(ctx, rng, cfg.Think); err != nil {
					return nil
				}
			}
		}
		return nil
	}
}

// think waits an exponentially distributed time of the given mean (capped
// at five times it), or until ctx ends.
func think(ctx context.Context, rng *rand.Rand, mean time.Duration) error {
	if mean <= 0 {
		return ctx.Err()
	}
	d := time.Duration(min(rng.ExpFloat64(), 5) * float64(mean))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// noReuseClient sends unique single-message prompts.
func noReuseClient(cfg RoutingConfig) loop {
	return func(ctx context.Context, id int, c *client.Client, done func(time.Duration)) error {
		rng := rand.New(rand.NewPCG(uint64(id), 2))
		for ctx.Err() == nil {
			start := time.Now()
			if _, err := chat(ctx, c, []chatMessage{{Role: "user", Content: words(rng, cfg.PromptTokens)}}, cfg.AnswerTokens); err != nil {
				return err
			}
			done(time.Since(start))
		}
		return nil
	}
}

// words is n random words; the simulator counts each as one token.
func words(rng *rand.Rand, n int) string {
	var b strings.Builder
	for range n {
		fmt.Fprintf(&b, " w%d", rng.IntN(1_000_000))
	}
	return b.String()
}

type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// chat sends a non-streaming chat completion and returns the answer; a
// request cut by the end of the run returns ctx's error.
func chat(ctx context.Context, c *client.Client, msgs []chatMessage, maxTokens int) (string, error) {
	out, err := c.Chat(ctx, map[string]any{"model": "sim", "messages": msgs, "max_tokens": maxTokens, "temperature": 0})
	if err != nil {
		return "", err
	}
	if len(out.Choices) != 1 {
		return "", fmt.Errorf("unexpected response: %d choices", len(out.Choices))
	}
	return out.Choices[0].Message.Text(), nil
}
