package provider

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/tstest"
)

// eagerGateway is a session's link that behaves like the fastest possible
// gateway: the moment a job's last message (done or error) is sent, it
// hands the session the next job, before Send returns.
type eagerGateway struct {
	s    *session
	mu   sync.Mutex
	sent []*protocol.Message
	next map[string]*protocol.Job // job id → the job that follows its end
}

func (g *eagerGateway) Send(ctx context.Context, m *protocol.Message) error {
	g.mu.Lock()
	g.sent = append(g.sent, m)
	var id string
	switch m.Type {
	case protocol.TypeDone:
		id = m.Done.ID
	case protocol.TypeError:
		id = m.Error.ID
	}
	next := g.next[id]
	delete(g.next, id)
	g.mu.Unlock()
	if next != nil {
		return g.s.handle(ctx, &protocol.Message{Type: protocol.TypeJob, Job: next})
	}
	return nil
}

// end returns the last message sent for a job.
func (g *eagerGateway) end(id string) *protocol.Message {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, m := range g.sent {
		if m.Type == protocol.TypeDone && m.Done.ID == id || m.Type == protocol.TypeError && m.Error.ID == id {
			return m
		}
	}
	return nil
}

// promptBackend fails a generation whose prompt is "fail", waits for the
// context of one whose prompt is "wait", and answers "ok" otherwise.
type promptBackend struct{}

func (promptBackend) Models(context.Context) ([]backend.Model, error) {
	return []backend.Model{{Name: "m", Digest: "sha256:00"}}, nil
}

func (promptBackend) Generate(ctx context.Context, req protocol.Request, emit func(backend.Delta) error) (backend.Result, error) {
	switch req.Prompt {
	case "fail":
		return backend.Result{}, errors.New("model server crashed")
	case "wait":
		<-ctx.Done()
		return backend.Result{}, ctx.Err()
	}
	if err := emit(backend.Delta{Text: "ok", Tokens: 1}); err != nil {
		return backend.Result{}, err
	}
	return backend.Result{Usage: protocol.Usage{PromptTokens: 1, CompletionTokens: 1}, FinishReason: "stop"}, nil
}

// TestSlotIsFreeWhenTheLastMessageLeaves: a job's slot must be free by the
// time its done or error can reach the gateway, since the gateway frees the
// slot on its side then and may dispatch the next job at once.
func TestSlotIsFreeWhenTheLastMessageLeaves(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*protocol.Job)
		want   protocol.Code // the first job's end; "" for done
	}{
		{"done", func(*protocol.Job) {}, ""},
		{"terms refused", func(j *protocol.Job) { j.Terms.ChainID = "other" }, protocol.CodeBadRequest},
		{"backend failed", func(j *protocol.Job) { j.Request.Prompt = "fail" }, protocol.CodeBackend},
		{"deadline passed", func(j *protocol.Job) {
			j.Request.Prompt = "wait"
			j.DeadlineUnixMs = time.Now().Add(-time.Second).UnixMilli()
		}, protocol.CodeDeadline},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config(t, "http://127.0.0.1:1", promptBackend{})
			cfg.Slots = 1
			a, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			caps, err := a.capabilities(ctx)
			if err != nil {
				t.Fatal(err)
			}
			gw := newKey(t).Public()
			g := &eagerGateway{next: map[string]*protocol.Job{}}
			g.s = &session{agent: a, link: g, hello: &protocol.Hello{ChainID: chainID, GatewayKey: gw}, caps: caps, jobs: map[string]context.CancelFunc{}}
			first := newJob(t, gw, caps.Models[0], generate("hi", 4))
			tt.mutate(first)
			second := newJob(t, gw, caps.Models[0], generate("hi", 4))
			g.next[first.ID] = second
			if err := g.s.handle(ctx, &protocol.Message{Type: protocol.TypeJob, Job: first}); err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			go func() { g.s.wait(); close(done) }()
			select {
			case <-done:
			case <-ctx.Done():
				t.Fatal("jobs did not finish")
			}
			m := g.end(first.ID)
			switch {
			case m == nil:
				t.Fatal("the first job sent no last message")
			case tt.want == "" && m.Type != protocol.TypeDone, tt.want != "" && (m.Type != protocol.TypeError || m.Error.Code != tt.want):
				t.Fatalf("the first job ended with %s %+v, want %q", m.Type, m.Error, tt.want)
			}
			if m := g.end(second.ID); m == nil || m.Type != protocol.TypeDone {
				t.Fatalf("the job sent right after the first one's end got %+v: its slot was still taken", m.Error)
			}
		})
	}
}

// TestBackToBackJobsOnOneSlot is the same through the real hub: each job is
// dispatched as soon as the previous one's done arrives, as the gateway's
// queue does when a slot frees.
func TestBackToBackJobsOnOneSlot(t *testing.T) {
	g := newGateway(t)
	cfg := config(t, g.url, fastSim(t))
	cfg.Slots = 1
	a := startAgent(t, cfg)
	k := cfg.Key.Public()
	in := g.connected(t, k)
	const jobs = 200
	for i := range jobs {
		o := collect(t, dispatch(t, g, k, jobFor(t, g, in, "sim", generate("hi", 1))))
		if o.done == nil {
			t.Fatalf("job %d of %d: %v", i, jobs, o.err)
		}
	}
	tstest.WaitFor(t, wait, "the agent's counters", func() bool { return a.Status().Served == jobs })
}
