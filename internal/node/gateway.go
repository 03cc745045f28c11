// Package node assembles idlegrid's roles into running processes: a gateway
// (store, hub, HTTP server), a provider agent with its backend, and `up`,
// which runs them all in one process with embedded defaults.
package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/crypto/acme/autocert"

	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/gateway"
	"github.com/idlegrid/idlegrid/internal/hub"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/limits"
	"github.com/idlegrid/idlegrid/internal/link"
	"github.com/idlegrid/idlegrid/internal/metrics"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/store"
	"github.com/idlegrid/idlegrid/internal/verifier/planter"
	"github.com/idlegrid/idlegrid/internal/web"
)

// DefaultChainID is the chain of the embedded single-node network.
const DefaultChainID = "idlegrid-dev"

// GatewayConfig configures a gateway process.
type GatewayConfig struct {
	// Addr to listen on (default 127.0.0.1:8420; port 0 picks one).
	Addr string
	// DataDir holds gateway.key and gateway.db.
	DataDir string
	// DatabaseURL, when set (postgres://…), keeps API keys, receipts and
	// reservations in that PostgreSQL database instead of DataDir's SQLite
	// file, shared with every gateway given the same URL: admission
	// reservations are then shared, and requests no provider here can take
	// are forwarded to a peer gateway that can.
	DatabaseURL string
	// PeerURL is this gateway's base URL as its peers reach it (default:
	// the listening address); PeerInterval is how often it publishes its
	// models to them (default 2 s). Only with DatabaseURL.
	PeerURL      string
	PeerInterval time.Duration

	ChainID string
	// ReceiptSync is "disk" (default: every receipt is fsynced before the
	// consumer sees the end of the answer) or "process" (survives the
	// gateway being killed, not the machine losing power; no fsync wait).
	ReceiptSync string
	// Link tunes provider connections (tests shorten the heartbeat).
	Link link.Options
	// ChainRPC, when set, lists validators' RPC URLs: admission checks
	// funds on that ledger and receipts settle there (unless Gateway.Ledger
	// is already set, as `up` does for its in-process validator). The first
	// is queried and waited on; every transaction is also handed to the
	// others, so the next proposer has it without waiting for gossip.
	ChainRPC []string
	// Gateway tunables; Key, Store, Hub and ChainID are filled in here.
	Gateway gateway.Config
	// Limits bound each API key and client address (zero: off).
	Limits limits.Config
	// TLSCert and TLSKey, when set, serve HTTPS with that certificate;
	// TLSDomains, instead, get certificates from Let's Encrypt (ACME
	// TLS-ALPN-01 on the listening port, which must then be 443), cached
	// under DataDir/autocert.
	TLSCert, TLSKey string
	TLSDomains      []string
	// Plant, when its Every is positive, plants known samples into the
	// sample feed (its Ledger is filled in here; it needs ChainRPC or a
	// Gateway.Ledger that is a *chainrpc.Signer).
	Plant planter.Config

	Version string
	Logger  *slog.Logger
}

// Gateway is a running gateway.
type Gateway struct {
	Key   keys.PrivateKey
	Store *store.Store
	Hub   *hub.Hub
	API   *gateway.Gateway
	// Planter plants known samples when GatewayConfig.Plant asks for it.
	Planter *planter.Planter

	srv  *http.Server
	ln   net.Listener
	tls  bool // serving HTTPS
	done chan error

	stopSettlement context.CancelFunc
	settled        chan struct{}
	stopPeering    context.CancelFunc // nil without a shared database
	peered         chan struct{}
}

// StartGateway opens the store and keys and starts serving: it checks the
// configuration, opens what the gateway keeps (key, store), wires the
// gateway to the ledger and its peers, builds the HTTP handler, listens,
// and starts the background work. Whatever it opened is closed again when
// a step fails.
func StartGateway(ctx context.Context, cfg GatewayConfig) (_ *Gateway, err error) {
	cfg.setDefaults()
	if err := cfg.check(); err != nil {
		return nil, err
	}
	var undo cleanup
	defer func() {
		if err != nil {
			undo.run()
		}
	}()
	key, st, err := openGateway(ctx, cfg)
	if err != nil {
		return nil, err
	}
	undo.add(st.Close)
	h := hub.New(hub.Config{Key: key, ChainID: cfg.ChainID, Link: cfg.Link, Logger: cfg.Logger})
	gcfg, ui, err := cfg.gatewayConfig(key, st, h)
	if err != nil {
		return nil, err
	}
	api, planter, err := newGatewayAPI(cfg, gcfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	undo.add(ln.Close)
	handler := api.Handler()
	ui.SetAPI(api) // the web UI reads the same views in-process
	var peering *gateway.Peering
	if cfg.DatabaseURL != "" {
		if peering, err = startPeering(cfg, key, st, h, ln); err != nil {
			return nil, err
		}
		api.SetForwarder(peering) // a peer gateway is one more candidate of placement
	}
	g := &Gateway{Key: key, Store: st, Hub: h, API: api, Planter: planter, ln: ln, done: make(chan error, 1),
		srv: cfg.httpServer(serveMux(cfg, gcfg.Metrics, st, handler))}
	cfg.serveTLS(g)
	g.startBackground(ctx, gcfg.Ledger != nil, planter, peering)
	go g.serve(cfg)
	return g, nil
}

// cleanup runs, in reverse order, what undoes the steps taken so far.
type cleanup []func() error

func (c *cleanup) add(f func() error) { *c = append(*c, f) }

func (c cleanup) run() {
	for i := len(c) - 1; i >= 0; i-- {
		c[i]()
	}
}

func (cfg *GatewayConfig) setDefaults() {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:8420"
	}
	if cfg.ChainID == "" {
		cfg.ChainID = DefaultChainID
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
}

// check refuses settings that cannot work, before anything is opened.
func (cfg *GatewayConfig) check() error {
	switch cfg.ReceiptSync {
	case "", "disk", "process":
	default:
		return fmt.Errorf("receipt sync %q: want disk or process", cfg.ReceiptSync)
	}
	switch {
	case (cfg.TLSCert == "") != (cfg.TLSKey == ""):
		return errors.New("TLS needs both a certificate and a key file")
	case cfg.TLSCert != "" && len(cfg.TLSDomains) > 0:
		return errors.New("TLS: give a certificate and key, or domains for automatic certificates, not both")
	case cfg.TLSCert != "":
		if _, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey); err != nil {
			return fmt.Errorf("TLS certificate: %w", err)
		}
	}
	return nil
}

// openGateway loads (or creates) the gateway key and opens its store: the
// shared PostgreSQL database with DatabaseURL, else DataDir's SQLite file.
func openGateway(ctx context.Context, cfg GatewayConfig) (keys.PrivateKey, *store.Store, error) {
	key, created, err := keys.LoadOrCreate(filepath.Join(cfg.DataDir, "gateway.key"))
	if err != nil {
		return keys.PrivateKey{}, nil, fmt.Errorf("gateway key: %w", err)
	}
	if created {
		cfg.Logger.Info("created gateway key", "gateway", key.Public().String())
	}
	var st *store.Store
	if cfg.DatabaseURL != "" {
		st, err = store.OpenPostgres(ctx, cfg.DatabaseURL, store.ForGateway(key.Public()))
	} else {
		opts := []store.Option{store.WithLogger(cfg.Logger.With("component", "store"))}
		if cfg.ReceiptSync == "process" {
			opts = append(opts, store.WithProcessDurability())
		}
		st, err = store.Open(ctx, filepath.Join(cfg.DataDir, "gateway.db"), opts...)
	}
	if err != nil {
		return keys.PrivateKey{}, nil, fmt.Errorf("gateway store: %w", err)
	}
	return key, st, nil
}

// gatewayConfig completes the gateway's configuration: its key, store and
// hub, the ledger (validators' RPC unless one is given), what a shared
// database adds, who may read the samples, and metrics.
func (cfg *GatewayConfig) gatewayConfig(key keys.PrivateKey, st *store.Store, h *hub.Hub) (gateway.Config, *web.UI, error) {
	gcfg := cfg.Gateway
	gcfg.Key, gcfg.Store, gcfg.Hub, gcfg.ChainID, gcfg.Logger, gcfg.Version = key, st, h, cfg.ChainID, cfg.Logger, cfg.Version
	if gcfg.Ledger == nil && len(cfg.ChainRPC) > 0 {
		var clients []chainrpc.Client
		for _, u := range cfg.ChainRPC {
			c, err := chainrpc.NewHTTPClient(u)
			if err != nil {
				return gcfg, nil, fmt.Errorf("ledger RPC %s: %w", u, err)
			}
			clients = append(clients, c)
		}
		// Transactions go to the first validator that can be reached and
		// are handed to all; reads (balances for admission, params,
		// standings) come from the first that answers: one validator down
		// stops neither admission nor settlement.
		signer := chainrpc.NewSigner(chainrpc.ReadFailover(clients...), key, cfg.ChainID)
		signer.BroadcastAlso(clients[1:]...)
		gcfg.Ledger = signer
	}
	if cfg.DatabaseURL != "" {
		if gcfg.Ledger != nil {
			gcfg.SharedFunds = st
		}
		gcfg.Peers = st // the model lists show what peers serve
	}
	if gcfg.Samples.Share > 0 && gcfg.Samples.Verifiers == nil && len(cfg.ChainRPC) > 0 {
		// Only verifiers registered on the ledger may read the samples.
		c, err := chainrpc.NewHTTPClient(cfg.ChainRPC[0])
		if err != nil {
			return gcfg, nil, fmt.Errorf("ledger RPC %s: %w", cfg.ChainRPC[0], err)
		}
		gcfg.Samples.Verifiers = chainrpc.StateReader{Client: c}
	}
	if gcfg.Metrics == nil {
		gcfg.Metrics = metrics.NewGateway(gateway.MetricsRoutes()...)
	}
	ui, err := startWeb(h, st, key.Public().Address(), cfg.ChainRPC, cfg.Logger)
	if err != nil {
		return gcfg, nil, err
	}
	gcfg.Web = ui
	return gcfg, ui, nil
}

// newGatewayAPI makes the gateway and, when asked for, its planter.
func newGatewayAPI(cfg GatewayConfig, gcfg gateway.Config) (*gateway.Gateway, *planter.Planter, error) {
	api, err := gateway.New(gcfg)
	if err != nil {
		return nil, nil, err
	}
	if cfg.Plant.Every <= 0 {
		return api, nil, nil
	}
	p, err := startPlanter(api, cfg, gcfg)
	if err != nil {
		return nil, nil, err
	}
	return api, p, nil
}

// serveMux serves /metrics beside the API, which is counted and timed,
// bounded per request and, with Limits, per key and client address.
func serveMux(cfg GatewayConfig, m *metrics.Gateway, st *store.Store, handler http.Handler) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	// Providers' connections have their own handshake and framing limits;
	// consumers' requests must send their body in time and are limited
	// per key and per address.
	providerConn := func(r *http.Request) bool { return r.URL.Path == protocol.Path }
	routes := limits.BodyDeadline(handler, 2*time.Minute, providerConn)
	if cfg.Limits.Enabled() {
		// Per-key state only for keys this gateway issued: a made-up
		// token must not take a place in the limiter's table.
		known := func(ctx context.Context, token string) bool {
			_, err := st.LookupAPIKey(ctx, token)
			return err == nil
		}
		routes = limits.New(cfg.Limits).Wrap(routes, providerConn, known)
	}
	mux.Handle("/", m.Instrument(routes))
	return mux
}

func (cfg *GatewayConfig) httpServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    64 << 10,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
	}
}

// serveTLS sets g up for HTTPS when the configuration asks for it: with the
// certificate check() loaded, or with Let's Encrypt certificates.
func (cfg *GatewayConfig) serveTLS(g *Gateway) {
	switch {
	case cfg.TLSCert != "":
		g.tls = true
	case len(cfg.TLSDomains) > 0:
		m := &autocert.Manager{Prompt: autocert.AcceptTOS, HostPolicy: autocert.HostWhitelist(cfg.TLSDomains...),
			Cache: autocert.DirCache(filepath.Join(cfg.DataDir, "autocert"))}
		g.srv.TLSConfig = m.TLSConfig()
		g.tls = true
	}
}

// startBackground starts settlement (with the planter beside it) when the
// gateway has a ledger, and peering with a shared database.
func (g *Gateway) startBackground(ctx context.Context, ledger bool, plants *planter.Planter, peering *gateway.Peering) {
	if ledger {
		sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		g.API.RefreshParams(sctx) // route by the ledger's allowed digests from the first request
		g.stopSettlement, g.settled = cancel, make(chan struct{})
		go func() {
			defer close(g.settled)
			if plants != nil {
				var wg sync.WaitGroup
				defer wg.Wait()
				wg.Go(func() { plants.Run(sctx) })
			}
			g.API.RunSettlement(sctx)
		}()
	}
	if peering != nil {
		pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		g.stopPeering, g.peered = cancel, make(chan struct{})
		go func() {
			defer close(g.peered)
			peering.Run(pctx)
		}()
	}
}

// serve runs the HTTP server until it is shut down.
func (g *Gateway) serve(cfg GatewayConfig) {
	var err error
	if g.tls {
		err = g.srv.ServeTLS(g.ln, cfg.TLSCert, cfg.TLSKey)
	} else {
		err = g.srv.Serve(g.ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	g.done <- err
}

// URL is the gateway's base URL, e.g. http://127.0.0.1:8420.
func (g *Gateway) URL() string {
	if g.tls {
		return "https://" + g.ln.Addr().String()
	}
	return "http://" + g.ln.Addr().String()
}

// Shutdown drains and then closes the gateway.
func (g *Gateway) Shutdown(ctx context.Context) error {
	return errors.Join(g.Drain(ctx), g.Close())
}

// Drain stops taking requests and lets in-flight ones finish until ctx
// ends; then it cuts what is left. Providers stay connected meanwhile, since
// the in-flight requests need them.
func (g *Gateway) Drain(ctx context.Context) error {
	g.leavePeers() // peers stop forwarding requests here
	err := g.srv.Shutdown(ctx)
	if err != nil {
		g.srv.Close() // the grace period is over
	}
	if serr := <-g.done; err == nil {
		err = serr
	}
	g.done <- nil // Drain may be called again
	if g.stopSettlement != nil {
		// Settle what the last requests left, briefly; whatever is still
		// unsettled is settled at the next start.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		if serr := g.API.SettleNow(sctx); serr != nil {
			g.API.Logger().Warn("shutdown: " + serr.Error())
		}
		cancel()
		g.stopSettlement()
		<-g.settled
		g.stopSettlement = nil
	}
	return err
}

// Close disconnects providers and closes the store; call Drain first.
func (g *Gateway) Close() error {
	g.leavePeers()
	if g.stopSettlement != nil {
		g.stopSettlement()
		<-g.settled
		g.stopSettlement = nil
	}
	g.Hub.Close()
	return g.Store.Close()
}

// startWeb makes the gateway's web UI; with ledger RPC URLs it reads blocks
// and ledger state from the first.
func startWeb(h *hub.Hub, st *store.Store, gateway keys.Address, chainRPC []string, log *slog.Logger) (*web.UI, error) {
	wc := web.Config{Hub: h, Receipts: st, Gateway: gateway, Logger: log}
	if len(chainRPC) > 0 {
		var err error
		if wc.Ledger, wc.Blocks, err = web.DialChain(chainRPC[0]); err != nil {
			return nil, err
		}
	}
	return web.New(wc)
}

// plantChain sends the planter's transactions with the gateway's own
// signer (one nonce sequence for settlement and plants) and reads cases.
type plantChain struct {
	*chainrpc.Signer
	chainrpc.StateReader
}

// Params reads the ledger's parameters (both halves can).
func (l plantChain) Params(ctx context.Context) (ledger.Params, error) {
	return l.StateReader.Params(ctx)
}

// startPlanter makes the gateway's planter; it runs beside settlement.
func startPlanter(api *gateway.Gateway, cfg GatewayConfig, gcfg gateway.Config) (*planter.Planter, error) {
	signer, ok := gcfg.Ledger.(*chainrpc.Signer)

	if !ok || len(cfg.ChainRPC) == 0 {
		return nil, errors.New("planted samples need the ledger (--chain-rpc)")
	}
	c, err := chainrpc.NewHTTPClient(cfg.ChainRPC[0])
	if err != nil {
		return nil, fmt.Errorf("ledger RPC %s: %w", cfg.ChainRPC[0], err)
	}
	pc := cfg.Plant
	pc.Ledger = plantChain{Signer: signer, StateReader: chainrpc.StateReader{Client: c}}
	if pc.Logger == nil {
		pc.Logger = api.Logger()
	}
	return planter.New(api, pc)

}
