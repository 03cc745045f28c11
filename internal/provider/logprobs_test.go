package provider

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/tstest"
)

// TestBackendWithoutLogprobs: when a job asks for log-probabilities and the
// backend returns none, the agent says so once in its log and tells the
// gateway (capabilities with no_logprobs), which then places such requests
// elsewhere; a later job changes nothing.
func TestBackendWithoutLogprobs(t *testing.T) {
	g := newGateway(t)
	b := &scriptedBackend{deltas: []string{"a", "b"}, usage: protocol.Usage{PromptTokens: 1, CompletionTokens: 2}}
	cfg := config(t, g.url, b)
	log := &logRecorder{}
	cfg.Logger = slog.New(log)
	a := startAgent(t, cfg)
	in := g.connected(t, a.cfg.Key.Public())
	if m, _ := in.Model("script"); m.NoLogprobs {
		t.Fatal("no_logprobs before any job asked")
	}
	req := generate("hi", 2)
	req.Options.Logprobs = true
	for range 2 {
		o := collect(t, dispatch(t, g, in.Key, jobFor(t, g, in, "script", req)))
		if o.done == nil || o.text() != "ab" {
			t.Fatalf("job: %+v", o)
		}
	}
	tstest.WaitFor(t, wait, "no_logprobs at the gateway", func() bool {
		in, _ := g.info(a.cfg.Key.Public())
		m, _ := in.Model("script")
		return m.NoLogprobs
	})
	log.mu.Lock()
	defer log.mu.Unlock()
	warned := 0
	for _, r := range log.records {
		if strings.Contains(r.Message, "no log-probabilities") {
			warned++
		}
	}
	if warned != 1 {
		t.Errorf("logged %d times, want once", warned)
	}
}

// noLogprobsBackend fails every request that asks for log-probabilities,
// as the Ollama client does in front of an Ollama that returns none.
type noLogprobsBackend struct{ scriptedBackend }

func (b *noLogprobsBackend) Generate(ctx context.Context, req protocol.Request, emit func(backend.Delta) error) (backend.Result, error) {
	if req.Options.Logprobs {
		return backend.Result{}, fmt.Errorf("ollama: %w", backend.ErrNoLogprobs)
	}
	return b.scriptedBackend.Generate(ctx, req, emit)
}

// TestBackendRefusesLogprobs: a backend that fails a logprob request with
// ErrNoLogprobs fails the job as a bad request (the gateway answers 400)
// and the agent tells the gateway, once, to place such requests elsewhere.
func TestBackendRefusesLogprobs(t *testing.T) {
	g := newGateway(t)
	b := &noLogprobsBackend{scriptedBackend{deltas: []string{"a"}, usage: protocol.Usage{PromptTokens: 1, CompletionTokens: 1}}}
	a := startAgent(t, config(t, g.url, b))
	in := g.connected(t, a.cfg.Key.Public())
	req := generate("hi", 2)
	req.Options.Logprobs = true
	o := collect(t, dispatch(t, g, in.Key, jobFor(t, g, in, "script", req)))
	if je := jobError(t, o); je.Code != protocol.CodeBadRequest || !strings.Contains(je.Message, "no log-probabilities") {
		t.Fatalf("job error %+v", je)
	}
	tstest.WaitFor(t, wait, "no_logprobs at the gateway", func() bool {
		in, _ := g.info(a.cfg.Key.Public())
		m, _ := in.Model("script")
		return m.NoLogprobs
	})
}
