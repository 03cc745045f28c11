package gateway

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/idlegrid/idlegrid/internal/gateway/api/apitypes"
	"github.com/idlegrid/idlegrid/internal/hub"
)

// TestKeylessOnlyFromListedPeers is the attack on keyless access: only the
// TCP peer's address counts. A remote client that claims loopback in
// X-Forwarded-For or X-Real-IP, a request a peer gateway forwarded, and a
// web page of another origin in a local browser all get 401; so does
// loopback on a gateway without Keyless (`idlegrid gateway`'s default).
// A loopback client without those is billed to the keyless account.
func TestKeylessOnlyFromListedPeers(t *testing.T) {
	st, gw, _, consumer := settlementParties(t)
	account := consumer.Public().Address()
	open, err := New(Config{Key: gw, ChainID: "c", Store: st, Hub: hub.New(hub.Config{Key: gw, ChainID: "c"}), Keyless: LoopbackPrefixes, KeylessAccount: account})
	if err != nil {
		t.Fatal(err)
	}
	closed, err := New(Config{Key: gw, ChainID: "c", Store: st, Hub: hub.New(hub.Config{Key: gw, ChainID: "c"})})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Key: gw, ChainID: "c", Store: st, Hub: hub.New(hub.Config{Key: gw, ChainID: "c"}), Keyless: LoopbackPrefixes}); err == nil {
		t.Error("keyless access without an account to bill was accepted")
	}
	cases := []struct {
		name    string
		g       *Gateway
		remote  string
		headers map[string]string
		want    int
	}{
		{"loopback v4", open, "127.0.0.1:5000", nil, 200},
		{"loopback 127/8", open, "127.3.4.5:5000", nil, 200},
		{"loopback v6", open, "[::1]:5000", nil, 200},
		{"loopback v4-mapped", open, "[::ffff:127.0.0.1]:5000", nil, 200},
		{"local page", open, "127.0.0.1:5000", map[string]string{"Origin": "http://localhost:3000"}, 200},
		{"remote", open, "203.0.113.7:5000", nil, 401},
		{"remote claiming loopback", open, "203.0.113.7:5000", map[string]string{"X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1", "Forwarded": "for=127.0.0.1"}, 401},
		{"private network", open, "10.0.0.2:5000", nil, 401},
		{"forwarded by a peer gateway", open, "127.0.0.1:5000", map[string]string{ForwardedHeader: "peer"}, 401},
		{"page of another site", open, "127.0.0.1:5000", map[string]string{"Origin": "https://evil.example"}, 401},
		{"rebound name", open, "127.0.0.1:5000", map[string]string{"Origin": "http://127.0.0.1.evil.example:8420"}, 401},
		{"in-process", open, "in-process", nil, 401},
		{"gateway default", closed, "127.0.0.1:5000", nil, 401},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/v1/account", nil)
			req.RemoteAddr = c.remote
			for k, v := range c.headers {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			c.g.Handler().ServeHTTP(rec, req)
			if rec.Code != c.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, c.want, rec.Body)
			}
			if c.want != http.StatusOK {
				return
			}
			var v apitypes.Account
			if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil || v.Account != account {
				t.Fatalf("billed to %q (%v), want the keyless account %s", v.Account, err, account)
			}
		})
	}
}

func TestParsePrefixes(t *testing.T) {
	got, err := ParsePrefixes([]string{"127.0.0.1", " 10.1.2.3/8", "::1", ""})
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("[%d] = %v, want %v", i, got[i], want[i])
		}
	}
	if _, err := ParsePrefixes([]string{"localhost"}); err == nil {
		t.Error("a host name was accepted")
	}
}
