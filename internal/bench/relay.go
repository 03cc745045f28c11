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

// relayDelay runs cfg.Streams concurrent OpenAI streams through the gateway
// and returns, for every token, arrival at the consumer − emission at the
// backend: the first token of each stream apart (it shares the machine with
// the admission of the streams still starting) from all later ones.
func relayDelay(ctx context.Context, client *http.Client, via, model string, tb *timedBackend, cfg OverheadConfig) (first, later Dist, err error) {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firsts   []time.Duration
		delays   []time.Duration
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
			var d []time.Duration
			if err == nil {
				sent := tb.emitted(prompt)
				if len(sent) != len(arrivals) {
					err = fmt.Errorf("stream %d: %d tokens sent, %d arrived", i, len(sent), len(arrivals))
				}
				for j := range min(len(sent), len(arrivals)) {
					d = append(d, arrivals[j].Sub(sent[j]))
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			if len(d) > 0 {
				firsts = append(firsts, d[0])
				delays = append(delays, d[1:]...)
			}
		}()
	}
	wg.Wait()
	return NewDist(firsts), NewDist(delays), firstErr
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
