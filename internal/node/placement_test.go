package node_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/gateway"
	"github.com/idlegrid/idlegrid/internal/gateway/api/apitypes"
	"github.com/idlegrid/idlegrid/internal/gateway/client"
	"github.com/idlegrid/idlegrid/internal/tstest"
)

// decodeError reads an OpenAI error body into the typed client's view of a
// refusal (its members as strings, "" where null); a body that is not
// JSON fails t.
func decodeError(t *testing.T, b []byte) client.APIError {
	t.Helper()
	var body apitypes.ErrorBody
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("not OpenAI error JSON: %s", b)
	}
	e := client.APIError{Type: body.Error.Type, Message: body.Error.Message}
	if body.Error.Code != nil {
		e.Code = *body.Error.Code
	}
	if body.Error.Param != nil {
		e.Param = *body.Error.Param
	}
	return e
}

// TestQueueFull: with the only slot taken, one request waits in the queue;
// past the queue's size a request gets 429 at once, while the first still
// waits, and the waiting one gets 429 when the queue timeout passes. Both
// say why and when to retry. The network runs on real sockets, so no fake
// clock: "at once" is an ordering (the overflow is answered before the
// waiting request), and the wait is the timer the gateway sets, which
// cannot fire early.
func TestQueueFull(t *testing.T) {
	const queueTimeout = 3 * time.Second
	tn := startNet(t, netOptions{sim: slowSim(20), slots: 1, gateway: gateway.Config{MaxQueued: 1, QueueTimeout: queueTimeout}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, _, _ := openStream(t, ctx, tn, 1000) // holds the slot
	defer resp.Body.Close()

	body := `{"model":"sim","max_tokens":3,"messages":[{"role":"user","content":"hi"}]}`
	type answer struct {
		status     int
		retryAfter string
		body       []byte
		after      time.Duration
	}
	ask := func() answer {
		start := time.Now()
		req, _ := http.NewRequestWithContext(ctx, "POST", tn.URL+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testAPIKey)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			return answer{body: []byte(err.Error()), after: time.Since(start)}
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		return answer{r.StatusCode, r.Header.Get("Retry-After"), b, time.Since(start)}
	}
	queued := make(chan answer, 1)
	go func() { queued <- ask() }()
	// Once the first request waits in the queue, the next one overflows it.
	tstest.WaitFor(t, 10*time.Second, "a request to wait in the queue", func() bool { return tn.Gateway.API.Queued() == 1 })
	o := ask()
	if o.status != 429 || !strings.Contains(string(o.body), "queue is full") || o.retryAfter == "" {
		t.Fatalf("overflow: %d, Retry-After %q: %s", o.status, o.retryAfter, o.body)
	}
	if e := decodeError(t, o.body); e.Type != "rate_limit_error" || e.Code != "providers_busy" {
		t.Fatalf("queue full: %+v", e)
	}
	select {
	case q := <-queued:
		t.Fatalf("the overflow was answered after the queued request (%d after %s): it waited in the queue too", q.status, q.after)
	default:
	}
	if n := tn.Gateway.API.Queued(); n != 1 {
		t.Fatalf("%d requests queued after the overflow, want the first one still waiting", n)
	}
	q := <-queued
	e := decodeError(t, q.body)
	if q.status != 429 || !strings.Contains(e.Message, "1 busy") || !strings.Contains(e.Message, "within "+queueTimeout.String()) || q.retryAfter == "" {
		t.Fatalf("queued request: %d, Retry-After %q: %s", q.status, q.retryAfter, q.body)
	}
	if q.after < queueTimeout {
		t.Fatalf("queued request answered after %s, before its queue timeout of %s", q.after, queueTimeout)
	}
}

// TestNoProviderOnline: a model the network has seen but no provider serves
// now is a 503 that says so (not a 404).
func TestNoProviderOnline(t *testing.T) {
	tn := startNet(t, netOptions{})
	if err := tn.Provider.Stop(); err != nil {
		t.Fatal(err)
	}
	tstest.WaitFor(t, 10*time.Second, "the provider to be gone", func() bool { return len(tn.Gateway.Hub.Snapshot()) == 0 })
	status, b := post(t, tn.URL+"/v1/chat/completions", testAPIKey, `{"model":"sim","messages":[{"role":"user","content":"hi"}]}`)
	e := decodeError(t, b)
	if status != 503 || e.Code != "no_provider" || !strings.Contains(e.Message, `model "sim": 0 providers online`) {
		t.Fatalf("%d %+v", status, e)
	}
	status, _ = post(t, tn.URL+"/v1/chat/completions", testAPIKey, `{"model":"never-seen","messages":[{"role":"user","content":"hi"}]}`)
	if status != 404 {
		t.Fatalf("unknown model: %d", status)
	}
}

// TestPausedProvider: a provider paused by its owner is routed around; with
// no other provider the consumer learns that it is paused.
func TestPausedProvider(t *testing.T) {
	tn := startNet(t, netOptions{})
	tn.Provider.Agent.Pause("owner is gaming")
	tstest.WaitFor(t, 10*time.Second, "the pause to reach the gateway", func() bool {
		infos := tn.Gateway.Hub.Snapshot()
		return len(infos) == 1 && infos[0].Paused
	})
	status, b := post(t, tn.URL+"/v1/chat/completions", testAPIKey, `{"model":"sim","messages":[{"role":"user","content":"hi"}]}`)
	if e := decodeError(t, b); status != 503 || !strings.Contains(e.Message, "paused") {
		t.Fatalf("%d %+v", status, e)
	}
	tn.Provider.Agent.Resume()
	tstest.WaitFor(t, 10*time.Second, "the resume to reach the gateway", func() bool {
		s, _ := post(t, tn.URL+"/v1/chat/completions", testAPIKey, `{"model":"sim","max_tokens":2,"messages":[{"role":"user","content":"hi"}]}`)
		return s == 200
	})
}

// TestJobTimeout: a provider that stays connected but stalls gets the job
// cancelled at the gateway's job timeout, and the consumer a 504, not a
// hang. The 504 comes from the gateway's deadline or from the provider's,
// which the job carries (whichever fires first), so it is checked by its
// code; the consumer's own deadline, 60 times the job timeout, only turns
// a hang into a failure.
func TestJobTimeout(t *testing.T) {
	const jobTimeout = 500 * time.Millisecond
	tn := startNet(t, netOptions{sim: slowSim(1000), gateway: gateway.Config{JobTimeout: jobTimeout}})
	tn.Sim.SetFaults(sim.Faults{StallAfter: 2})
	ctx, cancel := context.WithTimeout(t.Context(), 60*jobTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", tn.URL+"/v1/chat/completions",
		strings.NewReader(`{"model":"sim","max_tokens":50,"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("no answer from the gateway: %v", err)
	}
	b, err := io.ReadAll(r.Body)
	r.Body.Close()
	if err != nil {
		t.Fatalf("the answer did not end: %v", err)
	}
	if e := decodeError(t, b); r.StatusCode != 504 || e.Code != "timeout" || !strings.Contains(e.Message, "job timeout") {
		t.Fatalf("%d %s", r.StatusCode, b)
	}
	tstest.WaitFor(t, 10*time.Second, "the stalled upstream request to be cancelled", func() bool { return tn.Sim.Stats().Cancelled == 1 })
}
