package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
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
	n := req.Options.MaxTokens
	times := make([]time.Time, 0, n)
	tick := time.NewTicker(t.interval)
	defer tick.Stop()
	for i := range n {
		select {
		case <-ctx.Done():
			return backend.Result{}, ctx.Err()
		case <-tick.C:
		}
		times = append(times, time.Now())
		if err := emit(backend.Delta{Text: fmt.Sprintf(" t%d", i), Tokens: 1}); err != nil {
			return backend.Result{}, err
		}
	}
	t.mu.Lock()
	t.sent[prompt] = times
	t.mu.Unlock()
	return backend.Result{Usage: protocol.Usage{PromptTokens: 2, CompletionTokens: uint64(n)}, FinishReason: "length"}, nil
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
			prompt := fmt.Sprintf("relay %d", i)
			arrivals, err := streamArrivals(ctx, client, via, model, prompt, cfg.StreamTokens)
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
	arrivals := make([]time.Time, 0, tokens)
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Bytes()
		// Content chunks carry " t<i>"; the role chunk's content is empty.
		if bytes.HasPrefix(line, []byte("data: ")) && bytes.Contains(line, []byte(`"content":" t`)) {
			arrivals = append(arrivals, time.Now())
		}
	}
	return arrivals, sc.Err()
}
