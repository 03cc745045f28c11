package node_test

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/gateway"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/link"
	"github.com/idlegrid/idlegrid/internal/node"
	"github.com/idlegrid/idlegrid/internal/tstest"
)

// TestRestartedGatewayWaitsForItsProviders: a gateway restarted on its
// store knows the models it served moments ago. A request for one that
// arrives before any provider has reconnected waits (within the reconnect
// grace) and is served once one does; after the grace, with still nobody,
// it is a 503 with Retry-After (temporarily unavailable, which clients
// retry), never a 404 "does not exist". A model it never served is a 404
// at once.
func TestRestartedGatewayWaitsForItsProviders(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	consumer, _ := keys.Generate()
	start := func(grace time.Duration) *node.Gateway {
		t.Helper()
		gw, err := node.StartGateway(ctx, node.GatewayConfig{Addr: "127.0.0.1:0", DataDir: dir, ReceiptSync: "process",
			Link: link.Options{Heartbeat: 500 * time.Millisecond}, Gateway: gateway.Config{ReconnectGrace: grace}, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := gw.Store.EnsureAPIKey(ctx, testAPIKey, "test", consumer.Public().Address()); err != nil {
			t.Fatal(err)
		}
		return gw
	}
	stop := func(gw *node.Gateway) {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		gw.Shutdown(sctx)
	}
	provide := func(gw *node.Gateway) *node.Provider {
		t.Helper()
		s, err := sim.New(sim.DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		p, err := node.StartProvider(node.ProviderConfig{Gateway: gw.URL(), KeyFile: filepath.Join(dir, "provider.key"),
			Backend: &node.LocalBackend{Backend: s, Description: "simulator"}, Slots: 4,
			Link: link.Options{Heartbeat: 500 * time.Millisecond}, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Stop() })
		return p
	}
	chat := func(gw *node.Gateway, model string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "POST", gw.URL()+"/v1/chat/completions",
			strings.NewReader(`{"model":"`+model+`","max_tokens":4,"messages":[{"role":"user","content":"hello"}]}`))
		req.Header.Set("Authorization", "Bearer "+testAPIKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Retry-After") + " " + string(b)
	}

	// Serve the model once, then stop everything.
	gw := start(0)
	p := provide(gw)
	if err := p.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	if code, body := chat(gw, "sim"); code != 200 {
		t.Fatalf("first gateway: %d %s", code, body)
	}
	p.Stop()
	stop(gw)

	// Restarted: a request before the provider is back waits for it.
	gw = start(20 * time.Second)
	defer stop(gw)
	type answer struct {
		code int
		body string
	}
	got := make(chan answer, 1)
	go func() {
		code, body := chat(gw, "sim")
		got <- answer{code, body}
	}()
	tstest.WaitFor(t, 10*time.Second, "the request to wait for its provider", func() bool { return gw.API.Queued() == 1 })
	// At once: answered while the other request still waits.
	if code, body := chat(gw, "never-served"); code != http.StatusNotFound {
		t.Errorf("a model the gateway never served: %d, want 404: %s", code, body)
	}
	select {
	case a := <-got:
		t.Fatalf("the request for a served model ended (%d %s) before the one for a model never served was answered, want it waiting for its provider", a.code, a.body)
	default:
	}
	provide(gw)
	select {
	case a := <-got:
		if a.code != 200 {
			t.Fatalf("a request that arrived before the provider reconnected: %d %s, want 200", a.code, a.body)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the waiting request was not served after the provider reconnected")
	}
	stop(gw)

	// Restarted with nobody coming back: after the grace, 503, not 404.
	gw = start(300 * time.Millisecond)
	code, body := chat(gw, "sim")
	if code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "5 ") {
		t.Errorf("a model served moments ago with no provider back: %d %q, want 503 with Retry-After 5", code, body)
	}
}
