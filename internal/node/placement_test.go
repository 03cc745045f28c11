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
	"github.com/idlegrid/idlegrid/internal/tstest"
)

type apiError struct {
	Error struct {
		Message string `json:"message"`
		Type    string `json:"type"`
		Code    string `json:"code"`
	} `json:"error"`
}

func decodeError(t *testing.T, b []byte) apiError {
	t.Helper()
	var e apiError
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("not OpenAI error JSON: %s", b)
	}
	return e
}

// TestQueueFull: with the only slot taken, one request waits in the queue;
// past the queue's size a request gets 429 at once, and the waiting one
// gets 429 when the queue timeout passes. Both say why and when to retry.
func TestQueueFull(t *testing.T) {
	tn := startNet(t, netOptions{sim: slowSim(20), slots: 1, gateway: gateway.Config{MaxQueued: 1, QueueTimeout: 3 * time.Second}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, _, _ := openStream(t, ctx, tn, 1000) // holds the slot
	defer resp.Body.Close()

	body := `{"model":"sim","max_tokens":3,"messages":[{"role":"user","content":"hi"}]}`
	queued := make(chan struct {
		status int
		body   []byte
		after  time.Duration
	}, 1)
	go func() {
		start := time.Now()
		var s int
		var b []byte
		req, _ := http.NewRequest("POST", tn.URL+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testAPIKey)
		if r, err := http.DefaultClient.Do(req); err == nil {
			b, _ = io.ReadAll(r.Body)
			r.Body.Close()
			s = r.StatusCode
		}
		queued <- struct {
			status int
			body   []byte
			after  time.Duration
		}{s, b, time.Since(start)}
	}()
	// Once the first request waits in the queue, the next one overflows it.
	tstest.WaitFor(t, 10*time.Second, "a request to wait in the queue", func() bool { return tn.Gateway.API.Queued() == 1 })
	req, _ := http.NewRequest("POST", tn.URL+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	start := time.Now()
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != 429 || !strings.Contains(string(b), "queue is full") || r.Header.Get("Retry-After") == "" || time.Since(start) > 2*time.Second {
		t.Fatalf("overflow: %d after %s, Retry-After %q: %s", r.StatusCode, time.Since(start), r.Header.Get("Retry-After"), b)
	}
	if e := decodeError(t, b); e.Error.Type != "rate_limit_error" || e.Error.Code != "providers_busy" {
		t.Fatalf("queue full: %+v", e)
	}
	q := <-queued
	if e := decodeError(t, q.body); q.status != 429 || !strings.Contains(e.Error.Message, "1 busy") || q.after < 2*time.Second {
		t.Fatalf("queued request: %d after %s: %s", q.status, q.after, q.body)
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
	if status != 503 || e.Error.Code != "no_provider" || !strings.Contains(e.Error.Message, `model "sim": 0 providers online`) {
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
	if e := decodeError(t, b); status != 503 || !strings.Contains(e.Error.Message, "paused") {
		t.Fatalf("%d %+v", status, e)
	}
	tn.Provider.Agent.Resume()
	tstest.WaitFor(t, 10*time.Second, "the resume to reach the gateway", func() bool {
		s, _ := post(t, tn.URL+"/v1/chat/completions", testAPIKey, `{"model":"sim","max_tokens":2,"messages":[{"role":"user","content":"hi"}]}`)
		return s == 200
	})
}

// TestJobTimeout: a provider that stays connected but stalls gets the job
// cancelled at the gateway's job timeout, and the consumer a 504, not a hang.
func TestJobTimeout(t *testing.T) {
	tn := startNet(t, netOptions{sim: slowSim(1000), gateway: gateway.Config{JobTimeout: 500 * time.Millisecond}})
	tn.Sim.SetFaults(sim.Faults{StallAfter: 2})
	start := time.Now()
	status, b := post(t, tn.URL+"/v1/chat/completions", testAPIKey, `{"model":"sim","max_tokens":50,"messages":[{"role":"user","content":"hi"}]}`)
	if e := decodeError(t, b); status != 504 || e.Error.Code != "timeout" {
		t.Fatalf("%d %s", status, b)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %s", d)
	}
	tstest.WaitFor(t, 10*time.Second, "the stalled upstream request to be cancelled", func() bool { return tn.Sim.Stats().Cancelled == 1 })
}
