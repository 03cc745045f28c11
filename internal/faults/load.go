package faults

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"
)

// requestTimeout bounds one request of the load, failovers included; a
// request still running then counts as failed.
const requestTimeout = 90 * time.Second

// outcome is what the client saw of one request.
type outcome struct {
	gateway, consumer int
	stream            bool
	// id is the request id the gateway gave (X-Request-Id), "" if the
	// client never got response headers.
	id string
	// completed: 200 and a whole answer ([DONE] for a stream).
	completed bool
	status    int    // HTTP status, 0 without a response
	failure   string // why it did not complete
	finish    string // finish_reason of a completed answer
	// tokens is the answer's completion tokens as the usage reported.
	tokens uint64
}

// load sends requests from cfg.Clients workers until ctx ends and returns
// every outcome.
func load(ctx context.Context, cfg Config, n *network) []outcome {
	var (
		mu  sync.Mutex
		out []outcome
		wg  sync.WaitGroup
		seq int
	)
	client := &http.Client{Timeout: requestTimeout}
	for w := range cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(cfg.Seed, uint64(w)))
			for ctx.Err() == nil {
				mu.Lock()
				seq++
				i := seq
				mu.Unlock()
				o := send(client, n, rng, i, cfg.MaxTokens)
				mu.Lock()
				out = append(out, o)
				mu.Unlock()
				if !o.completed {
					// Back off a little: the gateway may be down.
					sleep(ctx, 50*time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	return out
}

// send sends request i to a random gateway as a random consumer, streaming
// or not, and reads the answer to its end. It does not take the load's
// context: a request that began finishes (or times out) on its own, so the
// run's accounting sees its whole outcome.
func send(client *http.Client, n *network, rng *rand.Rand, i, maxTokens int) outcome {
	o := outcome{gateway: rng.IntN(len(n.gateways)), consumer: rng.IntN(len(n.consumers)), stream: rng.IntN(2) == 0}
	fields := map[string]any{
		"model":      "sim",
		"stream":     o.stream,
		"max_tokens": 8 + rng.IntN(maxTokens),
		"messages":   []map[string]string{{"role": "user", "content": fmt.Sprintf("request %d: tell me about the number %d", i, rng.IntN(1_000_000))}},
	}
	if o.stream {
		fields["stream_options"] = map[string]bool{"include_usage": true}
	}
	body, _ := json.Marshal(fields)
	req, _ := http.NewRequest("POST", n.gwURLs[o.gateway]+"/v1/chat/completions", strings.NewReader(string(body)))
	req.Header.Set("Authorization", "Bearer "+n.apiKeys[o.gateway][o.consumer])
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		o.failure = "no response: " + err.Error()
		return o
	}
	defer resp.Body.Close()
	o.status, o.id = resp.StatusCode, resp.Header.Get("X-Request-Id")
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		o.failure = fmt.Sprintf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
		return o
	}
	if o.stream {
		readStream(resp.Body, &o)
		return o
	}
	var c struct {
		ID      string `json:"id"`
		Choices []struct {
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
		Usage struct {
			CompletionTokens uint64 `json:"completion_tokens"`
		} `json:"usage"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		o.failure = "reading the answer: " + err.Error()
		return o
	}
	if len(c.Choices) != 1 || c.ID != o.id {
		o.failure = fmt.Sprintf("malformed answer: id %q (header %q), %d choices", c.ID, o.id, len(c.Choices))
		return o
	}
	o.completed, o.finish, o.tokens = true, c.Choices[0].FinishReason, c.Usage.CompletionTokens
	return o
}

// readStream reads server-sent chunks up to [DONE], an error event or the
// end of the connection.
func readStream(r io.Reader, o *outcome) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if data == "[DONE]" {
			o.completed = o.finish != ""
			if !o.completed {
				o.failure = "[DONE] without a finish reason"
			}
			return
		}
		var ch struct {
			ID      string          `json:"id"`
			Error   json.RawMessage `json:"error"`
			Choices []struct {
				FinishReason *string `json:"finish_reason"`
			} `json:"choices"`
			Usage *struct {
				CompletionTokens uint64 `json:"completion_tokens"`
			} `json:"usage"`
		}
		if err := json.Unmarshal([]byte(data), &ch); err != nil {
			o.failure = "undecodable chunk: " + err.Error()
			return
		}
		if len(ch.Error) > 0 {
			o.failure = "error event: " + string(ch.Error)
			return
		}
		if ch.ID != o.id {
			o.failure = fmt.Sprintf("chunk id %q in the stream of %q", ch.ID, o.id)
			return
		}
		for _, c := range ch.Choices {
			if c.FinishReason != nil {
				o.finish = *c.FinishReason
			}
		}
		if ch.Usage != nil {
			o.tokens = ch.Usage.CompletionTokens
		}
	}
	o.failure = "stream ended without [DONE]"
	if err := sc.Err(); err != nil {
		o.failure += ": " + err.Error()
	}
}
