// Package hub is the gateway's side of provider connections: it accepts the
// WebSocket at protocol.Path, runs the challenge-response handshake that
// binds the provider key to this gateway and chain, keeps the live set of
// providers with their capabilities and load, dispatches jobs and routes
// each incoming chunk to its job's Stream.
package hub

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/link"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// Config configures a Hub.
type Config struct {
	// Key is the gateway's identity, sent in hello.
	Key keys.PrivateKey
	// ChainID is the ledger the gateway settles on.
	ChainID string
	// Link tunes connections (heartbeat, limits).
	Link link.Options
	// HandshakeTimeout bounds hello → welcome (default 10 s).
	HandshakeTimeout time.Duration
	// MaxJobBufferBytes bounds the text buffered for one job whose consumer
	// reads slowly (default 4 MiB).
	MaxJobBufferBytes int
	// Guard limits connection attempts per address and bans repeated
	// failed handshakes; nil: the defaults of Guard.
	Guard *Guard
	// MaxModelNames bounds the model names the hub remembers (default
	// 8192), and MaxModelNamesPerProvider the names one connection may
	// advertise over its life (default 2 × protocol.MaxModels); an
	// advertisement past either is refused (models.go).
	MaxModelNames            int
	MaxModelNamesPerProvider int
	// Admit, when set, decides after the handshake's signature check
	// whether the provider may serve here (e.g. it is registered and
	// staked on the ledger); its error refuses the connection, and its
	// text is the close reason the provider sees. SetAdmit sets it later.
	Admit  func(ctx context.Context, key keys.PublicKey) error
	Logger *slog.Logger
}

// ErrNotAdmitted is wrapped by the Admit hook's refusals: the provider
// signed correctly but may not serve here. The connection closes with
// protocol.StatusNotAdmitted, so that the agent tells its user instead of
// retrying at once.
var ErrNotAdmitted = protocol.ErrNotAdmitted

// Errors from Dispatch.
var (
	ErrNoSlot       = errors.New("provider has no free slot")
	ErrPaused       = errors.New("provider is paused")
	ErrNotConnected = errors.New("provider not connected")
	// ErrCongested: the provider is not reading what the gateway sends
	// (its outgoing queue is full); place the job elsewhere.
	ErrCongested = errors.New("provider congested: not reading its connection")
)

// Hub tracks connected providers.
type Hub struct {
	cfg Config
	log *slog.Logger

	admit func(ctx context.Context, key keys.PublicKey) error // set before serving

	mu        sync.Mutex
	providers map[keys.PublicKey]*Provider
	models    map[string]time.Time // model names offered since start (bounded, models.go), when last offered
	changed   chan struct{}        // closed and replaced when capacity may have appeared
}

// New returns a Hub.
func New(cfg Config) *Hub {
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.MaxJobBufferBytes <= 0 {
		cfg.MaxJobBufferBytes = 4 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Guard == nil {
		cfg.Guard = &Guard{}
	}
	if cfg.MaxModelNames <= 0 {
		cfg.MaxModelNames = DefaultMaxModelNames
	}
	if cfg.MaxModelNamesPerProvider <= 0 {
		cfg.MaxModelNamesPerProvider = 2 * protocol.MaxModels
	}
	return &Hub{cfg: cfg, log: cfg.Logger, admit: cfg.Admit, providers: map[keys.PublicKey]*Provider{}, models: map[string]time.Time{}, changed: make(chan struct{})}
}

// SetAdmit sets Config.Admit; call it before serving.
func (h *Hub) SetAdmit(admit func(ctx context.Context, key keys.PublicKey) error) { h.admit = admit }

// Disconnect closes the connection of the provider with key, if it is
// connected, with why as the close reason: its in-flight jobs fail with
// ErrProviderLost (and move to other providers). It reports whether the
// provider was connected.
func (h *Hub) Disconnect(key keys.PublicKey, why error) bool {
	h.mu.Lock()
	p := h.providers[key]
	h.mu.Unlock()
	if p == nil {
		return false
	}
	p.link.Close(why)
	return true
}

// Provider is one connected provider.
type Provider struct {
	Key         keys.PublicKey
	ConnectedAt time.Time
	// ProtocolVersion is the version the provider spoke at the handshake.
	ProtocolVersion int

	hub  *Hub
	link *link.Link

	mu       sync.Mutex
	caps     protocol.Capabilities
	paused   bool
	inflight int
	jobs     map[string]*Stream
	// names is every model name this connection advertised, and
	// capsRefused whether an advertisement was refused (both guarded by
	// hub.mu).
	names       map[string]struct{}
	capsRefused bool
}

// Info is a snapshot of a provider for scheduling and display.
type Info struct {
	Key          keys.PublicKey
	Capabilities protocol.Capabilities
	// ProtocolVersion is the version the provider speaks: what kinds of
	// job it can take (protocol.EmbedSince).
	ProtocolVersion int
	Paused          bool
	InFlight        int
	ConnectedAt     time.Time
	// Congested: the provider is not reading its connection; it has no
	// free slot until it catches up or is dropped.
	Congested bool
}

// Free is the number of free slots.
func (i *Info) Free() int {
	if i.Congested {
		return 0
	}
	return i.Capabilities.Slots - i.InFlight
}

// Model returns the provider's entry for a model name.
func (i *Info) Model(name string) (protocol.Model, bool) {
	for _, m := range i.Capabilities.Models {
		if m.Name == name {
			return m, true
		}
	}
	return protocol.Model{}, false
}

// Snapshot lists connected providers, ordered by key.
func (h *Hub) Snapshot() []Info {
	h.mu.Lock()
	ps := make([]*Provider, 0, len(h.providers))
	for _, p := range h.providers {
		ps = append(ps, p)
	}
	h.mu.Unlock()
	out := make([]Info, 0, len(ps))
	for _, p := range ps {
		p.mu.Lock()
		out = append(out, Info{Key: p.Key, Capabilities: p.caps, ProtocolVersion: p.ProtocolVersion, Paused: p.paused, InFlight: p.inflight, ConnectedAt: p.ConnectedAt, Congested: p.link.Congested()})
		p.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return string(out[i].Key[:]) < string(out[j].Key[:]) })
	return out
}

// KnownModel reports whether any provider has offered the model since the
// hub started (to tell "no such model" from "no provider online now").
func (h *Hub) KnownModel(name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.models[name]
	return ok
}

// Changed returns a channel closed at the next change that may free
// capacity: a provider connected, resumed, updated its capabilities or
// finished a job.
func (h *Hub) Changed() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.changed
}

func (h *Hub) signal() {
	h.mu.Lock()
	close(h.changed)
	h.changed = make(chan struct{})
	h.mu.Unlock()
}

// Dispatch sends job to the provider with key and returns its stream.
func (h *Hub) Dispatch(ctx context.Context, key keys.PublicKey, job *protocol.Job) (*Stream, error) {
	h.mu.Lock()
	p := h.providers[key]
	h.mu.Unlock()
	if p == nil {
		return nil, ErrNotConnected
	}
	s := &Stream{p: p, id: job.ID, maxBytes: h.cfg.MaxJobBufferBytes, notify: make(chan struct{}, 1)}
	p.mu.Lock()
	switch {
	case p.paused:
		p.mu.Unlock()
		return nil, ErrPaused
	case p.inflight >= p.caps.Slots:
		p.mu.Unlock()
		return nil, ErrNoSlot
	case p.jobs[job.ID] != nil:
		p.mu.Unlock()
		return nil, fmt.Errorf("job %q already running", job.ID)
	}
	p.jobs[job.ID] = s
	p.inflight++
	p.mu.Unlock()
	// Never wait on one provider: a full queue means it is not reading,
	// and the job is better placed on another at once.
	if err := p.link.TrySend(&protocol.Message{Type: protocol.TypeJob, Job: job}); err != nil {
		p.finish(job.ID)
		if errors.Is(err, link.ErrFull) {
			return nil, ErrCongested
		}
		return nil, fmt.Errorf("%w: %w", ErrProviderLost, err)
	}
	return s, nil
}

// finish removes a job and frees its slot.
func (p *Provider) finish(id string) *Stream {
	p.mu.Lock()
	s := p.jobs[id]
	if s != nil {
		delete(p.jobs, id)
		p.inflight--
	}
	p.mu.Unlock()
	if s != nil {
		p.hub.signal()
	}
	return s
}

// ServeHTTP accepts a provider connection.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if ok, wait := h.cfg.Guard.allow(r); !ok {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(wait.Seconds()+0.999))))
		http.Error(w, "too many provider connection attempts from this address, or too many failed handshakes; retry later", http.StatusTooManyRequests)
		return
	}
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		h.log.Debug("provider websocket rejected", "remote", r.RemoteAddr, "err", err)
		return
	}
	l := link.New(ws, h.cfg.Link)
	p, err := h.handshake(r.Context(), l)
	if err != nil {
		h.cfg.Guard.failed(r)
		h.log.Info("provider handshake failed", "remote", r.RemoteAddr, "err", err)
		l.Close(err)
		<-l.Done()
		return
	}
	h.log.Info("provider connected", "provider", p.Key.String(), "remote", r.RemoteAddr, "models", len(p.caps.Models), "slots", p.caps.Slots)
	err = l.Run(r.Context(), p.handle)
	h.drop(p, err)
	h.log.Info("provider disconnected", "provider", p.Key.String(), "reason", err)
}

func (h *Hub) handshake(ctx context.Context, l *link.Link) (*Provider, error) {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.HandshakeTimeout)
	defer cancel()
	nonce := make([]byte, protocol.NonceSize)
	rand.Read(nonce)
	gw := h.cfg.Key.Public()
	hello := &protocol.Hello{Nonce: nonce, GatewayKey: gw, ChainID: h.cfg.ChainID, ProtocolVersion: protocol.Version}
	if err := l.WriteOne(ctx, &protocol.Message{Type: protocol.TypeHello, Hello: hello}); err != nil {
		return nil, fmt.Errorf("send hello: %w", err)
	}
	m, err := l.ReadOne(ctx)
	if err != nil {
		return nil, fmt.Errorf("read auth: %w", err)
	}
	if m.Type != protocol.TypeAuth {
		return nil, fmt.Errorf("%w: expected auth, got %s", protocol.ErrProtocol, m.Type)
	}
	a := m.Auth
	if !protocol.Supported(a.ProtocolVersion) {
		return nil, fmt.Errorf("%w: provider speaks protocol version %d, gateway %d to %d", protocol.ErrProtocol, a.ProtocolVersion, protocol.MinVersion, protocol.Version)
	}
	if !a.ProviderKey.Verify(protocol.AuthBytes(nonce, gw, h.cfg.ChainID), a.Signature) {
		return nil, fmt.Errorf("%w: bad auth signature for provider %s", protocol.ErrProtocol, a.ProviderKey)
	}
	if h.admit != nil {
		if err := h.admit(ctx, a.ProviderKey); err != nil {
			return nil, err
		}
	}
	heartbeat := h.cfg.Link.Heartbeat
	if heartbeat <= 0 {
		heartbeat = link.DefaultHeartbeat
	}
	// Register before the welcome, so that a provider that has been welcomed
	// is always routable. A job dispatched in between waits in the link's
	// queue and goes out after the welcome, when the link runs.
	p := &Provider{Key: a.ProviderKey, ConnectedAt: time.Now(), ProtocolVersion: a.ProtocolVersion, hub: h, link: l, caps: a.Capabilities, jobs: map[string]*Stream{}, names: map[string]struct{}{}}
	h.mu.Lock()
	if err := h.offerLocked(p, a.Capabilities.Models); err != nil {
		h.mu.Unlock()
		return nil, err
	}
	old := h.providers[p.Key]
	h.providers[p.Key] = p
	h.mu.Unlock()
	if old != nil {
		old.link.Close(errors.New("replaced by a newer connection of the same provider"))
	}
	if err := l.WriteOne(ctx, &protocol.Message{Type: protocol.TypeWelcome, Welcome: &protocol.Welcome{HeartbeatMs: heartbeat.Milliseconds()}}); err != nil {
		h.drop(p, err)
		return nil, fmt.Errorf("send welcome: %w", err)
	}
	h.signal()
	return p, nil
}

// Close disconnects every provider (at shutdown): their in-flight jobs fail
// with ErrProviderLost and the agents reconnect elsewhere or later.
func (h *Hub) Close() {
	h.mu.Lock()
	ps := make([]*Provider, 0, len(h.providers))
	for _, p := range h.providers {
		ps = append(ps, p)
	}
	h.mu.Unlock()
	for _, p := range ps {
		p.link.Close(errors.New("gateway shutting down"))
	}
}

// drop forgets a provider whose link ended and fails its jobs.
func (h *Hub) drop(p *Provider, cause error) {
	h.mu.Lock()
	if h.providers[p.Key] == p {
		delete(h.providers, p.Key)
	}
	h.mu.Unlock()
	p.mu.Lock()
	jobs := p.jobs
	p.jobs = map[string]*Stream{}
	p.inflight = 0
	p.mu.Unlock()
	for _, s := range jobs {
		s.push(Event{Err: fmt.Errorf("%w: %v", ErrProviderLost, cause)})
	}
	h.signal()
}

// handle processes one message from the provider (on the link's reader).
func (p *Provider) handle(m *protocol.Message) error {
	switch m.Type {
	case protocol.TypeChunk:
		c := m.Chunk
		s, err := p.job(c.ID)
		if err != nil {
			return err
		}
		s.mu.Lock()
		seq := s.nextSeq
		s.nextSeq++
		s.mu.Unlock()
		if c.Seq != seq {
			return fmt.Errorf("%w: job %q chunk %d, expected %d", protocol.ErrProtocol, c.ID, c.Seq, seq)
		}
		if !s.push(Event{Chunk: c}) {
			go s.sendCancel()
		}
	case protocol.TypeDone:
		d := m.Done
		s, err := p.job(d.ID)
		if err != nil {
			return err
		}
		s.mu.Lock()
		sent := s.nextSeq
		s.mu.Unlock()
		if d.Chunks != sent {
			return fmt.Errorf("%w: job %q done after %d chunks, %d received", protocol.ErrProtocol, d.ID, d.Chunks, sent)
		}
		p.finish(d.ID)
		s.push(Event{Done: d})
	case protocol.TypeError:
		e := m.Error
		if _, err := p.job(e.ID); err != nil {
			return err
		}
		s := p.finish(e.ID)
		s.push(Event{Err: &JobError{Code: e.Code, Message: e.Message}})
	case protocol.TypePause, protocol.TypeResume:
		p.mu.Lock()
		p.paused = m.Type == protocol.TypePause
		p.mu.Unlock()
		p.hub.log.Info("provider "+string(m.Type)+"d", "provider", p.Key.String())
		p.hub.signal()
	case protocol.TypeCapabilities:
		p.hub.mu.Lock()
		err := p.hub.offerLocked(p, m.Capabilities.Models)
		first := err != nil && !p.capsRefused
		p.capsRefused = p.capsRefused || err != nil
		p.hub.mu.Unlock()
		if err != nil {
			// Refused whole: the connection keeps serving what it
			// advertised before. Logged once per connection, so that a
			// flood of advertisements is not a flood of log lines.
			if first {
				p.hub.log.Warn("provider capabilities refused", "provider", p.Key.String(), "err", err)
			}
			return nil
		}
		p.mu.Lock()
		p.caps = *m.Capabilities
		p.mu.Unlock()
		p.hub.signal()
	default:
		return fmt.Errorf("%w: unexpected %s from provider", protocol.ErrProtocol, m.Type)
	}
	return nil
}

func (p *Provider) job(id string) (*Stream, error) {
	p.mu.Lock()
	s := p.jobs[id]
	p.mu.Unlock()
	if s == nil {
		return nil, fmt.Errorf("%w: message for unknown job %q", protocol.ErrProtocol, id)
	}
	return s, nil
}

// sendCancel tells the provider to stop a job the gateway gave up on.
func (s *Stream) sendCancel() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.p.link.Send(ctx, &protocol.Message{Type: protocol.TypeCancel, Cancel: &protocol.Cancel{ID: s.id}})
}
