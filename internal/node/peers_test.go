package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/gateway"
	"github.com/idlegrid/idlegrid/internal/gateway/api/apitypes"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/link"
	"github.com/idlegrid/idlegrid/internal/node"
	"github.com/idlegrid/idlegrid/internal/store/pgtemp/pgtest"
	"github.com/idlegrid/idlegrid/internal/tstest"
)

func startSharedGateway(t *testing.T, dbURL string) *node.Gateway {
	t.Helper()
	g, err := node.StartGateway(t.Context(), node.GatewayConfig{Addr: "127.0.0.1:0", DataDir: t.TempDir(), DatabaseURL: dbURL,
		PeerInterval: 100 * time.Millisecond, Link: link.Options{Heartbeat: 500 * time.Millisecond}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		g.Shutdown(ctx)
	})
	return g
}

// sharedPair starts two gateways on one fresh PostgreSQL database and
// creates the test API key through A (the key table is shared).
func sharedPair(t *testing.T, db string) (a, b *node.Gateway, ctx context.Context) {
	t.Helper()
	dbURL := pgtest.Database(t, db)
	a = startSharedGateway(t, dbURL)
	b = startSharedGateway(t, dbURL)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	consumer, _ := keys.Generate()
	if _, err := a.Store.EnsureAPIKey(ctx, testAPIKey, "test", consumer.Public().Address()); err != nil {
		t.Fatal(err)
	}
	return a, b, ctx
}

// simProvider connects a provider agent serving a simulator with cfg to g
// and waits until it is connected; it stops at the end of the test (Stop
// may be called earlier).
func simProvider(t *testing.T, ctx context.Context, g *node.Gateway, cfg sim.Config, slots int) *node.Provider {
	t.Helper()
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p, err := node.StartProvider(node.ProviderConfig{Gateway: g.URL(), KeyFile: filepath.Join(t.TempDir(), "provider.key"),
		Backend: &node.LocalBackend{Backend: s, Description: "simulator"}, Slots: slots, Link: link.Options{Heartbeat: 500 * time.Millisecond}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop() })
	if err := p.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCrossGatewayForwarding: two gateway processes' worth of gateways
// (own keys, hubs, HTTP servers and connection pools) share one PostgreSQL;
// a provider connected to A serves a consumer calling B, streamed and not,
// through the OpenAI and the Ollama APIs, and A bills it.
func TestCrossGatewayForwarding(t *testing.T) {
	// The key, created through A, works at B: the key table is shared.
	a, b, ctx := sharedPair(t, "gateways")
	cfg := fastSim()
	p := simProvider(t, ctx, a, cfg, 4)
	tstest.WaitFor(t, 10*time.Second, "B to learn that A serves sim", func() bool {
		peers, err := b.Store.PeersFor(ctx, "sim", b.Key.Public())
		return err == nil && len(peers) == 1 && peers[0].Gateway == a.Key.Public()
	})
	if len(b.Hub.Snapshot()) != 0 {
		t.Fatal("the provider is connected to B too; the test would prove nothing")
	}
	// B's model lists show what A serves, since B forwards requests for it.
	for _, path := range []string{"/v1/models", "/v1/models/sim", "/api/tags"} {
		status, out := getJSON(t, b.URL()+path)
		if status != http.StatusOK || !strings.Contains(out, `"sim"`) {
			t.Errorf("GET %s via B: %d %s; want sim listed", path, status, out)
		}
	}
	if status, out := postJSON(t, b.URL()+"/api/show", `{"model":"sim"}`, nil); status != http.StatusOK {
		t.Errorf("/api/show sim via B: %d %s", status, out)
	}

	// Streamed, through B.
	want, tokens := wantAnswer(t, cfg, "across gateways", 20)
	got := (&faultyNet{URL: b.URL()}).stream(t, "across gateways", 20, "")
	if got.status != http.StatusOK || got.text != want || got.usage != tokens || got.errorEvent != "" {
		t.Fatalf("streamed via B: %+v, want %q (%d tokens)", got, want, tokens)
	}
	r, err := b.Store.Receipt(ctx, got.id)
	if err != nil {
		t.Fatalf("receipt of the forwarded request: %v", err)
	}
	if r.Receipt.Gateway != a.Key.Public() || r.Receipt.Provider != p.Key || r.Receipt.CompletionTokens != uint64(tokens) {
		t.Errorf("receipt gateway %s provider %s tokens %d; want A %s, the provider, %d",
			r.Receipt.Gateway, r.Receipt.Provider, r.Receipt.CompletionTokens, a.Key.Public(), tokens)
	}
	// A settles it, B does not offer it.
	for _, tc := range []struct {
		name string
		g    *node.Gateway
		want int
	}{{"A", a, 1}, {"B", b, 0}} {
		rs, err := tc.g.Store.UnsettledReceipts(ctx, 10)
		if err != nil || len(rs) != tc.want {
			t.Errorf("%s's unsettled receipts: %d, %v; want %d", tc.name, len(rs), err, tc.want)
		}
	}

	// Not streamed, Ollama's API, through B.
	body := `{"model":"sim","stream":false,"messages":[{"role":"user","content":"across gateways"}],"options":{"num_predict":20}}`
	status, out := postJSON(t, b.URL()+"/api/chat", body, nil)
	var chat struct {
		Message struct{ Content string } `json:"message"`
		Done    bool                     `json:"done"`
	}
	if err := json.Unmarshal([]byte(out), &chat); err != nil || status != http.StatusOK || chat.Message.Content != want || !chat.Done {
		t.Fatalf("/api/chat via B: %d %s (%v); want %q", status, out, err, want)
	}

	// The Responses API, through B: the same answer, receipted by A.
	body = `{"model":"sim","input":"across gateways","max_output_tokens":20,"temperature":0,"seed":7}`
	status, out = postJSON(t, b.URL()+"/v1/responses", body, nil)
	var resp struct {
		ID     string `json:"id"`
		Output []struct {
			Content []struct{ Text string } `json:"content"`
		} `json:"output"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil || status != http.StatusOK || len(resp.Output) != 1 || resp.Output[0].Content[0].Text != want {
		t.Fatalf("/v1/responses via B: %d %s (%v); want %q", status, out, err, want)
	}
	if r, err := b.Store.Receipt(ctx, resp.ID); err != nil || r.Receipt.Gateway != a.Key.Public() {
		t.Errorf("receipt of the forwarded response %s: %+v, %v", resp.ID, r.Receipt, err)
	}
	// Embeddings, both APIs, through B.
	status, out = postJSON(t, b.URL()+"/v1/embeddings", `{"model":"sim","input":["across","gateways"]}`, nil)
	if status != http.StatusOK || strings.Count(out, `"object":"embedding"`) != 2 {
		t.Fatalf("/v1/embeddings via B: %d %s", status, out)
	}
	status, out = postJSON(t, b.URL()+"/api/embed", `{"model":"sim","input":"across gateways"}`, nil)
	if status != http.StatusOK || !strings.Contains(out, `"embeddings":[[`) {
		t.Fatalf("/api/embed via B: %d %s", status, out)
	}

	// A model nobody serves is not forwarded anywhere, and a request that
	// was forwarded once is never forwarded again.
	status, out = postJSON(t, b.URL()+"/v1/chat/completions", `{"model":"nope","messages":[{"role":"user","content":"x"}]}`, nil)
	if status != http.StatusNotFound {
		t.Errorf("unknown model via B: %d %s, want 404", status, out)
	}
	// A request without a valid key is B's to refuse: it is authenticated
	// before placement could give it to A (TestPeerOnlyAfterAuthentication).
	for _, auth := range []string{"", "Bearer sk-made-up-0123456789"} {
		status, out = postJSON(t, b.URL()+"/v1/chat/completions", `{"model":"sim","messages":[{"role":"user","content":"x"}]}`,
			map[string]string{"Authorization": auth})
		if status != http.StatusUnauthorized || !strings.Contains(out, "API key") {
			t.Errorf("authorization %q via B: %d %s, want 401", auth, status, out)
		}
	}
	status, out = postJSON(t, b.URL()+"/v1/chat/completions", `{"model":"sim","messages":[{"role":"user","content":"x"}]}`,
		map[string]string{gateway.ForwardedHeader: a.Key.Public().String()})
	if status == http.StatusOK {
		t.Errorf("a request marked forwarded was forwarded again: %s", out)
	}

	// The provider leaves: A withdraws sim and B stops forwarding.
	p.Stop()
	tstest.WaitFor(t, 10*time.Second, "A to withdraw sim", func() bool {
		peers, err := b.Store.PeersFor(ctx, "sim", b.Key.Public())
		return err == nil && len(peers) == 0
	})
	status, out = postJSON(t, b.URL()+"/v1/chat/completions", `{"model":"sim","messages":[{"role":"user","content":"x"}]}`, nil)
	if status != http.StatusNotFound && status != http.StatusServiceUnavailable {
		t.Errorf("after the provider left: %d %s, want 404 or 503", status, out)
	}
	if status, out := getJSON(t, b.URL()+"/v1/models/sim"); status != http.StatusNotFound {
		t.Errorf("GET /v1/models/sim via B after the provider left: %d %s, want 404", status, out)
	}
}

func postJSON(t *testing.T, url, body string, headers map[string]string) (int, string) {
	t.Helper()
	return doJSON(t, "POST", url, body, headers)
}

func getJSON(t *testing.T, url string) (int, string) {
	t.Helper()
	return doJSON(t, "GET", url, "", nil)
}

func doJSON(t *testing.T, method, url, body string, headers map[string]string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(fmt.Errorf("read %s: %w", url, err))
	}
	return resp.StatusCode, string(b)
}

// TestBusyForwardedToPeer: when every provider connected to B for a model
// is busy and A has a free slot for it, B forwards the request to A
// instead of queueing it; a request with routing preferences stays and
// waits for B's own provider.
func TestBusyForwardedToPeer(t *testing.T) {
	a, b, ctx := sharedPair(t, "busy")
	slow := fastSim()
	for i := range slow.Models {
		slow.Models[i].TokensPerSecond = 20
	}
	pa := simProvider(t, ctx, a, fastSim(), 4)
	pb := simProvider(t, ctx, b, slow, 1)
	tstest.WaitFor(t, 10*time.Second, "B to learn that A has free slots for sim", func() bool {
		peers, err := b.Store.PeersFor(ctx, "sim", b.Key.Public())
		return err == nil && len(peers) == 1 && peers[0].FreeSlots > 0
	})

	// B's only slot: 40 tokens at 20 tokens/s.
	long := make(chan int, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "POST", b.URL()+"/v1/chat/completions",
			strings.NewReader(`{"model":"sim","max_tokens":40,"messages":[{"role":"user","content":"a long answer"}]}`))
		req.Header.Set("Authorization", "Bearer "+testAPIKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			long <- 0
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		long <- resp.StatusCode
	}()
	tstest.WaitFor(t, 10*time.Second, "B's provider to be busy", func() bool {
		ps := b.Hub.Snapshot()
		return len(ps) == 1 && ps[0].Free() == 0
	})

	servedBy := func(out string) (gw, prov keys.PublicKey) {
		t.Helper()
		var resp apitypes.ChatCompletion
		if err := json.Unmarshal([]byte(out), &resp); err != nil || resp.ID == "" {
			t.Fatalf("answer %s: %v", out, err)
		}
		r, err := b.Store.Receipt(ctx, resp.ID)
		if err != nil {
			t.Fatalf("receipt of %s: %v", resp.ID, err)
		}
		return r.Receipt.Gateway, r.Receipt.Provider
	}
	status, out := postJSON(t, b.URL()+"/v1/chat/completions", `{"model":"sim","max_tokens":5,"messages":[{"role":"user","content":"now"}]}`, nil)
	if status != http.StatusOK {
		t.Fatalf("while B is busy: %d %s", status, out)
	}
	if gw, prov := servedBy(out); gw != a.Key.Public() || prov != pa.Key {
		t.Errorf("served by gateway %s provider %s; want A's provider through A", gw, prov)
	}

	// With preferences it waits for B's provider.
	status, out = postJSON(t, b.URL()+"/v1/chat/completions",
		`{"model":"sim","max_tokens":5,"messages":[{"role":"user","content":"mine"}],"provider":{"sort":"price"}}`, nil)
	if status != http.StatusOK {
		t.Fatalf("with preferences: %d %s", status, out)
	}
	if gw, prov := servedBy(out); gw != b.Key.Public() || prov != pb.Key {
		t.Errorf("with preferences: served by gateway %s provider %s; want B's own", gw, prov)
	}
	if status := <-long; status != http.StatusOK {
		t.Errorf("the long request: %d", status)
	}
}
