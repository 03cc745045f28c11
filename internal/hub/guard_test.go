package hub

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/tstest"
)

func guardedHub(t *testing.T, g *Guard) string {
	t.Helper()
	gw, _ := keys.Generate()
	h := New(Config{Key: gw, ChainID: chain, Guard: g})
	srv := httptest.NewServer(h)
	t.Cleanup(func() { h.Close(); srv.Close() })
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

// attempt dials; it returns the HTTP status of a refused upgrade, or 101.
func attempt(t *testing.T, url string) (int, *websocket.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		if resp == nil {
			t.Fatal(err)
		}
		return resp.StatusCode, nil
	}
	t.Cleanup(func() { ws.CloseNow() })
	return http.StatusSwitchingProtocols, ws
}

// TestGuardBansFailedHandshakes: after MaxFailures failed handshakes the
// address is refused before any WebSocket or signature work.
func TestGuardBansFailedHandshakes(t *testing.T) {
	g := &Guard{Loopback: true, Rate: 1000, Burst: 1000, MaxFailures: 3, BanFor: time.Hour}
	url := guardedHub(t, g)
	key, _ := keys.Generate()
	other, _ := keys.Generate()
	for i := range 3 {
		code, ws := attempt(t, url)
		if code != http.StatusSwitchingProtocols {
			t.Fatalf("attempt %d refused with %d before any failure was due", i, code)
		}
		p := &peer{Conn: ws}
		m, err := p.read(t)
		if err != nil || m.Hello == nil {
			t.Fatalf("hello: %v %v", m, err)
		}
		h := m.Hello
		p.write(t, &protocol.Message{Type: protocol.TypeAuth, Auth: &protocol.Auth{ProviderKey: key.Public(),
			Signature: other.Sign(protocol.AuthBytes(h.Nonce, h.GatewayKey, h.ChainID)), ProtocolVersion: protocol.Version, Capabilities: caps()}})
		if _, err := p.read(t); err == nil {
			t.Fatal("a bad signature was accepted")
		}
	}
	// The hub records the failure as the connection closes, a moment
	// later. Wait for the guard's ban itself: polling with handshakes
	// would add failures of its own (each one left open fails at the
	// hub's auth timeout), and a ban after four would pass.
	tstest.WaitFor(t, 10*time.Second, "the guard to ban the address after three failures", func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		for _, e := range g.addrs {
			if time.Now().Before(e.bannedUntil) {
				return true
			}
		}
		return false
	})
	if code, _ := attempt(t, url); code != http.StatusTooManyRequests {
		t.Fatalf("handshake after three failures: %d, want 429", code)
	}
}

// TestGuardRate: handshakes beyond the rate are refused; loopback is
// exempt unless the guard covers it.
func TestGuardRate(t *testing.T) {
	url := guardedHub(t, &Guard{Loopback: true, Rate: 0.001, Burst: 2})
	for i := range 2 {
		if code, _ := attempt(t, url); code != http.StatusSwitchingProtocols {
			t.Fatalf("attempt %d: %d", i, code)
		}
	}
	if code, _ := attempt(t, url); code != http.StatusTooManyRequests {
		t.Fatalf("third attempt: %d", code)
	}
	free := guardedHub(t, &Guard{Rate: 0.001, Burst: 1})
	for i := range 3 {
		if code, _ := attempt(t, free); code != http.StatusSwitchingProtocols {
			t.Fatalf("loopback attempt %d: %d", i, code)
		}
	}
}
