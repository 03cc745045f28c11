// Package gateway is the consumer-facing side of the network: the
// OpenAI-compatible (/v1) and Ollama-compatible (/api) HTTP APIs, API-key
// authentication, admission and queueing, the relay that streams a job from
// a provider to the consumer, and the receipt that is verified, countersigned
// and stored before the consumer sees the end of the stream.
package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/hub"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/metrics"
	"github.com/idlegrid/idlegrid/internal/scheduler"
	"github.com/idlegrid/idlegrid/internal/store"
)

// Config configures a Gateway.
type Config struct {
	// Key is the gateway's identity; it countersigns receipts.
	Key keys.PrivateKey
	// ChainID names the ledger receipts settle on.
	ChainID string
	// Store holds API keys and receipts.
	Store *store.Store
	// Hub holds the provider connections.
	Hub *hub.Hub
	// Metrics, when set, records requests, tokens and queue for /metrics.
	Metrics *metrics.Gateway
	// OnStages, when set, is called with the stage durations of every
	// served request, on the request's goroutine once its answer's end is
	// written: for performance work (`idlegrid bench overhead`); it must
	// be quick.
	OnStages func(Stages)
	// MaxBodyBytes bounds a request body (default 8 MiB).
	MaxBodyBytes int64
	// DefaultMaxTokens applies when a request sets no limit (default 1024).
	DefaultMaxTokens int
	// QueueTimeout is how long a request waits for a busy provider's slot
	// (default 30 s); MaxQueued bounds the waiting requests (default 1024);
	// past either, the consumer gets 429.
	QueueTimeout time.Duration
	MaxQueued    int
	// ReconnectGrace is how long after the gateway starts a request for a
	// model its store served in the last RecentlyServed, and no connected
	// provider offers yet, waits for one to connect: a restarted gateway's
	// providers are reconnecting (default 10 s; negative: no wait). For
	// RecentlyServed after the start such a model is answered 503
	// (temporarily unavailable), not 404 (default 10 min).
	ReconnectGrace time.Duration
	RecentlyServed time.Duration
	// JobTimeout bounds a request from admission to done, across every
	// provider it takes (default 10 min).
	JobTimeout time.Duration
	// FirstTokenTimeout is how long a streamed job may go without its first
	// token before the gateway cancels it and moves the request to another
	// provider (default 30 s). Buffered (non-streamed) jobs deliver their
	// text in one piece at the end, so only JobTimeout bounds them.
	FirstTokenTimeout time.Duration
	// TokenTimeout is how long a streamed job may go between two tokens
	// after the first (default 30 s); a stalled provider is cancelled and
	// another continues the answer.
	TokenTimeout time.Duration
	// ConsumerWriteTimeout bounds each write of an answer to the consumer
	// (default 30 s): a consumer that stops reading is cut when it
	// passes, its job cancelled, the provider paid up to its latest
	// checkpoint and the reservation released (consumer.go).
	ConsumerWriteTimeout time.Duration
	// MaxAttempts bounds the providers one request may take, counting
	// retries and continuations (default 4).
	MaxAttempts int
	// BreakerThreshold consecutive failed jobs open a provider's circuit
	// breaker: it gets no requests for BreakerCooldown, then one trial
	// (defaults 3 and 10 s).
	BreakerThreshold int
	BreakerCooldown  time.Duration
	// Now is the clock of the circuit breakers (default time.Now); tests
	// set it to pass a cool-down without waiting.
	Now func() time.Time
	// Version is reported by /api/version.
	Version string
	Logger  *slog.Logger

	// Ledger, when set, makes admission check each consumer's funds on
	// the chain (402 when they do not cover a request) and settles stored
	// receipts there (RunSettlement). Without it requests are served
	// without a funds check and receipts stay in the store.
	Ledger Chain
	// AllowUnregisteredProviders serves, with a Ledger, providers the
	// ledger does not admit (unregistered, staked below
	// min_provider_stake, or jailed are still never routed to when
	// jailed): for a closed deployment whose providers are all trusted.
	// Off by default: an open gateway serves only providers with stake at
	// risk (ledgersync.go).
	AllowUnregisteredProviders bool
	// ProbationCases is how many cases a provider must pass on the ledger
	// before the gateway stops capping its traffic (default
	// DefaultProbationCases; negative: no probation), and ProbationShare
	// the most of a model's requests a provider on probation gets while
	// others have free slots (default DefaultProbationShare); see
	// probation.go.
	ProbationCases int
	ProbationShare float64
	// BlockPoll is how often the gateway asks the ledger for its latest
	// height; at each new block it re-reads the providers' standing
	// (default 200 ms).
	BlockPoll time.Duration
	// FundsTTL is how long a consumer's funds read from the ledger are
	// reused (default 2 s).
	FundsTTL time.Duration
	// SharedFunds, when set with Ledger, holds admission reservations in
	// a database shared with the other gateways serving the same
	// consumers (PostgreSQL), so that together they never admit more than
	// a consumer's balance; without it they are kept in memory.
	SharedFunds SharedFunds
	// SettleBatchSize receipts make a batch (default 1000); a partial batch
	// goes out every SettleInterval (default 2 s); at most SettleInFlight
	// batches await the ledger at once (default 2).
	SettleBatchSize int
	SettleInterval  time.Duration
	SettleInFlight  int
	// KeepSettled is how long a settled receipt stays in the store after
	// settlement; older ones are deleted (the ledger's blocks keep every
	// settled receipt). 0 keeps them forever.
	KeepSettled time.Duration

	// FeeBps is the gateway's fee in basis points of the consumer price:
	// consumers pay each provider's floor divided by (1 − FeeBps/10000),
	// rounded up to a base unit, so the provider keeps at least its floor
	// once that share is taken out. This price is what /v1/models shows,
	// what max_price is checked against and what receipts bill. The ledger
	// splits every receipt's amount by its own gateway_fee_bps and
	// protocol_fee_bps; set FeeBps to their sum for providers to earn their
	// floors. 0 (default): consumers pay the floors.
	FeeBps uint32
	// Policy selects how the scheduler picks among eligible providers. The
	// zero value is the marketplace policy; the others are baselines for
	// `idlegrid bench routing`.
	Policy scheduler.Policy
	// Keyless lists the client addresses whose requests without an API
	// key are served, billed to KeylessAccount (keyless.go): the TCP
	// peer's address, never a header. Empty (the default): every request
	// needs a key. `idlegrid up` sets LoopbackPrefixes.
	Keyless        []netip.Prefix
	KeylessAccount keys.Address
	// Web, when set, serves the web UI under /ui/ (and / redirects there)
	// and the browser provider page at /contribute.
	Web http.Handler
	// Samples configures the feed of sampled responses for verifiers
	// (samples.go).
	Samples SampleConfig
	// Peers, for gateways sharing a database, lists the models peer
	// gateways serve; the model lists show them beside the local ones,
	// since requests for them are forwarded (see Forwarder).
	Peers PeerCatalog
	// ResponseMemory bounds the bytes of conversation /v1/responses keeps
	// in memory for previous_response_id (default
	// DefaultResponseMemory; negative keeps none), each for ResponseTTL
	// (default DefaultResponseTTL).
	ResponseMemory int64
	ResponseTTL    time.Duration
	// Forwarder, for gateways sharing a database, is placement's
	// candidate beyond this gateway: a peer gateway takes the requests no
	// provider here can (Peering implements it; see serve in place.go).
	Forwarder Forwarder
}

// Forwarder reaches the peer gateways.
type Forwarder interface {
	// Peer is the peer gateway with the most free slots for model, if any
	// publishes it.
	Peer(ctx context.Context, model string) (store.PeerModel, bool)
	// Forward relays the request (its body already read) to peer and the
	// peer's answer back; unreachable is the consumer's error when the
	// peer cannot be reached.
	Forward(w http.ResponseWriter, r *http.Request, body []byte, peer store.PeerModel, model, unreachable string)
}

// PeerCatalog is what the model lists need from the peer directory;
// *store.Store implements it.
type PeerCatalog interface {
	PeerModels(ctx context.Context, except keys.PublicKey) ([]store.PeerModel, error)
}

// MinKeepSettled is the shortest retention of settled receipts: gateways
// sharing a database count receipts settled in the last seconds as pending
// while their ledger readings catch up, and consumers fetch their receipts
// after the answer.
const MinKeepSettled = time.Hour

// Gateway serves the consumer APIs.
type Gateway struct {
	cfg    Config
	log    *slog.Logger
	sched  *scheduler.Scheduler
	queued atomic.Int64 // requests waiting for a slot (MaxQueued bounds it)
	// waiting holds them in line, placed in arrival order (queue.go).
	waiting *lines
	// started is when the gateway was made: the reconnect grace runs from
	// it. served are the models its store served within RecentlyServed
	// before it started (read once, at start).
	started time.Time
	served  map[string]bool
	health  *health
	// adm holds the connected providers' standing on the ledger
	// (ledgersync.go).
	adm     admission
	prob    probation   // probation.go
	funds   *funds      // nil without a ledger
	settle  *settlement // nil without a ledger
	samples *sampleFeed // nil when no responses are sampled

	// kept holds the conversations /v1/responses keeps (responses.go).
	kept responseMemory
}

// New checks cfg and returns a Gateway.
func New(cfg Config) (*Gateway, error) {
	if cfg.Key.IsZero() || cfg.Store == nil || cfg.Hub == nil || cfg.ChainID == "" {
		return nil, errors.New("gateway: key, store, hub and chain id are required")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 8 << 20
	}
	if cfg.DefaultMaxTokens <= 0 {
		cfg.DefaultMaxTokens = 1024
	}
	if cfg.QueueTimeout <= 0 {
		cfg.QueueTimeout = 30 * time.Second
	}
	if cfg.ReconnectGrace == 0 {
		cfg.ReconnectGrace = 10 * time.Second
	}
	if cfg.RecentlyServed <= 0 {
		cfg.RecentlyServed = 10 * time.Minute
	}
	if cfg.MaxQueued <= 0 {
		cfg.MaxQueued = 1024
	}
	if cfg.JobTimeout <= 0 {
		cfg.JobTimeout = 10 * time.Minute
	}
	if cfg.FirstTokenTimeout <= 0 {
		cfg.FirstTokenTimeout = 30 * time.Second
	}
	if cfg.TokenTimeout <= 0 {
		cfg.TokenTimeout = 30 * time.Second
	}
	if cfg.ConsumerWriteTimeout <= 0 {
		cfg.ConsumerWriteTimeout = DefaultConsumerWriteTimeout
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 4
	}
	if cfg.BreakerThreshold <= 0 {
		cfg.BreakerThreshold = 3
	}
	if cfg.BreakerCooldown <= 0 {
		cfg.BreakerCooldown = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Version == "" {
		cfg.Version = "0.0.0-dev"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.FundsTTL <= 0 {
		cfg.FundsTTL = 2 * time.Second
	}
	if cfg.BlockPoll <= 0 {
		cfg.BlockPoll = defaultBlockPoll
	}
	if cfg.ProbationCases == 0 {
		cfg.ProbationCases = DefaultProbationCases
	}
	if cfg.ProbationShare > 1 {
		return nil, fmt.Errorf("gateway: probation share %g: want a fraction of requests, at most 1", cfg.ProbationShare)
	}
	if cfg.ProbationShare <= 0 {
		cfg.ProbationShare = DefaultProbationShare
	}
	if cfg.SettleBatchSize <= 0 {
		cfg.SettleBatchSize = 1000
	}
	if cfg.SettleInterval <= 0 {
		cfg.SettleInterval = 2 * time.Second
	}
	if cfg.SettleInFlight <= 0 {
		cfg.SettleInFlight = 2
	}
	if cfg.ResponseMemory == 0 {
		cfg.ResponseMemory = DefaultResponseMemory
	}
	if cfg.ResponseTTL <= 0 {
		cfg.ResponseTTL = DefaultResponseTTL
	}
	if len(cfg.Keyless) > 0 {
		if err := cfg.KeylessAccount.Validate(); err != nil {
			return nil, fmt.Errorf("gateway: keyless access needs the account it bills: %w", err)
		}
	}
	if cfg.KeepSettled != 0 && cfg.KeepSettled < MinKeepSettled {
		return nil, fmt.Errorf("gateway: keep settled receipts %s: want 0 (forever) or at least %s", cfg.KeepSettled, MinKeepSettled)
	}
	sched, err := scheduler.New(scheduler.Config{Policy: cfg.Policy, FeeBps: cfg.FeeBps})
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	g := &Gateway{cfg: cfg, log: cfg.Logger, started: time.Now(), sched: sched, waiting: newLines(), health: newHealth(cfg.BreakerThreshold, cfg.BreakerCooldown, cfg.Now),
		adm: admission{standings: map[keys.PublicKey]standing{}}, kept: newResponseMemory(cfg.ResponseMemory, cfg.ResponseTTL, cfg.Now)}
	cfg.Hub.SetAdmit(g.admitProvider)
	g.served = servedBefore(cfg.Store, g.started.Add(-cfg.RecentlyServed), g.log)
	switch {
	case cfg.Ledger == nil:
		g.log.Info("no ledger: every provider that signs the handshake is served, and nothing is settled")
	case cfg.AllowUnregisteredProviders:
		g.log.Warn("providers the ledger does not admit (unregistered or unstaked) are served: only for a closed deployment of trusted providers")
	}
	if cfg.Ledger != nil {
		// Receipts stored but not settled before a restart still count
		// against their consumers.
		pending, err := cfg.Store.PendingByConsumer(context.Background())
		if err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
		g.funds = newFunds(cfg.Ledger, cfg.FundsTTL, pending)
		g.funds.shared, g.funds.gateway, g.funds.log = cfg.SharedFunds, cfg.Key.Public(), cfg.Logger
		g.settle = newSettlement(g)
	}
	if g.samples, err = newSampleFeed(cfg.Samples, cfg.ChainID, cfg.Key.Public(), cfg.Now); err != nil {
		return nil, err
	}
	if g.samples != nil {
		g.samples.onProbation = g.sampledOnProbation
	}
	g.registerGauges()
	return g, nil
}

// registerGauges exposes the queue, the connected providers and the
// stored receipts.
func (g *Gateway) registerGauges() {
	m := g.cfg.Metrics
	m.Gauge("idlegrid_gateway_queue_depth", "Requests waiting for a provider slot.", func() float64 { return float64(g.queued.Load()) })
	m.Gauge("idlegrid_gateway_providers_connected", "Providers connected to this gateway.", func() float64 { return float64(len(g.cfg.Hub.Snapshot())) })
	counts := func(pick func(store.ReceiptCounts) int64) func() float64 {
		return func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := g.cfg.Store.CountReceipts(ctx)
			if err != nil {
				return math.NaN()
			}
			return float64(pick(c))
		}
	}
	m.Gauge("idlegrid_gateway_receipts_pending", "Stored receipts not yet settled on the ledger.", counts(func(c store.ReceiptCounts) int64 { return c.Pending }))
	m.Gauge("idlegrid_gateway_receipts_settled", "Stored receipts settled on the ledger.", counts(func(c store.ReceiptCounts) int64 { return c.Settled }))
	m.Gauge("idlegrid_gateway_receipts_rejected", "Stored receipts the ledger rejected.", counts(func(c store.ReceiptCounts) int64 { return c.Rejected }))
}

// SetForwarder sets Config.Forwarder; call it before serving.
func (g *Gateway) SetForwarder(f Forwarder) { g.cfg.Forwarder = f }

// Logger is the gateway's logger.
func (g *Gateway) Logger() *slog.Logger { return g.log }

// Queued is the number of requests waiting for a provider slot.
func (g *Gateway) Queued() int { return int(g.queued.Load()) }

// Speed is the gateway's current estimate of provider's speed on model
// (the provider's own name for it): time to first token and delivered
// rate, measured on the gateway's clock; false before any served request.
func (g *Gateway) Speed(provider keys.PublicKey, model string) (scheduler.Estimate, bool) {
	return g.sched.Estimate(provider, model)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		apierr.WriteOpenAI(w, apierr.Internal("could not encode the response"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
