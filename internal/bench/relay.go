package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// timedBackend serves prompts starting with "relay " itself, emitting one
// token per tick and recording when each token left the backend, so the
// consumer side can compute each token's relay delay exactly. Every other
// prompt goes to the wrapped backend (the simulator).
type timedBackend struct {
	backend.Backend
	interval time.Duration

	mu   sync.Mutex
	sent map[string][]time.Time
	run  atomic.Int64 // numbers streams, so prompts never repeat
}

func newTimedBackend(b backend.Backend, rate float64) *timedBackend {
	return &timedBackend{Backend: b, interval: time.Duration(float64(time.Second) / rate), sent: map[string][]time.Time{}}
}

func (t *timedBackend) Generate(ctx context.Context, req protocol.Request, emit func(backend.Delta) error) (backend.Result, error) {
	prompt := ""
	if n := len(req.Messages); n > 0 {
		prompt = req.Messages[n-1].Content
	}
	if !strings.HasPrefix(prompt, "relay ") {
		return t.Backend.Generate(ctx, req, emit)
	}
	n, err := t.generate(ctx, prompt, req.Options.MaxTokens, func(text string) error {
		return emit(backend.Delta{Text: text, Tokens: 1})
	})
	if err != nil {
		return backend.Result{}, err
	}
	return backend.Result{Usage: protocol.Usage{PromptTokens: 2, CompletionTokens: uint64(n)}, FinishReason: "length"}, nil
}

// generate emits n tokens, one per tick, and records when each left.
func (t *timedBackend) generate(ctx context.Context, prompt string, n int, emit func(text string) error) (int, error) {
	times := make([]time.Time, 0, n)
	tick := time.NewTicker(t.interval)
	defer tick.Stop()
	for i := range n {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-tick.C:
		}
		times = append(times, time.Now())
		if err := emit(fmt.Sprintf(" t%d", i)); err != nil {
			return 0, err
		}
	}
	t.mu.Lock()
	t.sent[prompt] = times
	t.mu.Unlock()
	return n, nil
}

func (t *timedBackend) emitted(prompt string) []time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sent[prompt]
}

// RelayResult is the per-token delay (emission at the backend → arrival at
// the consumer) of the relay measurement.
type RelayResult struct {
	// Steady holds the tokens emitted while every stream was running: the
	// load the measurement is about, without the admission of streams still
	// starting or the receipts of streams already ending.
	Steady Dist
	// All holds every token, the first of each stream included.
	All Dist
}

type token struct {
	sent  time.Time
	delay time.Duration
}

// relayDelay runs cfg.Streams concurrent OpenAI streams through the gateway
// and measures every token's delay.
func relayDelay(ctx context.Context, client *http.Client, via, model string, tb *timedBackend, cfg OverheadConfig) (RelayResult, error) {
	return measureStreams(tb, cfg, func(prompt string) ([]time.Time, error) {
		return streamArrivals(ctx, client, via, model, prompt, cfg.StreamTokens)
	})
}

// measureStreams runs cfg.Streams concurrent streams, started by stream
// (which returns each token's arrival time), and measures every token's
// delay from its emission, as tb recorded it.
func measureStreams(tb *timedBackend, cfg OverheadConfig, stream func(prompt string) ([]time.Time, error)) (RelayResult, error) {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		tokens   []token
		allIn    time.Time // when the last stream emitted its first token
		firstOut time.Time // when the first stream emitted its last token
		firstErr error
	)
	stagger := tb.interval / time.Duration(max(cfg.Streams, 1))
	for i := range cfg.Streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Spread stream starts over one token interval, as independent
			// consumers would be.
			time.Sleep(time.Duration(i) * stagger)
			prompt := fmt.Sprintf("relay %d %d", tb.run.Add(1), i)
			arrivals, err := stream(prompt)
			sent := tb.emitted(prompt)
			if err == nil && (len(sent) != len(arrivals) || len(sent) == 0) {
				err = fmt.Errorf("stream %d: %d tokens sent, %d arrived", i, len(sent), len(arrivals))
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			for j := range sent {
				tokens = append(tokens, token{sent: sent[j], delay: arrivals[j].Sub(sent[j])})
			}
			if sent[0].After(allIn) {
				allIn = sent[0]
			}
			if last := sent[len(sent)-1]; firstOut.IsZero() || last.Before(firstOut) {
				firstOut = last
			}
		}()
	}
	wg.Wait()
	var all, steady []time.Duration
	for _, t := range tokens {
		all = append(all, t.delay)
		if !t.sent.Before(allIn) && !t.sent.After(firstOut) {
			steady = append(steady, t.delay)
		}
	}
	return RelayResult{Steady: NewDist(steady), All: NewDist(all)}, firstErr
}

// bareRelay measures the same streams served by an HTTP handler that emits
// the tokens itself (the same ticks, recorded by tb) through two bare
// reverse proxies (net/http/httputil, flushing every write) in this
// process: what relaying cfg.Streams × cfg.StreamRate tokens/s over two hops
// costs on this machine with nothing else in the path, for scale.
func bareRelay(ctx context.Context, client *http.Client, tb *timedBackend, cfg OverheadConfig) (RelayResult, error) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		prompt := r.URL.Query().Get("prompt")
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		_, err := tb.generate(r.Context(), prompt, cfg.StreamTokens, func(text string) error {
			if _, err := fmt.Fprintf(w, "data: {\"content\":%q}\n\n", text); err != nil {
				return err
			}
			return rc.Flush()
		})
		if err == nil {
			fmt.Fprint(w, "data: [DONE]\n\n")
		}
	}))
	defer origin.Close()
	next, closeHops := proxyChain(origin.URL, 2)
	defer closeHops()
	return measureStreams(tb, cfg, func(prompt string) ([]time.Time, error) {
		req, _ := http.NewRequestWithContext(ctx, "GET", next+"/?prompt="+url.QueryEscape(prompt), nil)
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		return readArrivals(resp.Body, cfg.StreamTokens)
	})
}

// streamArrivals reads an OpenAI SSE stream and timestamps each content chunk.
func streamArrivals(ctx context.Context, client *http.Client, via, model, prompt string, tokens int) ([]time.Time, error) {
	b, _ := json.Marshal(map[string]any{"model": model, "stream": true, "max_tokens": tokens, "messages": []map[string]string{{"role": "user", "content": prompt}}})
	req, _ := http.NewRequestWithContext(ctx, "POST", via+"/v1/chat/completions", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+benchKey)
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("relay stream: status %d", resp.StatusCode)
	}
	return readArrivals(resp.Body, tokens)
}

// readArrivals timestamps each content chunk of an SSE stream.
func readArrivals(body io.Reader, tokens int) ([]time.Time, error) {
	arrivals := make([]time.Time, 0, tokens)
	sc := bufio.NewScanner(body)
	for sc.Scan() {
		line := sc.Bytes()
		// Content chunks carry " t<i>"; the role chunk's content is empty.
		if bytes.HasPrefix(line, []byte("data: ")) && bytes.Contains(line, []byte(`"content":" t`)) {
			arrivals = append(arrivals, time.Now())
		}
	}
	return arrivals, sc.Err()
}
