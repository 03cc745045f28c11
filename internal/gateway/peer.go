package gateway

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/hub"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/store"
)

// Cross-gateway routing. Gateways that share a database publish, every
// PeerConfig.Interval and with a lease of three intervals, which models
// their connected providers serve and how many slots are free. Placement
// (serve in place.go) takes the peer gateway with the most free slots for
// a model as one more candidate, after the consumer is authenticated: it
// forwards the request, as it came (headers, body, streamed answer), when
// no provider here can take it. The peer authenticates the consumer
// against the shared API keys again, admits the request against the shared
// reservations, serves it and bills it with its own receipt. A forwarded
// request carries ForwardedHeader and is never forwarded again. See
// docs/scaling.md for the limits.

// ForwardedHeader marks a request forwarded by a peer gateway; its value is
// the forwarding gateway's key. It only stops a second forward, so a
// consumer who sets it merely opts out of forwarding.
const ForwardedHeader = "X-Idlegrid-Forwarded-By"

// PeerDirectory is where gateways sharing a database find each other; the
// store implements it.
type PeerDirectory interface {
	PublishModels(ctx context.Context, gateway keys.PublicKey, url string, models []store.PeerModel, ttl time.Duration) error
	PeersFor(ctx context.Context, model string, except keys.PublicKey) ([]store.PeerModel, error)
}

var _ PeerDirectory = (*store.Store)(nil)

// PeerConfig configures Peering.
type PeerConfig struct {
	Directory PeerDirectory
	Hub       *hub.Hub
	// Key is this gateway's; URL is its base URL as peers reach it.
	Key keys.PublicKey
	URL string
	// Interval between publications (default 2 s); a gateway that stops
	// publishing drops out of its peers' view after three.
	Interval time.Duration
	// Transport reaches the peers (default http.DefaultTransport).
	Transport http.RoundTripper
	Logger    *slog.Logger
}

// Peering publishes this gateway's models and forwards the requests
// placement gives a peer.
type Peering struct {
	cfg PeerConfig
	log *slog.Logger
}

// NewPeering checks cfg and returns a Peering; Run publishes, Forward
// forwards.
func NewPeering(cfg PeerConfig) (*Peering, error) {
	if cfg.Directory == nil || cfg.Hub == nil || cfg.Key.IsZero() {
		return nil, errors.New("peering: directory, hub and key are required")
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("peering: the gateway's URL must be an absolute http(s) URL, e.g. http://10.0.0.5:8420")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 2 * time.Second
	}
	if cfg.Transport == nil {
		cfg.Transport = http.DefaultTransport
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Peering{cfg: cfg, log: cfg.Logger.With("component", "peering")}, nil
}

// Run publishes this gateway's models until ctx ends, then withdraws them.
func (p *Peering) Run(ctx context.Context) {
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	for {
		p.publish(ctx, p.models())
		select {
		case <-ctx.Done():
			wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			p.publish(wctx, nil)
			cancel()
			return
		case <-t.C:
		}
	}
}

func (p *Peering) publish(ctx context.Context, models []store.PeerModel) {
	if err := p.cfg.Directory.PublishModels(ctx, p.cfg.Key, p.cfg.URL, models, 3*p.cfg.Interval); err != nil && ctx.Err() == nil {
		p.log.Warn("could not publish this gateway's models to its peers", "err", err)
	}
}

// models sums the connected, unpaused providers by model.
func (p *Peering) models() []store.PeerModel {
	byName := map[string]*store.PeerModel{}
	for _, in := range p.cfg.Hub.Snapshot() {
		if in.Paused {
			continue
		}
		for _, m := range in.Capabilities.Models {
			name := baseModel(m.Name)
			e, ok := byName[name]
			if !ok {
				e = &store.PeerModel{Model: name}
				byName[name] = e
			}
			e.Providers++
			e.FreeSlots += max(in.Free(), 0)
		}
	}
	out := make([]store.PeerModel, 0, len(byName))
	for _, e := range byName {
		out = append(out, *e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Model < out[j].Model })
	return out
}

// baseModel names a model without Ollama's default tag, so "tiny" and
// "tiny:latest" meet.
func baseModel(name string) string {
	base, _ := strings.CutSuffix(name, ":latest")
	return base
}

var _ Forwarder = (*Peering)(nil)

// Peer implements Forwarder: the peer gateway with the most free slots
// for model, if any publishes it.
func (p *Peering) Peer(ctx context.Context, model string) (store.PeerModel, bool) {
	peers, err := p.cfg.Directory.PeersFor(ctx, baseModel(model), p.cfg.Key)
	if err != nil {
		p.log.Warn("could not read the peer directory", "err", err)
		return store.PeerModel{}, false
	}
	if len(peers) == 0 {
		return store.PeerModel{}, false
	}
	return peers[0], true // most free slots first
}

// Forward implements Forwarder: it relays the request to peer and its
// answer back, flushing each write so a stream stays a stream.
func (p *Peering) Forward(w http.ResponseWriter, r *http.Request, body []byte, peer store.PeerModel, model, unreachable string) {
	// A consumer that stops reading must not pin the proxy either.
	w = withWriteDeadline(w, DefaultConsumerWriteTimeout)
	fail := func(w http.ResponseWriter, e *apierr.Error) {
		e.Code = "peer_unreachable"
		if strings.HasPrefix(r.URL.Path, "/api/") {
			apierr.WriteOllama(w, e)
		} else {
			apierr.WriteOpenAI(w, e)
		}
	}
	target, err := url.Parse(peer.URL)
	if err != nil {
		fail(w, apierr.Upstream("The peer gateway that serves this model published an invalid address."))
		return
	}
	p.log.Info("forwarding to a peer gateway", "model", model, "peer", peer.Gateway.String(), "peer_url", peer.URL)
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Header.Set(ForwardedHeader, p.cfg.Key.String())
			pr.Out.Body = io.NopCloser(bytes.NewReader(body))
			pr.Out.ContentLength = int64(len(body))
		},
		Transport:     p.cfg.Transport,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			p.log.Warn("peer gateway unreachable", "peer", peer.Gateway.String(), "err", err)
			fail(w, apierr.Upstream("%s", unreachable))
		},
	}
	proxy.ServeHTTP(w, r)
}
