package hub

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/link"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/tstest"
)

const chain = "test-chain"

func newHub(t *testing.T, heartbeat time.Duration) (*Hub, string) {
	t.Helper()
	gw, _ := keys.Generate()
	h := New(Config{Key: gw, ChainID: chain, Link: link.Options{Heartbeat: heartbeat}, MaxJobBufferBytes: 1024})
	srv := httptest.NewServer(h)
	t.Cleanup(func() { h.Close(); srv.Close() })
	return h, "ws" + strings.TrimPrefix(srv.URL, "http")
}

func caps() protocol.Capabilities {
	return protocol.Capabilities{Slots: 2, Models: []protocol.Model{{Name: "m", Digest: "d1", PricePromptPerMTok: 1, PriceCompletionPerMTok: 2}}}
}

// fakeProvider does the handshake by hand so tests can misbehave after it.
type fakeProvider struct {
	key keys.PrivateKey
	ws  *peer
}

func dial(t *testing.T, url string) *peer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	return &peer{Conn: ws}
}

// peer is the test's raw end of a provider connection.
type peer struct {
	*websocket.Conn
	queued []*protocol.Message // decoded from a frame, not yet returned
}

// read returns the next message that is not a ping.
func (ws *peer) read(t *testing.T) (*protocol.Message, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if len(ws.queued) > 0 {
		m := ws.queued[0]
		ws.queued = ws.queued[1:]
		return m, nil
	}
	for {
		_, b, err := ws.Read(ctx)
		if err != nil {
			return nil, err
		}
		var msgs []*protocol.Message
		err = protocol.DecodeFrame(b, func(m *protocol.Message) error {
			if m.Type != protocol.TypePing {
				msgs = append(msgs, m)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if len(msgs) > 0 {
			ws.queued = append(ws.queued, msgs[1:]...)
			return msgs[0], nil
		}
	}
}

func (ws *peer) write(t *testing.T, m *protocol.Message) {
	t.Helper()
	b, err := protocol.Encode(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ws.Write(ctx, websocket.MessageText, b); err != nil {
		t.Fatal(err)
	}
}

func connect(t *testing.T, url string) *fakeProvider {
	t.Helper()
	key, _ := keys.Generate()
	ws := dial(t, url)
	m, err := ws.read(t)
	if err != nil || m.Type != protocol.TypeHello {
		t.Fatalf("hello: %v %v", m, err)
	}
	h := m.Hello
	ws.write(t, &protocol.Message{Type: protocol.TypeAuth, Auth: &protocol.Auth{ProviderKey: key.Public(),
		Signature: key.Sign(protocol.AuthBytes(h.Nonce, h.GatewayKey, h.ChainID)), ProtocolVersion: protocol.Version, Capabilities: caps()}})
	if m, err := ws.read(t); err != nil || m.Type != protocol.TypeWelcome {
		t.Fatalf("welcome: %v %v", m, err)
	}
	return &fakeProvider{key: key, ws: ws}
}

// closeReason reads until the connection closes and returns the close error.
func (ws *peer) closeReason(t *testing.T) websocket.CloseError {
	t.Helper()
	for {
		_, err := ws.read(t)
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		if !errors.As(err, &ce) {
			t.Fatalf("connection ended without a close frame: %v", err)
		}
		return ce
	}
}

func TestHandshakeRejects(t *testing.T) {
	_, url := newHub(t, 10*time.Second)
	key, _ := keys.Generate()
	other, _ := keys.Generate()
	tests := []struct {
		name string
		auth func(h *protocol.Hello) *protocol.Message
		want string
	}{
		{"bad signature", func(h *protocol.Hello) *protocol.Message {
			return &protocol.Message{Type: protocol.TypeAuth, Auth: &protocol.Auth{ProviderKey: key.Public(),
				Signature: other.Sign(protocol.AuthBytes(h.Nonce, h.GatewayKey, h.ChainID)), ProtocolVersion: protocol.Version, Capabilities: caps()}}
		}, "bad auth signature"},
		{"wrong chain signed", func(h *protocol.Hello) *protocol.Message {
			return &protocol.Message{Type: protocol.TypeAuth, Auth: &protocol.Auth{ProviderKey: key.Public(),
				Signature: key.Sign(protocol.AuthBytes(h.Nonce, h.GatewayKey, "other-chain")), ProtocolVersion: protocol.Version, Capabilities: caps()}}
		}, "bad auth signature"},
		{"wrong version", func(h *protocol.Hello) *protocol.Message {
			return &protocol.Message{Type: protocol.TypeAuth, Auth: &protocol.Auth{ProviderKey: key.Public(),
				Signature: key.Sign(protocol.AuthBytes(h.Nonce, h.GatewayKey, h.ChainID)), ProtocolVersion: 99, Capabilities: caps()}}
		}, "version"},
		{"not auth", func(h *protocol.Hello) *protocol.Message {
			return &protocol.Message{Type: protocol.TypePing, Ping: &protocol.Ping{}}
		}, "expected auth"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws := dial(t, url)
			m, err := ws.read(t)
			if err != nil {
				t.Fatal(err)
			}
			ws.write(t, tt.auth(m.Hello))
			ce := ws.closeReason(t)
			if ce.Code != websocket.StatusPolicyViolation || !strings.Contains(ce.Reason, tt.want) {
				t.Fatalf("closed with %d %q, want policy violation mentioning %q", ce.Code, ce.Reason, tt.want)
			}
		})
	}
	t.Run("garbage", func(t *testing.T) {
		ws := dial(t, url)
		if _, err := ws.read(t); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		ws.Write(ctx, websocket.MessageText, []byte("{not json"))
		if ce := ws.closeReason(t); ce.Code != websocket.StatusPolicyViolation {
			t.Fatalf("closed with %v", ce)
		}
	})
}

func job(id string) *protocol.Job {
	return &protocol.Job{ID: id, Request: protocol.Request{Kind: protocol.KindChat, Model: "m"}, Terms: protocol.Terms{RequestID: id}}
}

func TestJobFlowAndProtocolErrors(t *testing.T) {
	h, url := newHub(t, 10*time.Second)
	p := connect(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tstest.WaitFor(t, 5*time.Second, "one provider connected", func() bool { return len(h.Snapshot()) == 1 })
	if !h.KnownModel("m") || h.KnownModel("x") {
		t.Fatal("known models wrong")
	}

	s, err := h.Dispatch(ctx, p.key.Public(), job("j1"))
	if err != nil {
		t.Fatal(err)
	}
	if m, err := p.ws.read(t); err != nil || m.Type != protocol.TypeJob || m.Job.ID != "j1" {
		t.Fatalf("job not delivered: %v %v", m, err)
	}
	// Two chunks in one frame, then done.
	frame, _ := protocol.Encode(nil, &protocol.Message{Type: protocol.TypeChunk, Chunk: &protocol.Chunk{ID: "j1", Seq: 0, Delta: "a"}})
	frame, _ = protocol.Encode(frame, &protocol.Message{Type: protocol.TypeChunk, Chunk: &protocol.Chunk{ID: "j1", Seq: 1, Delta: "b"}})
	p.ws.Write(ctx, websocket.MessageText, frame)
	p.ws.write(t, &protocol.Message{Type: protocol.TypeDone, Done: &protocol.Done{ID: "j1", Chunks: 2, FinishReason: "stop"}})
	var got string
	for {
		ev, err := s.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Chunk != nil {
			got += ev.Chunk.Delta
			continue
		}
		if ev.Done == nil {
			t.Fatalf("unexpected event %+v", ev)
		}
		break
	}
	if got != "ab" {
		t.Fatalf("relayed %q", got)
	}
	tstest.WaitFor(t, 5*time.Second, "no job in flight", func() bool { return h.Snapshot()[0].InFlight == 0 })

	// Slots: two jobs fill the provider.
	s2, _ := h.Dispatch(ctx, p.key.Public(), job("j2"))
	if _, err := h.Dispatch(ctx, p.key.Public(), job("j3")); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Dispatch(ctx, p.key.Public(), job("j4")); !errors.Is(err, ErrNoSlot) {
		t.Fatalf("third job on two slots: %v", err)
	}
	p.ws.read(t)
	p.ws.read(t)

	// A chunk out of sequence is a protocol error: the connection closes
	// and every in-flight job fails with ErrProviderLost.
	p.ws.write(t, &protocol.Message{Type: protocol.TypeChunk, Chunk: &protocol.Chunk{ID: "j2", Seq: 5, Delta: "x"}})
	ev, err := s2.Next(ctx)
	if err != nil || !errors.Is(ev.Err, ErrProviderLost) {
		t.Fatalf("after a sequence error: %+v %v", ev, err)
	}
	if ce := p.ws.closeReason(t); ce.Code != websocket.StatusPolicyViolation || !strings.Contains(ce.Reason, "expected 0") {
		t.Fatalf("closed with %v", ce)
	}
	tstest.WaitFor(t, 5*time.Second, "no provider connected", func() bool { return len(h.Snapshot()) == 0 })
}

func TestUnknownJobClosesConnection(t *testing.T) {
	_, url := newHub(t, 10*time.Second)
	p := connect(t, url)
	p.ws.write(t, &protocol.Message{Type: protocol.TypeDone, Done: &protocol.Done{ID: "ghost", FinishReason: "stop"}})
	if ce := p.ws.closeReason(t); !strings.Contains(ce.Reason, "unknown job") {
		t.Fatalf("closed with %v", ce)
	}
}

func TestSlowConsumerBufferBound(t *testing.T) {
	h, url := newHub(t, 10*time.Second)
	p := connect(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tstest.WaitFor(t, 5*time.Second, "one provider connected", func() bool { return len(h.Snapshot()) == 1 })
	s, err := h.Dispatch(ctx, p.key.Public(), job("big"))
	if err != nil {
		t.Fatal(err)
	}
	p.ws.read(t)
	// 2 KiB of text against a 1 KiB buffer nobody reads.
	for i := range 8 {
		p.ws.write(t, &protocol.Message{Type: protocol.TypeChunk, Chunk: &protocol.Chunk{ID: "big", Seq: uint64(i), Delta: strings.Repeat("x", 256)}})
	}
	m, err := p.ws.read(t)
	if err != nil || m.Type != protocol.TypeCancel || m.Cancel.ID != "big" {
		t.Fatalf("expected a cancel for the overflowing job, got %v %v", m, err)
	}
	var last Event
	for {
		ev, err := s.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Chunk == nil {
			last = ev
			break
		}
	}
	if !errors.Is(last.Err, ErrSlowConsumer) {
		t.Fatalf("stream ended with %+v", last)
	}
	// The provider confirms; the slot is freed.
	p.ws.write(t, &protocol.Message{Type: protocol.TypeError, Error: &protocol.JobError{ID: "big", Code: protocol.CodeCancelled, Message: "cancelled"}})
	tstest.WaitFor(t, 5*time.Second, "no job in flight", func() bool { return h.Snapshot()[0].InFlight == 0 })
}

func TestHeartbeatTimeout(t *testing.T) {
	h, url := newHub(t, 100*time.Millisecond)
	p := connect(t, url)
	tstest.WaitFor(t, 5*time.Second, "one provider connected", func() bool { return len(h.Snapshot()) == 1 })
	// The fake provider never answers pings: after 3 heartbeats it is gone.
	_ = p
	tstest.WaitFor(t, 5*time.Second, "no provider connected", func() bool { return len(h.Snapshot()) == 0 })
}

// TestEmptyChunksCountAgainstTheBuffer: chunks without text still take
// memory; a provider flooding them to an unread job gets the job cancelled.
func TestEmptyChunksCountAgainstTheBuffer(t *testing.T) {
	h, url := newHub(t, 10*time.Second)
	p := connect(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tstest.WaitFor(t, 5*time.Second, "one provider connected", func() bool { return len(h.Snapshot()) == 1 })
	if _, err := h.Dispatch(ctx, p.key.Public(), job("flood")); err != nil {
		t.Fatal(err)
	}
	p.ws.read(t)
	for i := range 64 {
		p.ws.write(t, &protocol.Message{Type: protocol.TypeChunk, Chunk: &protocol.Chunk{ID: "flood", Seq: uint64(i),
			Logprobs: []protocol.TokenLogprob{{Token: "x", Logprob: -1}}}})
	}
	m, err := p.ws.read(t)
	if err != nil || m.Type != protocol.TypeCancel || m.Cancel.ID != "flood" {
		t.Fatalf("expected a cancel for the flooding job, got %v %v", m, err)
	}
}

// TestModelNamesGlobalBound: the hub remembers at most MaxModelNames
// names; names no connected provider offers make room first, and when
// every remembered name is offered, a new advertisement is refused.
func TestModelNamesGlobalBound(t *testing.T) {
	gw, _ := keys.Generate()
	h := New(Config{Key: gw, ChainID: chain, MaxModelNames: 4, MaxModelNamesPerProvider: 4})
	models := func(names ...string) []protocol.Model {
		var ms []protocol.Model
		for _, n := range names {
			ms = append(ms, protocol.Model{Name: n, Digest: "d"})
		}
		return ms
	}
	newProvider := func() *Provider {
		k, _ := keys.Generate()
		return &Provider{Key: k.Public(), hub: h, jobs: map[string]*Stream{}, names: map[string]struct{}{}}
	}
	offer := func(p *Provider, names ...string) error {
		h.mu.Lock()
		defer h.mu.Unlock()
		err := h.offerLocked(p, models(names...))
		if err == nil {
			p.caps.Models = models(names...)
			h.providers[p.Key] = p
		}
		return err
	}
	a, b := newProvider(), newProvider()
	if err := offer(a, "a1", "a2"); err != nil {
		t.Fatal(err)
	}
	if err := offer(a, "a3"); err != nil { // a1, a2 no longer offered
		t.Fatal(err)
	}
	if err := offer(b, "b1", "b2"); err != nil { // table full: a1 goes
		t.Fatal(err)
	}
	if h.KnownModel("a1") || !h.KnownModel("a2") || !h.KnownModel("b2") || len(h.models) != 4 {
		t.Fatalf("after eviction: %v", h.models)
	}
	if err := offer(b, "b1", "b2", "b3"); err != nil { // a2 goes
		t.Fatal(err)
	}
	c := newProvider()
	if err := offer(c, "c1"); !errors.Is(err, ErrTooManyModels) {
		t.Fatalf("every name offered, a new one: %v, want ErrTooManyModels", err)
	}
	if len(h.models) != 4 || h.KnownModel("c1") {
		t.Fatalf("a refused advertisement changed the table: %v", h.models)
	}
	if err := offer(a, "a3", "a4", "a5"); !errors.Is(err, ErrTooManyModels) { // a's fifth name
		t.Fatalf("past the per-connection bound: %v", err)
	}
}
