// Package web is the gateway's web UI: a network overview (providers,
// models and prices, throughput, recent requests), a ledger explorer
// (blocks and their transactions, receipts by request id, epochs and payout
// roots, provider pages) and an account page for an API key's funds and
// spend. Pages are rendered on the server with html/template from embedded
// files, charts are inline SVG, and nothing needs JavaScript — except the
// browser provider page at /contribute, whose point is to run a provider in
// the tab (contribute.go; hand-written ES modules in static/contribute/).
//
// The UI reads through small interfaces (the hub's snapshot, the store's
// receipts, the ledger's queries, the chain's blocks) and reaches the
// gateway's own API in-process for what the API already computes
// (/v1/models, /v1/account), so both always show the same numbers.
package web

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/cometbft/cometbft/types"

	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/hub"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/receipt"
	"github.com/idlegrid/idlegrid/internal/store"
)

// Prefix is where the UI is mounted on the gateway.
const Prefix = "/ui/"

// Providers lists the connected providers.
type Providers interface {
	Snapshot() []hub.Info
}

// Receipts reads the gateway's stored receipts.
type Receipts interface {
	RecentReceipts(ctx context.Context, limit int) ([]store.StoredReceipt, error)
	TokensPerMinute(ctx context.Context, since time.Time) ([]store.MinuteTokens, error)
	Receipt(ctx context.Context, requestID string) (receipt.Signed, error)
}

// Chain reads the ledger's state.
type Chain interface {
	Account(ctx context.Context, addr keys.Address) (chainrpc.AccountInfo, error)
	Provider(ctx context.Context, addr keys.Address) (chainrpc.ProviderInfo, error)
	Settlement(ctx context.Context, gateway keys.Address, requestID string) (ledger.Settlement, error)
	Tx(ctx context.Context, hash receipt.Hash) (ledger.TxRecord, error)
	EpochState(ctx context.Context) (chainrpc.EpochInfo, error)
	Epoch(ctx context.Context, n uint64) (ledger.EpochRecord, error)
	Payouts(ctx context.Context, n uint64) ([]ledger.Payout, error)
}

// Blocks reads the chain's blocks.
type Blocks interface {
	Latest(ctx context.Context) (height int64, appHash []byte, err error)
	Block(ctx context.Context, height int64) (*types.Block, error)
}

var (
	_ Providers = (*hub.Hub)(nil)
	_ Receipts  = (*store.Store)(nil)
	_ Chain     = chainrpc.StateReader{}
	_ Blocks    = (*chainrpc.BlockReader)(nil)
)

// Config configures the UI. Hub and Receipts are required; without Ledger
// and Blocks (a gateway that runs without a ledger) the explorer says so.
type Config struct {
	Hub      Providers
	Receipts Receipts
	Ledger   Chain
	Blocks   Blocks
	// Gateway is this gateway's ledger address: the explorer looks up a
	// request id under it unless the page names another gateway
	// (settlements are kept per gateway).
	Gateway keys.Address
	// Now is the clock for throughput and charts (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger
}

// DialChain returns the ledger and block readers of the node whose RPC
// server is at rpcURL (http://host:port).
func DialChain(rpcURL string) (Chain, Blocks, error) {
	c, err := chainrpc.NewHTTPClient(rpcURL)
	if err != nil {
		return nil, nil, fmt.Errorf("web: ledger RPC %s: %w", rpcURL, err)
	}
	b, err := chainrpc.NewBlockReader(rpcURL)
	if err != nil {
		return nil, nil, fmt.Errorf("web: %w", err)
	}
	return chainrpc.StateReader{Client: c}, b, nil
}

// UI serves the pages under Prefix.
type UI struct {
	cfg   Config
	log   *slog.Logger
	pages map[string]*template.Template
	mux   *http.ServeMux
	// api is the gateway's consumer API, set once the gateway exists.
	api atomic.Pointer[API]
}

//go:embed templates/*.html static/*
var files embed.FS

// New checks cfg and parses the templates.
func New(cfg Config) (*UI, error) {
	if cfg.Hub == nil || cfg.Receipts == nil {
		return nil, errors.New("web: hub and receipts are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	u := &UI{cfg: cfg, log: cfg.Logger, pages: map[string]*template.Template{}, mux: http.NewServeMux()}
	names, err := fs.Glob(files, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	for _, n := range names {
		if n == "templates/layout.html" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(files, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("web: %w", err)
		}
		u.pages[n[len("templates/"):]] = t
	}
	static, err := fs.Sub(files, "static")
	if err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	u.routes(http.StripPrefix(Prefix+"static/", http.FileServerFS(static)))
	return u, nil
}

// SetAPI gives the UI the gateway's consumer API, for the model list and
// the account page. Until it is set those parts of the pages say they are
// unavailable; a nil API disconnects it again.
func (u *UI) SetAPI(a API) {
	if a == nil {
		u.api.Store(nil)
		return
	}
	u.api.Store(&a)
}

func (u *UI) routes(static http.Handler) {
	m := u.mux
	m.Handle("GET "+Prefix+"static/", static)
	m.HandleFunc("GET "+Prefix+"{$}", u.overview)
	m.HandleFunc("GET "+Prefix+"explorer/{$}", u.blocks)
	m.HandleFunc("GET "+Prefix+"explorer/block/{height}", u.block)
	m.HandleFunc("GET "+Prefix+"explorer/receipt", u.receiptSearch)
	m.HandleFunc("GET "+Prefix+"explorer/receipt/{id}", u.receiptHere)
	m.HandleFunc("GET "+Prefix+"explorer/receipt/{gateway}/{id...}", u.receipt)
	m.HandleFunc("GET "+Prefix+"explorer/epochs", u.epochs)
	m.HandleFunc("GET "+Prefix+"explorer/epoch/{n}", u.epoch)
	m.HandleFunc("GET "+Prefix+"explorer/provider", u.providerSearch)
	m.HandleFunc("GET "+Prefix+"explorer/provider/{addr}", u.provider)
	m.HandleFunc("GET "+Prefix+"explorer/provider/{addr}/earnings", u.providerEarnings)
	m.HandleFunc("GET "+Prefix+"account", u.accountForm)
	m.HandleFunc("POST "+Prefix+"account", u.account)
	m.HandleFunc("GET "+ContributePath, u.contribute)
	m.HandleFunc(Prefix, func(w http.ResponseWriter, r *http.Request) {
		u.notFound(w, r, "There is no page at this address.")
	})
}

// ServeHTTP serves the UI; the gateway mounts it at Prefix.
func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	u.mux.ServeHTTP(w, r)
}

// page is what every template gets: the layout's fields and the page's data.
type page struct {
	Title string
	Nav   string // which navigation entry is current
	// Notes are problems reading a source; the page shows what it could.
	Notes []string
	Data  any
}

func (p *page) note(format string, args ...any) {
	p.Notes = append(p.Notes, fmt.Sprintf(format, args...))
}

// render executes a page template into a buffer first, so a template error
// becomes a clean 500 rather than half a page.
func (u *UI) render(w http.ResponseWriter, status int, name string, p *page) {
	t := u.pages[name]
	var buf bytes.Buffer
	if t == nil {
		u.log.Error("web: no such template", "template", name)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if err := t.ExecuteTemplate(&buf, "layout.html", p); err != nil {
		u.log.Error("web: render", "template", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func (u *UI) notFound(w http.ResponseWriter, r *http.Request, msg string) {
	u.render(w, http.StatusNotFound, "message.html", &page{Title: "Not found", Data: msg})
}

func (u *UI) badRequest(w http.ResponseWriter, msg string) {
	u.render(w, http.StatusBadRequest, "message.html", &page{Title: "Bad request", Data: msg})
}

// ctx bounds the reads behind one page.
func (u *UI) ctx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), 10*time.Second)
}
