// Package provider is the provider agent: it dials out to a gateway (no open
// port, works behind NAT), proves its key, advertises the models its local
// backend serves with their digests and prices, runs jobs on the backend,
// streams the text back and signs a receipt for each finished job. It
// reconnects with jittered backoff whenever the connection drops.
package provider

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/link"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// Config configures an Agent.
type Config struct {
	// Gateway is the gateway's base URL (http, https, ws or wss); the
	// protocol path is appended when the URL has no path.
	Gateway string
	// Key is the provider's identity.
	Key keys.PrivateKey
	// Backend does the work.
	Backend backend.Backend
	// Models limits which backend models are offered (empty: all).
	Models []string
	// Slots is how many jobs run at once (default 4).
	Slots int
	// PricePrompt and PriceCompletion are the price floors in base units
	// per million tokens, for every model.
	PricePrompt, PriceCompletion money.Amount
	// Hardware is advertised as is.
	Hardware protocol.Hardware
	// Version is the agent version string.
	Version string
	// ExpectChainID and ExpectGateway, when set, refuse gateways that
	// present another chain or key.
	ExpectChainID string
	ExpectGateway keys.PublicKey
	// CheckpointEvery is the least time between two checkpoints of a job
	// (default DefaultCheckpointEvery): a chunk sent at least this long
	// after the job's previous checkpoint (or its start) carries a signed
	// partial receipt, so that what the provider delivered is paid even if
	// it dies before the end. Tokens sent after a job's last checkpoint are
	// unpaid if it dies. An interval shorter than the time between chunks
	// (time.Nanosecond) signs every chunk: exact, at one ed25519 signature
	// per chunk; negative sends none.
	CheckpointEvery time.Duration
	// Link tunes the connection.
	Link link.Options
	// MinBackoff and MaxBackoff bound the reconnect delay (defaults 250 ms
	// and 30 s); the delay doubles per failure with full jitter.
	MinBackoff, MaxBackoff time.Duration
	// RefusedRetry is how long the agent waits before trying again after
	// the gateway refused to admit it (not registered or staked on the
	// ledger, or jailed): fixing that takes its owner a command, so it
	// does not hammer the gateway meanwhile (default 1 min).
	RefusedRetry time.Duration
	// Refused, when set, is told each refusal (ErrNotAdmitted with the
	// gateway's reason), for the agent's user to see; it is logged too.
	Refused func(error)
	// HTTPClient dials the gateway (default http.DefaultClient).
	HTTPClient *http.Client
	Logger     *slog.Logger
}

// Default prices: 0.2 and 0.6 tokens per million tokens.
const (
	DefaultPricePrompt     money.Amount = 200_000
	DefaultPriceCompletion money.Amount = 600_000
)

// DefaultCheckpointEvery signs every chunk: a provider that dies mid-answer
// is paid for exactly what it delivered and the consumer gets no token
// outside a receipt, at one ed25519 signature per chunk (about 22 µs: 0.2%
// of a core at 100 tokens/s) on the provider and nothing on the gateway's
// happy path. A longer interval trades unbilled tokens for fewer signatures.
const DefaultCheckpointEvery = time.Nanosecond

// Agent is a running provider.
type Agent struct {
	cfg Config
	log *slog.Logger
	url string

	// stateMu orders pause/resume messages: held from deciding the state
	// to sending it, so two quick toggles reach the gateway in order.
	stateMu sync.Mutex
	mu      sync.Mutex
	paused  bool
	reason  string
	cur     *session

	// noLogprobs names the models whose backend returns no
	// log-probabilities, each logged once (under mu).
	noLogprobs map[string]bool

	connected atomic.Bool
	served    atomic.Int64
	failed    atomic.Int64
	tokens    atomic.Int64
	active    atomic.Int64
}

// New checks cfg and returns an Agent; Run starts it.
func New(cfg Config) (*Agent, error) {
	if cfg.Key.IsZero() || cfg.Backend == nil {
		return nil, errors.New("provider: a key and a backend are required")
	}
	u, err := connectURL(cfg.Gateway)
	if err != nil {
		return nil, err
	}
	if cfg.Slots <= 0 {
		cfg.Slots = 4
	}
	if cfg.Slots > protocol.MaxSlots {
		return nil, fmt.Errorf("provider: at most %d slots", protocol.MaxSlots)
	}
	if cfg.CheckpointEvery == 0 {
		cfg.CheckpointEvery = DefaultCheckpointEvery
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 250 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.RefusedRetry <= 0 {
		cfg.RefusedRetry = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Agent{cfg: cfg, log: cfg.Logger, url: u}, nil
}

// connectURL turns a gateway base URL into the WebSocket URL to dial.
func connectURL(gateway string) (string, error) {
	u, err := url.Parse(gateway)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("provider: gateway URL %q: want http://host:port", gateway)
	}
	switch u.Scheme {
	case "http", "ws":
		u.Scheme = "ws"
	case "https", "wss":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("provider: gateway URL %q: scheme must be http, https, ws or wss", gateway)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = protocol.Path
	}
	return u.String(), nil
}

// Status is what the agent is doing.
type Status struct {
	Connected bool
	Paused    bool
	Reason    string
	Served    int64
	Failed    int64
	Tokens    int64
	Active    int64
}

// Status returns a snapshot.
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	return Status{Connected: a.connected.Load(), Paused: a.paused, Reason: a.reason, Served: a.served.Load(),
		Failed: a.failed.Load(), Tokens: a.tokens.Load(), Active: a.active.Load()}
}

// ActiveJobs is how many jobs are running.
func (a *Agent) ActiveJobs() int { return int(a.active.Load()) }

// Pause stops new jobs from being routed here; running jobs finish.
func (a *Agent) Pause(reason string) { a.setPaused(true, reason) }

// Resume takes jobs again.
func (a *Agent) Resume() { a.setPaused(false, "") }

func (a *Agent) setPaused(paused bool, reason string) {
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	a.mu.Lock()
	changed := a.paused != paused
	a.paused, a.reason = paused, reason
	s := a.cur
	a.mu.Unlock()
	if changed && s != nil {
		s.sendState(paused, reason)
	}
}

// ErrWrongGateway is returned by Run when the gateway is not the one the
// agent was configured for (chain, key or protocol version): retrying cannot
// fix that.
var ErrWrongGateway = errors.New("wrong gateway")

// ErrNotAdmitted is wrapped by the error of a session the gateway refused
// at the handshake although it signed correctly: the gateway's reason
// says what to do (typically `idlegrid provide init`). Run retries after
// Config.RefusedRetry.
var ErrNotAdmitted = protocol.ErrNotAdmitted

// Run connects and serves until ctx ends, reconnecting after failures. It
// returns nil when ctx ends, or an error wrapping ErrWrongGateway.
func (a *Agent) Run(ctx context.Context) error {
	backoff := a.cfg.MinBackoff
	for {
		start := time.Now()
		err := a.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrWrongGateway) {
			return err
		}
		if time.Since(start) > time.Minute {
			backoff = a.cfg.MinBackoff // it was a healthy connection
		}
		delay := time.Duration(rand.Int64N(int64(backoff)) + 1)
		if errors.Is(err, ErrNotAdmitted) {
			delay = a.cfg.RefusedRetry
			a.log.Error("the gateway refuses this provider: "+err.Error(), "gateway", a.cfg.Gateway, "provider", a.cfg.Key.Public().String(), "retry_in", delay)
			if a.cfg.Refused != nil {
				a.cfg.Refused(err)
			}
		} else {
			a.log.Warn("gateway connection ended; reconnecting", "gateway", a.cfg.Gateway, "err", err, "retry_in", delay.Round(time.Millisecond))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		backoff = min(2*backoff, a.cfg.MaxBackoff)
	}
}

// capabilities builds what the agent advertises from the backend's models.
func (a *Agent) capabilities(ctx context.Context) (protocol.Capabilities, error) {
	models, err := a.cfg.Backend.Models(ctx)
	if err != nil {
		return protocol.Capabilities{}, fmt.Errorf("list backend models: %w", err)
	}
	caps := protocol.Capabilities{Slots: a.cfg.Slots, Hardware: a.cfg.Hardware, AgentVersion: a.cfg.Version}
	for _, m := range models {
		if len(a.cfg.Models) > 0 && !wanted(a.cfg.Models, m.Name) {
			continue
		}
		if m.NoLogprobs {
			a.noteNoLogprobs(m.Name)
		}
		// Always a list, so the gateway knows this agent takes structured
		// output (older agents list none).
		mcaps := m.Capabilities
		if len(mcaps) == 0 {
			mcaps = []string{protocol.CapCompletion}
		}
		caps.Models = append(caps.Models, protocol.Model{
			Name: m.Name, Digest: m.Digest, BackendDigest: m.BackendDigest, Quantization: m.Quantization, Family: m.Family, ParameterSize: m.ParameterSize,
			ContextLength: m.ContextLength, PricePromptPerMTok: a.cfg.PricePrompt, PriceCompletionPerMTok: a.cfg.PriceCompletion,
			NoLogprobs: a.lacksLogprobs(m.Name), Capabilities: mcaps,
		})
	}
	if len(caps.Models) == 0 {
		return caps, fmt.Errorf("the backend serves none of the models to offer (%s); pull one first", strings.Join(a.cfg.Models, ", "))
	}
	return caps, caps.Validate()
}

// noteNoLogprobs records that the backend returns no log-probabilities for
// model, logging it the first time; it reports whether this was news.
func (a *Agent) noteNoLogprobs(model string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.noLogprobs[model] {
		return false
	}
	if a.noLogprobs == nil {
		a.noLogprobs = map[string]bool{}
	}
	a.noLogprobs[model] = true
	a.log.Warn("the backend returns no log-probabilities for this model (Ollama before 0.12.11?); the gateway will place requests that ask for them on other providers",
		"model", model)
	return true
}

func (a *Agent) lacksLogprobs(model string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.noLogprobs[model]
}

// wanted matches a configured model name against a backend name, treating
// "name" and "name:latest" as the same model, as Ollama does.
func wanted(names []string, model string) bool {
	for _, n := range names {
		if n == model || n+":latest" == model || n == model+":latest" {
			return true
		}
	}
	return false
}

func (a *Agent) session(ctx context.Context) error {
	caps, err := a.capabilities(ctx)
	if err != nil {
		return err
	}
	dialCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(dialCtx, a.url, &websocket.DialOptions{HTTPClient: a.cfg.HTTPClient})
	if err != nil {
		return fmt.Errorf("dial %s: %w", a.url, err)
	}
	l := link.New(ws, a.cfg.Link)
	hello, err := a.handshake(dialCtx, l, caps)
	if err != nil {
		l.Close(err)
		<-l.Done()
		return err
	}
	s := &session{agent: a, link: l, hello: hello, caps: caps, jobs: map[string]context.CancelFunc{}}
	a.stateMu.Lock()
	a.mu.Lock()
	a.cur = s
	paused, reason := a.paused, a.reason
	a.mu.Unlock()
	if paused {
		s.sendState(true, reason)
	}
	a.stateMu.Unlock()
	a.connected.Store(true)
	a.log.Info("connected to gateway", "gateway", a.cfg.Gateway, "provider", a.cfg.Key.Public().String(), "models", len(caps.Models))
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	err = l.Run(runCtx, func(m *protocol.Message) error { return s.handle(runCtx, m) })
	a.connected.Store(false)
	a.mu.Lock()
	if a.cur == s {
		a.cur = nil
	}
	a.mu.Unlock()
	stop()
	s.wait()
	return err
}

func (a *Agent) handshake(ctx context.Context, l *link.Link, caps protocol.Capabilities) (*protocol.Hello, error) {
	m, err := l.ReadOne(ctx)
	if err != nil {
		return nil, fmt.Errorf("read hello: %w", err)
	}
	if m.Type != protocol.TypeHello {
		return nil, fmt.Errorf("%w: expected hello, got %s", protocol.ErrProtocol, m.Type)
	}
	h := m.Hello
	// Speak the gateway's version when it is older: a version-1 gateway
	// gets no checkpoints (see session.run).
	version := min(h.ProtocolVersion, protocol.Version)
	if !protocol.Supported(version) {
		return nil, fmt.Errorf("%w: it speaks protocol version %d, this agent %d to %d: upgrade one of them", ErrWrongGateway, h.ProtocolVersion, protocol.MinVersion, protocol.Version)
	}
	if a.cfg.ExpectChainID != "" && h.ChainID != a.cfg.ExpectChainID {
		return nil, fmt.Errorf("%w: it is on chain %q, expected %q", ErrWrongGateway, h.ChainID, a.cfg.ExpectChainID)
	}
	if !a.cfg.ExpectGateway.IsZero() && h.GatewayKey != a.cfg.ExpectGateway {
		return nil, fmt.Errorf("%w: its key is %s, expected %s", ErrWrongGateway, h.GatewayKey, a.cfg.ExpectGateway)
	}
	auth := &protocol.Auth{
		ProviderKey:     a.cfg.Key.Public(),
		Signature:       a.cfg.Key.Sign(protocol.AuthBytes(h.Nonce, h.GatewayKey, h.ChainID)),
		ProtocolVersion: version,
		Capabilities:    caps,
	}
	if err := l.WriteOne(ctx, &protocol.Message{Type: protocol.TypeAuth, Auth: auth}); err != nil {
		return nil, fmt.Errorf("send auth: %w", err)
	}
	m, err = l.ReadOne(ctx)
	if websocket.CloseStatus(err) == protocol.StatusNotAdmitted {
		var ce websocket.CloseError
		errors.As(err, &ce)
		return nil, fmt.Errorf("%w: %s", ErrNotAdmitted, strings.TrimPrefix(ce.Reason, ErrNotAdmitted.Error()+": "))
	}
	if err != nil {
		return nil, fmt.Errorf("gateway refused the handshake: %w", err)
	}
	if m.Type != protocol.TypeWelcome {
		return nil, fmt.Errorf("%w: expected welcome, got %s", protocol.ErrProtocol, m.Type)
	}
	l.SetHeartbeat(time.Duration(m.Welcome.HeartbeatMs) * time.Millisecond)
	return h, nil
}
