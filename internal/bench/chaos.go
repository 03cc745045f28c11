package bench

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/gateway"
	"github.com/idlegrid/idlegrid/internal/gateway/api/apitypes"
	"github.com/idlegrid/idlegrid/internal/gateway/client"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/node"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/receipt"
	"github.com/idlegrid/idlegrid/internal/store"
)

// ChaosConfig sizes the chaos benchmark.
type ChaosConfig struct {
	// Providers simulated providers with Slots slots each, FirstToken to
	// the first token and TokenRate tokens/s.
	Providers, Slots int
	FirstToken       time.Duration
	TokenRate        float64
	// Clients send streamed requests back to back, each for AnswerTokens
	// tokens, for Duration. Every KillEvery one provider (in turn) is
	// killed — its connection dropped mid-answer — and restarted
	// RestartAfter later.
	Clients, AnswerTokens   int
	Duration                time.Duration
	KillEvery, RestartAfter time.Duration
	// CheckpointEvery is the providers' checkpoint interval (0: the
	// agent's default; time.Nanosecond: every chunk).
	CheckpointEvery time.Duration
	Out             io.Writer
}

// DefaultChaos is what `idlegrid bench chaos` runs: 30 s, three kills.
// `--duration 2m` is the full run.
func DefaultChaos() ChaosConfig {
	return ChaosConfig{Providers: 4, Slots: 8, FirstToken: 20 * time.Millisecond, TokenRate: 100,
		Clients: 16, AnswerTokens: 60, Duration: 30 * time.Second, KillEvery: 10 * time.Second, RestartAfter: 3 * time.Second}
}

// ChaosResult is what the run measured.
type ChaosResult struct {
	Requests, Completed, Failed int
	// Failures counts the failed requests by their error (truncated).
	Failures map[string]int
	// WrongText answers differ from the uninterrupted answer.
	WrongText int
	// Continued answers were finished by another provider than the one
	// that began them.
	Continued int
	Kills     int
	TTFT      Dist
	// Tokens delivered to consumers; Receipted of them are in a receipt of
	// the provider that generated them (its final receipt, or the last
	// checkpoint of a provider killed mid-answer); Unbilled were relayed
	// after a killed provider's last checkpoint (no receipt, not paid for).
	// DoubleBilled tokens are in two receipts, Misattributed receipts
	// match no tokens of their answer: both must be 0.
	Delivered, Receipted, Unbilled, DoubleBilled, Misattributed int
	// InReceipts sums the completion tokens of the stored receipts of the
	// completed requests; FullyBilled requests have receipts that add up
	// to every token they delivered; Partial receipts came from a killed
	// provider's checkpoint.
	InReceipts, FullyBilled, Partial int
	// BillingErrors are requests whose receipts do not add up.
	BillingErrors int
}

// OK reports whether every request completed correctly and billing held.
func (r *ChaosResult) OK() bool {
	return r.Completed == r.Requests && r.WrongText == 0 && r.DoubleBilled == 0 && r.Misattributed == 0 && r.BillingErrors == 0
}

// Summary is the one-line result.
func (r *ChaosResult) Summary() string {
	verdict := "all checks passed"
	if !r.OK() {
		verdict = "CHECKS FAILED"
	}
	return fmt.Sprintf("chaos: %d/%d requests completed (%.2f%%), %d continued mid-answer after %d kills, TTFT p50 %s p99 %s; "+
		"%d tokens delivered, %d in stored receipts (%d partial receipts from killed providers' checkpoints; %d/%d requests billed for every delivered token), "+
		"%d unbilled (after a killed provider's last checkpoint), %d billed twice, %d misattributed; %s",
		r.Completed, r.Requests, 100*float64(r.Completed)/float64(max(r.Requests, 1)), r.Continued, r.Kills, ms(r.TTFT.Q(.5)), ms(r.TTFT.Q(.99)),
		r.Delivered, r.InReceipts, r.Partial, r.FullyBilled, r.Completed-r.WrongText, r.Unbilled, r.DoubleBilled, r.Misattributed, verdict)
}

// chaosAnswer is one request as its client saw it.
type chaosAnswer struct {
	id     string
	prompt string
	text   string
	tokens int // completion tokens in the final usage
	ttft   time.Duration
	err    error
}

// Chaos runs steady streamed load on simulated providers while killing one
// every KillEvery, and checks that every request completes with the
// uninterrupted answer and that receipts bill each token once, to the
// provider that generated it.
func Chaos(ctx context.Context, cfg ChaosConfig) (*ChaosResult, error) {
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.Providers < 2 || cfg.Slots <= 0 || cfg.Clients <= 0 || cfg.AnswerTokens <= 0 || cfg.Duration <= 0 || cfg.KillEvery <= 0 || cfg.RestartAfter < 0 {
		return nil, errors.New("chaos benchmark: want at least two providers and positive sizes and durations")
	}
	mc := sim.DefaultConfig().Models[0]
	mc.FirstToken, mc.TokensPerSecond, mc.IgnoreEOS = cfg.FirstToken, cfg.TokenRate, true
	simCfg := sim.Config{Models: []sim.ModelConfig{mc}}
	dir, err := os.MkdirTemp("", "idlegrid-bench-chaos-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	gw, err := node.StartGateway(ctx, node.GatewayConfig{Addr: "127.0.0.1:0", DataDir: dir, ReceiptSync: "process",
		Gateway: gateway.Config{MaxQueued: 1 << 16, FirstTokenTimeout: 2 * time.Second}})
	if err != nil {
		return nil, err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		gw.Shutdown(sctx)
		cancel()
	}()
	consumer, err := keys.Generate()
	if err != nil {
		return nil, err
	}
	if _, err := gw.Store.EnsureAPIKey(ctx, benchKey, "bench", consumer.Public().Address()); err != nil {
		return nil, err
	}
	fleet := &chaosFleet{gw: gw, dir: dir, slots: cfg.Slots, cfg: simCfg, checkpointEvery: cfg.CheckpointEvery, providers: make([]*node.Provider, cfg.Providers)}
	defer fleet.stopAll()
	for i := range cfg.Providers {
		if err := fleet.start(ctx, i); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(cfg.Out, "%d simulated providers (%d slots, %s to first token, %.0f tokens/s); %d clients streaming %d-token answers for %s; one provider killed every %s, restarted %s later\n",
		cfg.Providers, cfg.Slots, cfg.FirstToken, cfg.TokenRate, cfg.Clients, cfg.AnswerTokens, cfg.Duration, cfg.KillEvery, cfg.RestartAfter)

	rctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var (
		mu      sync.Mutex
		answers []chaosAnswer
		wg      sync.WaitGroup
	)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Clients}}
	defer hc.CloseIdleConnections()
	api := client.New(gw.URL(), benchKey, client.WithHTTPClient(hc))
	for c := range cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; rctx.Err() == nil; i++ {
				// Requests already sent run to the end: the load stops,
				// answers are not cut off.
				a := chaosRequest(context.WithoutCancel(ctx), api, fmt.Sprintf("chaos client %d request %d", c, i), cfg.AnswerTokens)
				mu.Lock()
				answers = append(answers, a)
				mu.Unlock()
			}
		}()
	}
	kills := fleet.killLoop(rctx, cfg, &wg)
	wg.Wait()
	res := &ChaosResult{Kills: <-kills}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkChaos(ctx, res, answers, gw.Store, simCfg, cfg.AnswerTokens); err != nil {
		return nil, err
	}
	return res, nil
}

// chaosFleet starts, kills and restarts the providers.
type chaosFleet struct {
	gw              *node.Gateway
	dir             string
	slots           int
	cfg             sim.Config
	checkpointEvery time.Duration
	mu              sync.Mutex
	providers       []*node.Provider
}

func (f *chaosFleet) start(ctx context.Context, i int) error {
	s, err := sim.New(f.cfg)
	if err != nil {
		return err
	}
	p, err := node.StartProvider(node.ProviderConfig{Gateway: f.gw.URL(), KeyFile: filepath.Join(f.dir, fmt.Sprintf("provider-%d.key", i)),
		Backend: &node.LocalBackend{Backend: s, Description: "simulator"}, Slots: f.slots, CheckpointEvery: f.checkpointEvery})
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := p.WaitConnected(wctx); err != nil {
		p.Stop()
		return err
	}
	f.mu.Lock()
	f.providers[i] = p
	f.mu.Unlock()
	return nil
}

func (f *chaosFleet) kill(i int) {
	f.mu.Lock()
	p := f.providers[i]
	f.providers[i] = nil
	f.mu.Unlock()
	if p != nil {
		p.Stop()
	}
}

func (f *chaosFleet) stopAll() {
	for i := range f.providers {
		f.kill(i)
	}
}

// killLoop kills a provider every KillEvery until ctx ends and restarts it
// RestartAfter later; it sends the number of kills when done. The restarts
// are joined to wg.
func (f *chaosFleet) killLoop(ctx context.Context, cfg ChaosConfig, wg *sync.WaitGroup) <-chan int {
	out := make(chan int, 1)
	go func() {
		t := time.NewTicker(cfg.KillEvery)
		defer t.Stop()
		kills := 0
		for {
			select {
			case <-ctx.Done():
				out <- kills
				return
			case <-t.C:
			}
			i := kills % len(f.providers)
			kills++
			f.kill(i)
			fmt.Fprintf(cfg.Out, "  killed provider %d\n", i)
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(cfg.RestartAfter)
				if err := f.start(context.Background(), i); err != nil {
					fmt.Fprintf(cfg.Out, "  provider %d did not restart: %v\n", i, err)
				}
			}()
		}
	}()
	return out
}

// chaosRequest sends one streamed chat request and reads the answer.
func chaosRequest(ctx context.Context, api *client.Client, prompt string, maxTokens int) chaosAnswer {
	a := chaosAnswer{prompt: prompt}
	req := map[string]any{"model": "sim", "stream": true, "stream_options": map[string]bool{"include_usage": true},
		"max_tokens": maxTokens, "temperature": 0, "messages": []map[string]string{{"role": "user", "content": prompt}}}
	start := time.Now()
	a.id, a.err = api.ChatStream(ctx, req, func(ch apitypes.ChatChunk) error {
		for _, c := range ch.Choices {
			if text := c.Delta.Text(); text != "" && a.ttft == 0 {
				a.ttft = time.Since(start)
			}
			a.text += c.Delta.Text()
		}
		if u := ch.Usage.Counts; u != nil {
			a.tokens = int(u.CompletionTokens)
		}
		return nil
	})
	return a
}

// checkChaos compares every answer with the simulator's uninterrupted one
// and accounts for its tokens in the stored receipts: each receipt must
// hash exactly a run of the answer's tokens as long as it claims, runs
// must not overlap, and whatever no receipt covers was generated by a
// provider that was killed before signing.
func checkChaos(ctx context.Context, res *ChaosResult, answers []chaosAnswer, st *store.Store, cfg sim.Config, maxTokens int) error {
	// The same model without pacing: the text depends on the weights only.
	cfg.Models = slices.Clone(cfg.Models)
	for i := range cfg.Models {
		cfg.Models[i].FirstToken, cfg.Models[i].TokensPerSecond = 0, 0
	}
	ref, err := sim.New(cfg)
	if err != nil {
		return err
	}
	var ttft []time.Duration
	for _, a := range answers {
		res.Requests++
		if a.err != nil {
			res.Failed++
			if res.Failures == nil {
				res.Failures = map[string]int{}
			}
			msg := a.err.Error()
			if len(msg) > 160 {
				msg = msg[:160] + "…"
			}
			res.Failures[msg]++
			continue
		}
		res.Completed++
		ttft = append(ttft, a.ttft)
		var toks []string
		_, err := ref.Generate(ctx, protocol.Request{Kind: protocol.KindChat, Model: "sim", Messages: []protocol.ChatMessage{{Role: "user", Content: a.prompt}},
			Options: protocol.Options{MaxTokens: maxTokens}}, func(d backend.Delta) error {
			toks = append(toks, d.Text)
			return nil
		})
		if err != nil {
			return err
		}
		want := ""
		for _, t := range toks {
			want += t
		}
		if a.text != want || a.tokens != len(toks) {
			res.WrongText++
			continue
		}
		res.Delivered += len(toks)
		covered := make([]int, len(toks))
		var rs []receipt.Receipt
		continued := false
		for k, id := range []string{a.id, a.id + "-c1", a.id + "-c2", a.id + "-c3", a.id + "-c4"} {
			r, err := st.Receipt(ctx, id)
			switch {
			case errors.Is(err, store.ErrNotFound):
				continue
			case err != nil:
				return err
			}
			continued = continued || k > 0
			rs = append(rs, r.Receipt)
		}
		if continued {
			res.Continued++
		}
		ok := len(rs) > 0
		inReceipts, next := 0, 0
		for i, r := range rs {
			inReceipts += int(r.CompletionTokens)
			if i < len(rs)-1 {
				res.Partial++ // a segment that did not finish the answer
			}
			end, found := markRun(toks, covered, r, next)
			if !found {
				res.Misattributed++
				ok = false
			}
			next = end
		}
		res.InReceipts += inReceipts
		if inReceipts == len(toks) {
			res.FullyBilled++
		}
		for _, n := range covered {
			switch n {
			case 0:
				res.Unbilled++
			case 1:
				res.Receipted++
			default:
				res.DoubleBilled++
				ok = false
			}
		}
		if !ok {
			res.BillingErrors++
		}
	}
	res.TTFT = NewDist(ttft)
	return nil
}

// markRun finds the run of toks that r's response hash and completion
// tokens describe and counts it in covered; it returns the run's end and
// false when there is none. Segments follow each other, so the run is
// looked for from `from` on first (an answer can repeat a token, and a
// short segment would match its earlier copy), then before it, where a
// match means tokens billed twice.
func markRun(toks []string, covered []int, r receipt.Receipt, from int) (int, bool) {
	n := int(r.CompletionTokens)
	matches := func(start int) bool {
		h := sha256.New()
		for _, t := range toks[start : start+n] {
			h.Write([]byte(t))
		}
		var got receipt.Hash
		h.Sum(got[:0])
		return got == r.ResponseHash
	}
	starts := make([]int, 0, len(toks)+1)
	for start := from; start+n <= len(toks); start++ {
		starts = append(starts, start)
	}
	for start := 0; start < from && start+n <= len(toks); start++ {
		starts = append(starts, start)
	}
	for _, start := range starts {
		if matches(start) {
			for i := start; i < start+n; i++ {
				covered[i]++
			}
			return start + n, true
		}
	}
	return from, false
}
