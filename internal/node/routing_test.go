package node_test

import (
	"context"
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
	"github.com/idlegrid/idlegrid/internal/gateway/client"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/link"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/node"
	"github.com/idlegrid/idlegrid/internal/receipt"
	"github.com/idlegrid/idlegrid/internal/tstest"
)

// market is a gateway without a ledger and several simulator providers,
// each with its own prices, on loopback.
type market struct {
	URL       string
	Gateway   *node.Gateway
	Providers []*node.Provider
}

type offer struct {
	pricePrompt, priceCompletion money.Amount
	weights                      uint64 // the simulated weights, hence the digest
}

func startMarket(t *testing.T, gcfg gateway.Config, offers ...offer) *market {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, dir := startMarketGateway(t, gcfg)
	gw := m.Gateway
	for i, o := range offers {
		cfg := sim.DefaultConfig()
		// Paced answers (20 ms to the first token, 200 tokens/s), so the
		// speeds the gateway measures are the simulator's pace, not the
		// scheduling noise of a loaded machine, and price decides the score.
		cfg.Models[0].FirstToken, cfg.Models[0].TokensPerSecond = 20*time.Millisecond, 200
		cfg.Models[0].Weights = max(o.weights, 1)
		s, err := sim.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		p, err := node.StartProvider(node.ProviderConfig{Gateway: gw.URL(), KeyFile: filepath.Join(dir, fmt.Sprintf("provider-%d.key", i)),
			Backend: &node.LocalBackend{Backend: s, Description: "simulator"}, Slots: 4, PricePrompt: o.pricePrompt, PriceCompletion: o.priceCompletion,
			Link: link.Options{Heartbeat: 500 * time.Millisecond}, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		m.Providers = append(m.Providers, p)
		if err := p.WaitConnected(ctx); err != nil {
			t.Fatal(err)
		}
	}
	tstest.WaitFor(t, 10*time.Second, "every provider to be routable", func() bool { return len(gw.Hub.Snapshot()) == len(offers) })
	return m
}

// startMarketGateway starts the market's gateway (no ledger, the test API
// key) and stops it and the market's providers at the end of the test; it
// returns the market and the directory for the providers' keys.
func startMarketGateway(t *testing.T, gcfg gateway.Config) (*market, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	gw, err := node.StartGateway(ctx, node.GatewayConfig{Addr: "127.0.0.1:0", DataDir: dir, ReceiptSync: "process",
		Link: link.Options{Heartbeat: 500 * time.Millisecond}, Gateway: gcfg, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	m := &market{URL: gw.URL(), Gateway: gw}
	t.Cleanup(func() {
		for _, p := range m.Providers {
			p.Stop()
		}
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		gw.Shutdown(sctx)
	})
	consumer, _ := keys.Generate()
	if _, err := gw.Store.EnsureAPIKey(ctx, testAPIKey, "test", consumer.Public().Address()); err != nil {
		t.Fatal(err)
	}
	return m, dir
}

// chatVia sends a chat request with extra top-level members and headers;
// it returns the status, the body and the receipt of a served request.
func (m *market) chat(t *testing.T, extra string, header map[string]string) (int, []byte, *receipt.Receipt) {
	t.Helper()
	body := `{"model":"sim","max_tokens":4,"messages":[{"role":"user","content":"route me"}]` + extra + `}`
	req, _ := http.NewRequest("POST", m.URL+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return resp.StatusCode, b, nil
	}
	id := resp.Header.Get("X-Request-Id")
	r, err := m.Gateway.Store.Receipt(context.Background(), id)
	if err != nil {
		t.Fatalf("receipt of %q: %v", id, err)
	}
	return 200, b, &r.Receipt
}

// servedBy runs n requests and returns the providers that served them.
func (m *market) servedBy(t *testing.T, n int, extra string, header map[string]string) map[keys.PublicKey]int {
	t.Helper()
	out := map[keys.PublicKey]int{}
	for range n {
		status, b, r := m.chat(t, extra, header)
		if status != 200 {
			t.Fatalf("%s: %d %s", extra, status, b)
		}
		out[r.Provider]++
	}
	return out
}

// TestMarketRouting runs the routing preferences end to end on a gateway
// with a 6% fee and two providers: a cheap one and an expensive one.
func TestMarketRouting(t *testing.T) {
	m := startMarket(t, gateway.Config{FeeBps: 600}, offer{200_000, 600_000, 1}, offer{500_000, 1_000_000, 1})
	cheap, dear := m.Providers[0].Key, m.Providers[1].Key
	// Consumer prices: floor / 0.94, rounded up.
	const cheapPrompt, cheapCompletion = 212_766, 638_298

	t.Run("models show the market", func(t *testing.T) {
		c := client.New(m.URL, testAPIKey)
		resp, err := c.Do(context.Background(), http.MethodGet, "/v1/models/sim", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		var got apitypes.Model
		if err := c.Decode(resp, &got); err != nil {
			t.Fatal(err)
		}
		p := got.PricePerMTok
		// Medians of two: the mean, rounded down ((212766+531915)/2, (638298+1063830)/2).
		if got.ID != "sim" || got.Providers != 2 || p == nil || p.Prompt.Min != "0.212766" || p.Prompt.Median != "0.372340" ||
			p.Completion.Min != "0.638298" || p.Completion.Median != "0.851064" {
			t.Fatalf("model %+v (prices %+v)", got, p)
		}
	})

	t.Run("max_price leaves the cheap provider, billed at the consumer price", func(t *testing.T) {
		for range 8 {
			status, b, r := m.chat(t, `,"provider":{"max_price":{"prompt":0.3}}`, nil)
			if status != 200 {
				t.Fatalf("%d %s", status, b)
			}
			if r.Provider != cheap || r.PricePromptPerMTok != cheapPrompt || r.PriceCompletionPerMTok != cheapCompletion {
				t.Fatalf("receipt %+v", r)
			}
		}
	})

	t.Run("sort price", func(t *testing.T) {
		if got := m.servedBy(t, 8, `,"provider":{"sort":"price"}`, nil); got[cheap] != 8 {
			t.Fatalf("served by %v", got)
		}
	})

	t.Run("order", func(t *testing.T) {
		got := m.servedBy(t, 8, `,"provider":{"order":["`+dear.String()[:12]+`"],"allow_fallbacks":false}`, nil)
		if got[dear] != 8 {
			t.Fatalf("served by %v", got)
		}
	})

	t.Run("ignore", func(t *testing.T) {
		if got := m.servedBy(t, 8, `,"provider":{"ignore":["`+string(cheap.Address())+`"]}`, nil); got[dear] != 8 {
			t.Fatalf("served by %v", got)
		}
	})

	t.Run("require_digest", func(t *testing.T) {
		d := sim.Digest(1, "Q8_0")
		if got := m.servedBy(t, 2, `,"provider":{"require_digest":"sha256:`+d+`"}`, nil); got[cheap]+got[dear] != 2 {
			t.Fatalf("served by %v", got)
		}
	})

	t.Run("unplaceable", func(t *testing.T) {
		other := sim.Digest(2, "Q8_0")
		for _, tt := range []struct{ extra, msg string }{
			{`,"provider":{"max_price":{"prompt":0.1}}`, `model "sim": 2 providers online, all above max_price prompt 0.10/Mtok (cheapest 0.212766)`},
			{`,"provider":{"max_price":{"completion":"0.5"}}`, `all above max_price completion 0.50/Mtok (cheapest 0.638298)`},
			{`,"provider":{"ignore":["` + cheap.String() + `","` + dear.String() + `"]}`, `all ignored by provider.ignore`},
			{`,"provider":{"require_digest":"` + other[:16] + `"}`, `all serving another digest than require_digest ` + other[:16]},
			{`,"provider":{"order":["` + strings.Repeat("0", 64) + `"],"allow_fallbacks":false}`, `all not in provider.order (allow_fallbacks is false)`},
			{`,"provider":{"ignore":["` + cheap.String() + `"],"max_price":{"prompt":0.3}}`, `1 ignored by provider.ignore, 1 above max_price prompt 0.30/Mtok (cheapest 0.531915)`},
		} {
			status, b, _ := m.chat(t, tt.extra, nil)
			e := decodeError(t, b)
			if status != 503 || e.Code != "no_matching_provider" || !strings.Contains(e.Message, tt.msg) {
				t.Errorf("%s: %d %+v, want 503 no_matching_provider with %q", tt.extra, status, e, tt.msg)
			}
		}
	})

	t.Run("bad preferences are 400s naming the member", func(t *testing.T) {
		for extra, param := range map[string]string{
			`,"provider":{"sort":"fastest"}`:                 "provider.sort",
			`,"provider":{"order":["not-a-key"]}`:            "provider.order[0]",
			`,"provider":{"max_price":{"prompt":-1}}`:        "provider.max_price.prompt",
			`,"provider":{"quantizations":["q4"]}`:           "provider.quantizations",
			`,"provider":[]`:                                 "provider",
			`,"provider":{"allow_fallbacks":0}`:              "provider.allow_fallbacks",
			`,"provider":{"require_digest":"sha256:xyz"}`:    "provider.require_digest",
			`,"provider":{"max_price":{"prompt":0.1234567}}`: "provider.max_price.prompt",
		} {
			status, b, _ := m.chat(t, extra, nil)
			e := decodeError(t, b)
			if status != 400 || e.Param != param || e.Type != "invalid_request_error" {
				t.Errorf("%s: %d %s, want 400 on %s", extra, status, b, param)
			}
		}
	})

	t.Run("a session sticks to its provider", func(t *testing.T) {
		// Without a session the score prefers the cheap provider. Its
		// measured speed weighs in too, and on a loaded machine one slow
		// answer can tip a request or two to the other.
		if got := m.servedBy(t, 8, "", nil); got[cheap] < 6 {
			t.Fatalf("requests without a session served by %v, want at least 6 of 8 by the cheap provider", got)
		}
		// A session that started on the dear provider (by order) stays
		// there: its cache is there.
		pin := `,"provider":{"order":["` + dear.String() + `"]}`
		for _, h := range []struct {
			extra  string
			header map[string]string
		}{
			{"", map[string]string{gateway.SessionHeader: "conversation-1"}},
			{`,"user":"end-user-7"`, nil},
		} {
			if got := m.servedBy(t, 1, h.extra+pin, h.header); got[dear] != 1 {
				t.Fatalf("pinned first request served by %v", got)
			}
			if got := m.servedBy(t, 8, h.extra, h.header); got[dear] != 8 {
				t.Fatalf("session %v %s served by %v", h.header, h.extra, got)
			}
		}
	})

	t.Run("models show measured speed", func(t *testing.T) {
		models, err := client.New(m.URL, testAPIKey).Models(context.Background())
		if err != nil || len(models) != 1 || models[0].TokensPerSecond <= 0 {
			t.Fatalf("models %+v, %v: want a measured tokens_per_second", models, err)
		}
	})
}

// TestMarketOrderWithoutFallbacks: with allow_fallbacks false, a request
// whose only listed provider is paused is not served by the idle other
// one, and the error says both; with fallbacks the other one serves.
func TestMarketOrderWithoutFallbacks(t *testing.T) {
	m := startMarket(t, gateway.Config{}, offer{200_000, 600_000, 1}, offer{200_000, 600_000, 1})
	target := m.Providers[1]
	target.Agent.Pause("owner is gaming")
	tstest.WaitFor(t, 10*time.Second, "the pause to reach the gateway", func() bool {
		for _, in := range m.Gateway.Hub.Snapshot() {
			if in.Key == target.Key {
				return in.Paused
			}
		}
		return false
	})
	status, b, _ := m.chat(t, `,"provider":{"order":["`+target.Key.String()+`"],"allow_fallbacks":false}`, nil)
	if e := decodeError(t, b); status != 503 || e.Code != "no_matching_provider" ||
		!strings.Contains(e.Message, "1 not in provider.order (allow_fallbacks is false), 1 paused") {
		t.Fatalf("%d %+v", status, e)
	}
	// With fallbacks the other provider serves.
	if got := m.servedBy(t, 3, `,"provider":{"order":["`+target.Key.String()+`"]}`, nil); got[m.Providers[0].Key] != 3 {
		t.Fatalf("served by %v", got)
	}
}
