package gateway

import (
	"bytes"
	"context"
	"encoding/json"
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
// their connected providers serve and how many slots are free. A request
// for a model no provider connected here offers is forwarded, as it came
// (headers, body, streamed answer), to the peer gateway with the most free
// slots for it; the peer authenticates the consumer against the shared API
// keys, admits the request against the shared reservations, serves it and
// bills it with its own receipt. A forwarded request carries ForwardedHeader
// and is never forwarded again. See docs/scaling.md for the limits.

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
	// MaxBodyBytes bounds a request body read to find its model (default
	// 8 MiB, as the gateway).
	MaxBodyBytes int64
	// Transport reaches the peers (default http.DefaultTransport).
	Transport http.RoundTripper
	Logger    *slog.Logger
}

// Peering publishes this gateway's models and forwards requests it cannot
// serve locally to a peer that can.
type Peering struct {
	cfg PeerConfig
	log *slog.Logger
}

// NewPeering checks cfg and returns a Peering; Run publishes, Wrap forwards.
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
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 8 << 20
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

// local reports whether a provider connected here offers the model (busy
// or not: a busy local provider queues the request here).
func (p *Peering) local(model string) bool {
	want := baseModel(model)
	for _, in := range p.cfg.Hub.Snapshot() {
		for _, m := range in.Capabilities.Models {
			if baseModel(m.Name) == want {
				return true
			}
		}
	}
	return false
}

// Wrap forwards a generation request to a peer gateway when no provider
// connected here offers its model and a peer has one; everything else goes
// to next.
func (p *Peering) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isGeneration(r.Method, r.URL.Path) || r.Header.Get(ForwardedHeader) != "" {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, p.cfg.MaxBodyBytes+1))
		// Whatever happens next reads the body from the start.
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(body), r.Body), r.Body}
		if err != nil || int64(len(body)) > p.cfg.MaxBodyBytes {
			next.ServeHTTP(w, r) // the gateway answers the bad or oversized body
			return
		}
		var head struct {
			Model string `json:"model"`
		}
		if json.Unmarshal(body, &head) != nil || head.Model == "" || p.local(head.Model) {
			next.ServeHTTP(w, r)
			return
		}
		peers, err := p.cfg.Directory.PeersFor(r.Context(), baseModel(head.Model), p.cfg.Key)
		if err != nil {
			p.log.Warn("could not read the peer directory", "err", err)
		}
		if len(peers) == 0 {
			next.ServeHTTP(w, r)
			return
		}
		p.forward(w, r, body, peers[0], head.Model,
			"No provider connected to this gateway serves this model, and the peer gateway that has one could not be reached; please retry.")
	})
}

var _ Overflow = (*Peering)(nil)

// Take implements Overflow: it forwards the request to the peer with the
// most free slots for model, if any has one.
func (p *Peering) Take(w http.ResponseWriter, r *http.Request, body []byte, model string) bool {
	peers, err := p.cfg.Directory.PeersFor(r.Context(), baseModel(model), p.cfg.Key)
	if err != nil {
		p.log.Warn("could not read the peer directory", "err", err)
		return false
	}
	if len(peers) == 0 || peers[0].FreeSlots == 0 { // most free slots first
		return false
	}
	p.log.Info("every local provider of the model is busy; a peer gateway has a free slot", "model", model)
	p.forward(w, r, body, peers[0], model,
		"Every provider connected to this gateway for this model is busy, and the peer gateway with a free slot could not be reached; please retry.")
	return true
}

// forward relays the request to peer and its answer back, flushing each
// write so a stream stays a stream.
func (p *Peering) forward(w http.ResponseWriter, r *http.Request, body []byte, peer store.PeerModel, model, unreachable string) {
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
