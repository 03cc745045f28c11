package provider

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/hub"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/link"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/receipt"
	"github.com/idlegrid/idlegrid/internal/tstest"
)

const (
	chainID = "idlegrid-test-1"
	// wait bounds every blocking step: generous for a loaded machine
	// under -race, but finite, so that a hang fails instead of stalling.
	wait = 10 * time.Second
	// heartbeat is short enough that a dead peer is noticed within a test
	// and long enough not to drop a live one on a slow machine.
	heartbeat = 2 * time.Second
)

func newKey(t *testing.T) keys.PrivateKey {
	t.Helper()
	k, err := keys.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// gateway is a real hub behind a real HTTP server on loopback.
type gateway struct {
	hub   *hub.Hub
	key   keys.PrivateKey
	url   string
	conns atomic.Int64 // WebSocket requests that reached the handler
}

func newGateway(t *testing.T) *gateway {
	t.Helper()
	g := &gateway{key: newKey(t)}
	g.hub = hub.New(hub.Config{Key: g.key, ChainID: chainID, Link: link.Options{Heartbeat: heartbeat}})
	srv := httptest.NewServer(g.handler())
	g.url = srv.URL
	t.Cleanup(func() { g.hub.Close(); srv.Close() })
	return g
}

func (g *gateway) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.conns.Add(1)
		g.hub.ServeHTTP(w, r)
	})
}

// info returns the hub's entry for a provider, if connected.
func (g *gateway) info(k keys.PublicKey) (hub.Info, bool) {
	for _, in := range g.hub.Snapshot() {
		if in.Key == k {
			return in, true
		}
	}
	return hub.Info{}, false
}

// connected waits until the hub lists the provider and returns its entry.
func (g *gateway) connected(t *testing.T, k keys.PublicKey) hub.Info {
	t.Helper()
	var in hub.Info
	tstest.WaitFor(t, wait, "the provider to connect", func() bool {
		var ok bool
		in, ok = g.info(k)
		return ok
	})
	return in
}

// config is an agent configuration for g with fast reconnects.
func config(t *testing.T, gatewayURL string, b backend.Backend) Config {
	return Config{
		Gateway: gatewayURL, Key: newKey(t), Backend: b, Slots: 2,
		PricePrompt: 250_000, PriceCompletion: 750_000, Version: "agent-test/1.0",
		Link:       link.Options{Heartbeat: heartbeat},
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
	}
}

// agentRun is an Agent whose Run is in a goroutine the test owns.
type agentRun struct {
	*Agent
	stop func() // cancels Run and waits for it to return
}

func startAgent(t *testing.T, cfg Config) *agentRun {
	t.Helper()
	a, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return run(t, a)
}

func run(t *testing.T, a *Agent) *agentRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v after cancel, want nil", err)
				}
			case <-time.After(wait):
				t.Errorf("Run did not return within %s of its context ending", wait)
			}
		})
	}
	t.Cleanup(stop)
	return &agentRun{Agent: a, stop: stop}
}

func newSim(t *testing.T, cfg sim.Config) *sim.Sim {
	t.Helper()
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fastSim is the default model without pacing.
func fastSim(t *testing.T) *sim.Sim {
	cfg := sim.DefaultConfig()
	cfg.Models[0].FirstToken, cfg.Models[0].TokensPerSecond = 0, 0
	return newSim(t, cfg)
}

func consumer(t *testing.T) keys.Address { return newKey(t).Public().Address() }

// jobFor builds a job the way the gateway does (gateway.job): the terms
// carry the provider's own model entry and prices.
func jobFor(t *testing.T, g *gateway, in hub.Info, model string, req protocol.Request) *protocol.Job {
	t.Helper()
	m, ok := in.Model(model)
	if !ok {
		t.Fatalf("provider does not offer %q: %+v", model, in.Capabilities.Models)
	}
	return newJob(t, g.key.Public(), m, req)
}

func newJob(t *testing.T, gw keys.PublicKey, m protocol.Model, req protocol.Request) *protocol.Job {
	t.Helper()
	var idb [8]byte
	rand.Read(idb[:])
	id := fmt.Sprintf("req-%x", idb)
	req.Model = m.Name
	now := time.Now()
	return &protocol.Job{
		ID: id, Request: req, DeadlineUnixMs: now.Add(time.Minute).UnixMilli(),
		Terms: protocol.Terms{
			ChainID: chainID, RequestID: id, Gateway: gw, Consumer: consumer(t),
			Model: m.Name, ModelDigest: m.Digest,
			PricePromptPerMTok: m.PricePromptPerMTok, PriceCompletionPerMTok: m.PriceCompletionPerMTok,
			RequestHash: receipt.Sum([]byte(fmt.Sprintf("%+v", req))), StartUnixMs: now.UnixMilli(),
		},
	}
}

func generate(prompt string, maxTokens int) protocol.Request {
	return protocol.Request{Kind: protocol.KindGenerate, Prompt: prompt, Options: protocol.Options{MaxTokens: maxTokens}}
}

// outcome is everything a stream delivered.
type outcome struct {
	chunks []*protocol.Chunk
	done   *protocol.Done
	err    error // the stream's final error event
}

func (o *outcome) text() string {
	var s string
	for _, c := range o.chunks {
		s += c.Delta
	}
	return s
}

// collect reads s to its end.
func collect(t *testing.T, s *hub.Stream) outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var o outcome
	for {
		ev, err := s.Next(ctx)
		if err != nil {
			t.Fatalf("stream %s: no end after %d chunks: %v", s.ID(), len(o.chunks), err)
		}
		switch {
		case ev.Chunk != nil:
			o.chunks = append(o.chunks, ev.Chunk)
		case ev.Done != nil:
			o.done = ev.Done
			return o
		default:
			o.err = ev.Err
			return o
		}
	}
}

func dispatch(t *testing.T, g *gateway, k keys.PublicKey, job *protocol.Job) *hub.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	s, err := g.hub.Dispatch(ctx, k, job)
	if err != nil {
		t.Fatalf("Dispatch: %v", err)
	}
	return s
}

// gatewayReceipt checks the provider's signature as the gateway's relay
// does when a job ends (gateway.finish): it rebuilds the receipt from the
// job's terms, the provider key, the usage and end time in Done and the
// sha256 of the deltas as they arrived, and verifies the signature on it.
func gatewayReceipt(job *protocol.Job, provider keys.PublicKey, chunks []*protocol.Chunk, d *protocol.Done) (receipt.Receipt, error) {
	text := sha256.New()
	for _, c := range chunks {
		text.Write([]byte(c.Delta))
	}
	var responseHash receipt.Hash
	text.Sum(responseHash[:0])
	r, err := job.Terms.Receipt(provider, d.Usage, responseHash, d.EndUnixMs)
	if err == nil && d.EndUnixMs > time.Now().Add(5*time.Minute).UnixMilli() {
		err = errors.New("receipt end time is in the future")
	}
	if err == nil {
		err = r.Validate()
	}
	if err == nil {
		err = receipt.VerifyProvider(&r, d.ReceiptSignature)
	}
	return r, err
}

// jobError returns the provider's error code a stream ended with.
func jobError(t *testing.T, o outcome) *hub.JobError {
	t.Helper()
	if o.done != nil {
		t.Fatalf("job finished (%d chunks, signature %s), want an error", len(o.chunks), o.done.ReceiptSignature)
	}
	var je *hub.JobError
	if !errors.As(o.err, &je) {
		t.Fatalf("stream ended with %v, want a provider job error", o.err)
	}
	return je
}

// blockingBackend serves one model and blocks every generation until its
// context ends or the test releases it, recording how each one ended.
type blockingBackend struct {
	model   backend.Model
	started chan protocol.Request // each Generate, as it starts
	release chan struct{}         // one receive finishes one generation
	ended   chan error            // ctx.Err() of each generation that was stopped
}

func newBlocking() *blockingBackend {
	return &blockingBackend{
		model:   backend.Model{Name: "blocker", Digest: "sha256:b10c"},
		started: make(chan protocol.Request, 64), release: make(chan struct{}), ended: make(chan error, 64),
	}
}

func (b *blockingBackend) Models(context.Context) ([]backend.Model, error) {
	return []backend.Model{b.model}, nil
}

func (b *blockingBackend) Generate(ctx context.Context, req protocol.Request, emit func(backend.Delta) error) (backend.Result, error) {
	b.started <- req
	select {
	case <-ctx.Done():
		b.ended <- ctx.Err()
		return backend.Result{}, fmt.Errorf("blocker: %w", ctx.Err())
	case <-b.release:
	}
	if err := emit(backend.Delta{Text: "released", Tokens: 1}); err != nil {
		return backend.Result{}, err
	}
	return backend.Result{Usage: protocol.Usage{PromptTokens: 2, CompletionTokens: 1}, FinishReason: "stop"}, nil
}

// waitStarted returns the next generation the backend started.
func (b *blockingBackend) waitStarted(t *testing.T) protocol.Request {
	t.Helper()
	select {
	case req := <-b.started:
		return req
	case <-time.After(wait):
		t.Fatal("the backend never started the job")
		return protocol.Request{}
	}
}

// waitEnded returns how the next stopped generation's context ended.
func (b *blockingBackend) waitEnded(t *testing.T) error {
	t.Helper()
	select {
	case err := <-b.ended:
		return err
	case <-time.After(wait):
		t.Fatal("the backend's context was never cancelled")
		return nil
	}
}

// scriptedBackend emits fixed deltas, byte for byte, then finishes.
type scriptedBackend struct {
	deltas []string
	usage  protocol.Usage
}

func (b *scriptedBackend) Models(context.Context) ([]backend.Model, error) {
	return []backend.Model{{Name: "script", Digest: "sha256:5c41"}}, nil
}

func (b *scriptedBackend) Generate(ctx context.Context, req protocol.Request, emit func(backend.Delta) error) (backend.Result, error) {
	for _, d := range b.deltas {
		if err := emit(backend.Delta{Text: d, Tokens: 1}); err != nil {
			return backend.Result{}, err
		}
	}
	return backend.Result{Usage: b.usage, FinishReason: "stop"}, nil
}

// countingBackend counts the generations it passes to the backend inside.
type countingBackend struct {
	backend.Backend
	calls atomic.Int64
}

func (b *countingBackend) Generate(ctx context.Context, req protocol.Request, emit func(backend.Delta) error) (backend.Result, error) {
	b.calls.Add(1)
	return b.Backend.Generate(ctx, req, emit)
}

// logRecorder is a slog handler that keeps the records, so tests can see
// what the agent reports (every failed connection attempt is logged).
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Clone())
	return nil
}
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecorder) WithGroup(string) slog.Handler      { return h }

// retries returns the error and delay of every "reconnecting" record.
func (h *logRecorder) retries() (errs []string, delays []time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.records {
		if r.Message != "gateway connection ended; reconnecting" {
			continue
		}
		r.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "err":
				errs = append(errs, fmt.Sprint(a.Value.Any()))
			case "retry_in":
				delays = append(delays, a.Value.Duration())
			}
			return true
		})
	}
	return errs, delays
}

// rawGateway speaks the gateway's side of the protocol with a bare link,
// so a test can send what the hub would never send (more jobs than slots,
// a cancel whose answer the hub would swallow).
type rawGateway struct {
	key   keys.PrivateKey
	url   string
	conns chan *rawConn
	// version is the protocol version its hello announces (default
	// protocol.Version); auth records the agent's answer.
	version atomic.Int64
	auth    chan *protocol.Auth
}

// rawConn is one provider connection to a rawGateway after the handshake.
type rawConn struct {
	link *link.Link
	caps protocol.Capabilities
	msgs chan *protocol.Message
}

func newRawGateway(t *testing.T) *rawGateway {
	t.Helper()
	g := &rawGateway{key: newKey(t), conns: make(chan *rawConn, 4), auth: make(chan *protocol.Auth, 4)}
	g.version.Store(protocol.Version)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		l := link.New(ws, link.Options{Heartbeat: heartbeat})
		ctx, cancel := context.WithTimeout(r.Context(), wait)
		defer cancel()
		nonce := make([]byte, protocol.NonceSize)
		rand.Read(nonce)
		hello := &protocol.Hello{Nonce: nonce, GatewayKey: g.key.Public(), ChainID: chainID, ProtocolVersion: int(g.version.Load())}
		if err := l.WriteOne(ctx, &protocol.Message{Type: protocol.TypeHello, Hello: hello}); err != nil {
			return
		}
		m, err := l.ReadOne(ctx)
		if err != nil || m.Type != protocol.TypeAuth ||
			!m.Auth.ProviderKey.Verify(protocol.AuthBytes(nonce, g.key.Public(), chainID), m.Auth.Signature) {
			l.Close(fmt.Errorf("%w: bad auth", protocol.ErrProtocol))
			return
		}
		select {
		case g.auth <- m.Auth:
		default:
		}
		welcome := &protocol.Welcome{HeartbeatMs: heartbeat.Milliseconds()}
		if err := l.WriteOne(ctx, &protocol.Message{Type: protocol.TypeWelcome, Welcome: welcome}); err != nil {
			return
		}
		c := &rawConn{link: l, caps: m.Auth.Capabilities, msgs: make(chan *protocol.Message, 256)}
		g.conns <- c
		l.Run(r.Context(), func(m *protocol.Message) error {
			select {
			case c.msgs <- m:
				return nil
			default:
				return errors.New("test gateway: message buffer full")
			}
		})
	}))
	g.url = srv.URL
	t.Cleanup(srv.Close)
	return g
}

func (g *rawGateway) accept(t *testing.T) *rawConn {
	t.Helper()
	select {
	case c := <-g.conns:
		t.Cleanup(func() { c.link.Close(errors.New("test over")) })
		return c
	case <-time.After(wait):
		t.Fatal("the agent never completed the handshake")
		return nil
	}
}

func (c *rawConn) send(t *testing.T, m *protocol.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := c.link.Send(ctx, m); err != nil {
		t.Fatalf("send %s: %v", m.Type, err)
	}
}

func (c *rawConn) job(t *testing.T, g *rawGateway, req protocol.Request) *protocol.Job {
	t.Helper()
	j := newJob(t, g.key.Public(), c.caps.Models[0], req)
	c.send(t, &protocol.Message{Type: protocol.TypeJob, Job: j})
	return j
}

// next returns the next message from the agent.
func (c *rawConn) next(t *testing.T) *protocol.Message {
	t.Helper()
	select {
	case m := <-c.msgs: // what arrived before the link ended comes first
		return m
	default:
	}
	select {
	case m := <-c.msgs:
		return m
	case <-c.link.Done():
		t.Fatalf("connection ended: %v", c.link.Err())
	case <-time.After(wait):
		t.Fatal("no message from the agent")
	}
	return nil
}
