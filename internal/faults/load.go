package faults

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/idlegrid/idlegrid/internal/gateway/api/apitypes"
	"github.com/idlegrid/idlegrid/internal/gateway/client"
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
	hc := &http.Client{Timeout: requestTimeout}
	apis := make([][]*client.Client, len(n.gwURLs))
	for g, base := range n.gwURLs {
		for _, key := range n.apiKeys[g] {
			apis[g] = append(apis[g], client.New(base, key, client.WithHTTPClient(hc)))
		}
	}
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
				o := send(apis, rng, i, cfg.MaxTokens)
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

// send sends request i to a random gateway as a random consumer
// (apis[gateway][consumer]), streaming or not, and reads the answer to its
// end. It does not take the load's context: a request that began finishes
// (or times out) on its own, so the run's accounting sees its whole
// outcome.
func send(apis [][]*client.Client, rng *rand.Rand, i, maxTokens int) outcome {
	o := outcome{gateway: rng.IntN(len(apis))}
	o.consumer, o.stream = rng.IntN(len(apis[o.gateway])), rng.IntN(2) == 0
	api := apis[o.gateway][o.consumer]
	fields := map[string]any{
		"model":      "sim",
		"stream":     o.stream,
		"max_tokens": 8 + rng.IntN(maxTokens),
		"messages":   []map[string]string{{"role": "user", "content": fmt.Sprintf("request %d: tell me about the number %d", i, rng.IntN(1_000_000))}},
	}
	if o.stream {
		fields["stream_options"] = map[string]bool{"include_usage": true}
	}
	resp, err := api.Do(context.Background(), http.MethodPost, "/v1/chat/completions", fields, nil)
	if err != nil {
		o.failure = "no response: " + err.Error()
		return o
	}
	o.status, o.id = resp.StatusCode, resp.Header.Get("X-Request-Id")
	if resp.StatusCode != http.StatusOK {
		o.failure = fmt.Sprintf("status %d: %v", resp.StatusCode, api.Decode(resp, nil))
		return o
	}
	if o.stream {
		defer resp.Body.Close()
		readStream(resp.Body, &o)
		return o
	}
	var c apitypes.ChatCompletion
	if err := api.Decode(resp, &c); err != nil {
		o.failure = "reading the answer: " + err.Error()
		return o
	}
	if len(c.Choices) != 1 || c.ID != o.id {
		o.failure = fmt.Sprintf("malformed answer: id %q (header %q), %d choices", c.ID, o.id, len(c.Choices))
		return o
	}
	var tokens uint64
	if c.Usage != nil {
		tokens = c.Usage.CompletionTokens
	}
	o.completed, o.finish, o.tokens = true, c.Choices[0].FinishReason, tokens
	return o
}

// readStream reads server-sent chunks up to [DONE], an error event or the
// end of the connection.
func readStream(r io.Reader, o *outcome) {
	err := client.ReadChatStream(r, client.DefaultMaxLine, func(ch apitypes.ChatChunk) error {
		if ch.ID != o.id {
			o.failure = fmt.Sprintf("chunk id %q in the stream of %q", ch.ID, o.id)
			return errors.New(o.failure)
		}
		for _, c := range ch.Choices {
			if c.FinishReason != nil {
				o.finish = *c.FinishReason
			}
		}
		if u := ch.Usage.Counts; u != nil {
			o.tokens = u.CompletionTokens
		}
		return nil
	}, o.status, o.id)
	var ae *client.APIError
	switch {
	case o.failure != "":
		// The callback's own finding.
	case err == nil && o.finish == "":
		o.failure = "[DONE] without a finish reason"
	case err == nil:
		o.completed = true
	case errors.As(err, &ae):
		o.failure = "error event: " + ae.Error()
	case errors.Is(err, client.ErrTruncated):
		o.failure = "stream ended without [DONE]: " + err.Error()
	default:
		o.failure = "undecodable chunk: " + err.Error()
	}
}
