package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/hub"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/store"
)

// generationBodies are requests for the model "sim", one per generation
// route, that parse.
var generationBodies = map[string]string{
	"/v1/chat/completions": `{"model":"sim","messages":[{"role":"user","content":"x"}]}`,
	"/v1/completions":      `{"model":"sim","prompt":"x"}`,
	"/v1/responses":        `{"model":"sim","input":"x"}`,
	"/v1/embeddings":       `{"model":"sim","input":"x"}`,
	"/api/chat":            `{"model":"sim","messages":[{"role":"user","content":"x"}]}`,
	"/api/generate":        `{"model":"sim","prompt":"x"}`,
	"/api/embed":           `{"model":"sim","input":"x"}`,
	"/api/embeddings":      `{"model":"sim","prompt":"x"}`,
}

// peerRecorder is a peer gateway that answers every request and keeps
// what it got.
type peerRecorder struct {
	mu  sync.Mutex
	got []*http.Request
}

func (p *peerRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r = r.Clone(r.Context())
	r.Body = io.NopCloser(strings.NewReader(string(body)))
	p.mu.Lock()
	p.got = append(p.got, r)
	p.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"served_by":"peer"}`)
}

func (p *peerRecorder) take() []*http.Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	got := p.got
	p.got = nil
	return got
}

// TestPeerOnlyAfterAuthentication is the attack on cross-gateway routing:
// a request is authenticated before placement can give it to a peer
// gateway, so one without a key, with a made-up key or with a revoked key
// gets this gateway's 401 on every generation route and never reaches the
// peer (nor costs a directory lookup). A keyless request (loopback, billed
// to the keyless account here) is not forwarded either: the peer refuses
// a forwarded request without a key, so it is placed here (404: no
// provider here offers the model). A consumer's own key is forwarded, as
// it came, to the peer that serves the model, which authenticates it
// again.
func TestPeerOnlyAfterAuthentication(t *testing.T) {
	ctx := t.Context()
	st, gw, _, consumer := settlementParties(t)
	const secret = "sk-peer-test-0123456789"
	if _, err := st.EnsureAPIKey(ctx, secret, "test", consumer.Public().Address()); err != nil {
		t.Fatal(err)
	}
	revokedSecret, revoked, err := st.CreateAPIKey(ctx, "revoked", consumer.Public().Address())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.RevokeAPIKey(ctx, revoked.ID); err != nil {
		t.Fatal(err)
	}

	rec := &peerRecorder{}
	peerSrv := httptest.NewServer(rec)
	t.Cleanup(peerSrv.Close)
	other, _ := keys.Generate()
	if err := st.PublishModels(ctx, other.Public(), peerSrv.URL, []store.PeerModel{{Model: "sim", Providers: 1, FreeSlots: 1}}, time.Hour); err != nil {
		t.Fatal(err)
	}
	h := hub.New(hub.Config{Key: gw, ChainID: "c"}) // no provider here
	peering, err := NewPeering(PeerConfig{Directory: st, Hub: h, Key: gw.Public(), URL: "http://127.0.0.1:8420"})
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(Config{Key: gw, ChainID: "c", Store: st, Hub: h, Peers: st, Forwarder: peering,
		Keyless: LoopbackPrefixes, KeylessAccount: consumer.Public().Address()})
	if err != nil {
		t.Fatal(err)
	}
	handler := g.Handler()

	routes := 0
	for _, r := range Routes() {
		if !r.Generation {
			continue
		}
		routes++
		body, ok := generationBodies[r.Path]
		if !ok {
			t.Fatalf("no request body for the generation route %s", r.Path)
		}
		for _, c := range []struct {
			name   string
			auth   string
			remote string
			want   int
		}{
			{"no key", "", "203.0.113.7:5000", http.StatusUnauthorized},
			{"made-up key", "Bearer sk-made-up-0123456789", "203.0.113.7:5000", http.StatusUnauthorized},
			{"revoked key", "Bearer " + revokedSecret, "203.0.113.7:5000", http.StatusUnauthorized},
			{"keyless", "", "127.0.0.1:5000", http.StatusNotFound},
			{"consumer's key", "Bearer " + secret, "203.0.113.7:5000", http.StatusOK},
		} {
			req := httptest.NewRequest("POST", r.Path, strings.NewReader(body))
			req.RemoteAddr = c.remote
			if c.auth != "" {
				req.Header.Set("Authorization", c.auth)
			}
			w := httptest.NewRecorder()
			handler.ServeHTTP(w, req)
			got := rec.take()
			if w.Code != c.want {
				t.Errorf("%s %s: %d %s, want %d", c.name, r.Path, w.Code, w.Body, c.want)
			}
			if c.want != http.StatusOK {
				if len(got) != 0 {
					t.Errorf("%s %s reached the peer gateway", c.name, r.Path)
				}
				continue
			}
			if len(got) != 1 {
				t.Fatalf("%s %s: the peer got %d requests, want 1", c.name, r.Path, len(got))
			}
			fwd := got[0]
			fb, _ := io.ReadAll(fwd.Body)
			if fwd.URL.Path != r.Path || fwd.Header.Get("Authorization") != c.auth || fwd.Header.Get(ForwardedHeader) != gw.Public().String() || string(fb) != body {
				t.Errorf("%s %s: the peer got %s %q %s=%q body %s", c.name, r.Path, fwd.URL.Path, fwd.Header.Get("Authorization"),
					ForwardedHeader, fwd.Header.Get(ForwardedHeader), fb)
			}
			if !strings.Contains(w.Body.String(), `"served_by":"peer"`) {
				t.Errorf("%s %s: the consumer got %s, not the peer's answer", c.name, r.Path, w.Body)
			}
		}
	}
	if routes != len(generationBodies) {
		t.Errorf("%d generation routes, %d bodies", routes, len(generationBodies))
	}
}
