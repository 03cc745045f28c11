package attack

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/gateway"
	"github.com/idlegrid/idlegrid/internal/hub"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/link"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/provider"
	"github.com/idlegrid/idlegrid/internal/store"
	"github.com/idlegrid/idlegrid/internal/tstest"
)

// Helpers of the network-edge attacks (h3, h4, l1): a gateway with its hub
// on loopback, honest agents, and a raw provider connection the attacker
// drives by hand.

const edgeChain = "attack-edge-1"

// edgeGateway is a real gateway (no ledger) and hub behind an HTTP server.
type edgeGateway struct {
	key    keys.PrivateKey
	hub    *hub.Hub
	api    *gateway.Gateway
	store  *store.Store
	url    string
	apiKey string // a consumer's API key
}

func newEdgeGateway(t *testing.T, hcfg hub.Config, gcfg gateway.Config) *edgeGateway {
	t.Helper()
	ctx := context.Background()
	gw := newEdgeKey(t)
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "gateway.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	secret, _, err := st.CreateAPIKey(ctx, "consumer", newEdgeKey(t).Public().Address())
	if err != nil {
		t.Fatal(err)
	}
	hcfg.Key, hcfg.ChainID = gw, edgeChain
	h := hub.New(hcfg)
	gcfg.Key, gcfg.ChainID, gcfg.Store, gcfg.Hub = gw, edgeChain, st, h
	api, err := gateway.New(gcfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(func() { h.Close(); srv.Close() })
	return &edgeGateway{key: gw, hub: h, api: api, store: st, url: srv.URL, apiKey: secret}
}

func newEdgeKey(t *testing.T) keys.PrivateKey {
	t.Helper()
	k, err := keys.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// fastSim is the simulator's default model, unpaced.
func fastSim(t *testing.T) *sim.Sim {
	t.Helper()
	cfg := sim.DefaultConfig()
	for i := range cfg.Models {
		cfg.Models[i].FirstToken, cfg.Models[i].TokensPerSecond = 0, 0
	}
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// startAgent runs an honest provider agent against g until cleanup.
func startAgent(t *testing.T, g *edgeGateway, s *sim.Sim, heartbeat time.Duration) keys.PublicKey {
	t.Helper()
	key := newEdgeKey(t)
	a, err := provider.New(provider.Config{Gateway: g.url, Key: key, Backend: s, Slots: 4, Version: "attack-test/1",
		PricePrompt: provider.DefaultPricePrompt, PriceCompletion: provider.DefaultPriceCompletion,
		Link: link.Options{Heartbeat: heartbeat}, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	tstest.WaitFor(t, 10*time.Second, "the honest provider to connect", func() bool { _, ok := connected(g.hub, key.Public()); return ok })
	return key.Public()
}

// connected returns the hub's entry for key.
func connected(h *hub.Hub, key keys.PublicKey) (hub.Info, bool) {
	for _, in := range h.Snapshot() {
		if in.Key == key {
			return in, true
		}
	}
	return hub.Info{}, false
}

// rawProvider is the attacker's end of a provider connection: the
// protocol spoken by hand, so it can misbehave after the handshake.
type rawProvider struct {
	key keys.PrivateKey
	ws  *websocket.Conn
}

// dialRaw opens a provider WebSocket to g and reads the hello.
func dialRaw(t *testing.T, url string) (*websocket.Conn, *protocol.Hello) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(url, "http")+protocol.Path, nil)
	if err != nil {
		t.Fatal(err)
	}
	ws.SetReadLimit(64 << 20)
	t.Cleanup(func() { ws.CloseNow() })
	_, b, err := ws.Read(ctx)
	if err != nil {
		t.Fatalf("hello: %v", err)
	}
	m, err := protocol.Decode(b)
	if err != nil || m.Type != protocol.TypeHello {
		t.Fatalf("hello: %v %v", m, err)
	}
	return ws, m.Hello
}

// connectRaw does the handshake with caps and returns after the welcome.
func connectRaw(t *testing.T, url string, caps protocol.Capabilities) *rawProvider {
	t.Helper()
	return connectRawVersion(t, url, protocol.Version, caps)
}

// connectRawVersion is connectRaw speaking protocol version.
func connectRawVersion(t *testing.T, url string, version int, caps protocol.Capabilities) *rawProvider {
	t.Helper()
	key := newEdgeKey(t)
	ws, hello := dialRaw(t, url)
	p := &rawProvider{key: key, ws: ws}
	p.send(t, &protocol.Message{Type: protocol.TypeAuth, Auth: &protocol.Auth{ProviderKey: key.Public(),
		Signature: key.Sign(protocol.AuthBytes(hello.Nonce, hello.GatewayKey, hello.ChainID)), ProtocolVersion: version, Capabilities: caps}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, b, err := ws.Read(ctx)
	if err != nil {
		t.Fatalf("welcome: %v", err)
	}
	if m, err := protocol.Decode(b); err != nil || m.Type != protocol.TypeWelcome {
		t.Fatalf("welcome: %v %v", m, err)
	}
	return p
}

func (p *rawProvider) send(t *testing.T, m *protocol.Message) {
	t.Helper()
	b, err := protocol.Encode(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.ws.Write(ctx, websocket.MessageText, b); err != nil {
		t.Fatal(err)
	}
}
