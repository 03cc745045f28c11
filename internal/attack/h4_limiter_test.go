package attack

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/limits"
	"github.com/idlegrid/idlegrid/internal/store"
)

// H4: one address locks every new consumer out of the rate limiter.

// limitedGateway is the limiter as the gateway node wires it (the
// gateway command's default limits, keys recognised by the gateway's
// store) in front of a handler that serves.
func limitedGateway(t *testing.T) (http.Handler, string) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "gateway.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	secret, _, err := st.CreateAPIKey(ctx, "consumer", newEdgeKey(t).Public().Address())
	if err != nil {
		t.Fatal(err)
	}
	known := func(ctx context.Context, token string) bool {
		_, err := st.LookupAPIKey(ctx, token)
		return err == nil
	}
	served := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	cfg := limits.Config{KeyRate: 20, KeyBurst: 40, KeyConcurrent: 64, IPRate: 50, IPBurst: 100, IPConcurrent: 128}
	return limits.New(cfg).Wrap(served, nil, known), secret
}

func limitedRequest(h http.Handler, token, remote string) int {
	r := httptest.NewRequest("POST", "/v1/chat/completions", nil)
	r.RemoteAddr = remote
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code
}

// TestH4RandomTokensDoNotLockOutNewKeys: the attacker sends 100,001
// requests from one address, each with a fresh random bearer token. Its
// address is limited, its tokens are unknown to the gateway, and the
// limiter keeps no state for them: a consumer whose key the attacker
// never saw is served afterwards.
func TestH4RandomTokensDoNotLockOutNewKeys(t *testing.T) {
	h, secret := limitedGateway(t)
	for range 100_001 {
		limitedRequest(h, rand.Text(), "198.51.100.66:4444")
	}
	if code := limitedRequest(h, secret, "192.0.2.10:5555"); code != http.StatusOK {
		t.Fatalf("a new consumer after the flood of made-up tokens: %d, want 200", code)
	}
}

// TestH4ManyAddressesDoNotLockOutNewClients: the attacker holds 100,000
// addresses (a botnet, or IPv6 /64s) and sends one request from each.
// The address table is bounded, but a full table forgets its least
// recently seen idle address: a client from a new address is served.
func TestH4ManyAddressesDoNotLockOutNewClients(t *testing.T) {
	h, secret := limitedGateway(t)
	for i := range 100_000 {
		limitedRequest(h, "", fmt.Sprintf("[2001:db8:%x:%x::1]:4444", i>>16, i&0xffff))
	}
	began := time.Now()
	if code := limitedRequest(h, secret, "192.0.2.10:5555"); code != http.StatusOK {
		t.Fatalf("a client from a new address after 100,000 attacker addresses: %d, want 200", code)
	}
	if d := time.Since(began); d > time.Second {
		t.Fatalf("admitting the new client took %s", d)
	}
}
