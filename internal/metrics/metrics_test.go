package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("scrape: %d", rec.Code)
	}
	return rec.Body.String()
}

// testRoutes are the gateway's (gateway.MetricsRoutes, which its own
// test checks against its route table).
var testRoutes = []string{"/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/models", "/v1/receipts", "/v1/account",
	"/api/chat", "/api/generate", "/api/tags", "/api/show", "/api/version", "/v1/providers/connect", "/ui",
	"/v1/embeddings", "/api/embed", "/api/embeddings"}

func TestRoute(t *testing.T) {
	for path, want := range map[string]string{
		"/v1/chat/completions": "/v1/chat/completions", "/v1/receipts/chatcmpl-abc": "/v1/receipts", "/v1/models/sim": "/v1/models",
		"/v1/responses": "/v1/responses", "/api/chat": "/api/chat", "/": "other", "/v1/chat/completionsX": "other", "/ui/explorer/block/5": "/ui",
		"/api/embed": "/api/embed", "/api/embeddings": "/api/embeddings", "/v1/embeddings": "/v1/embeddings",
	} {
		if got := Route(testRoutes, path); got != want {
			t.Errorf("Route(%q) = %q, want %q", path, got, want)
		}
	}
}

func TestGateway(t *testing.T) {
	m := NewGateway(testRoutes...)
	h := m.Instrument(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/chat" {
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		io.WriteString(w, "ok")
		w.(http.Flusher).Flush()
	}))
	for _, p := range []string{"/v1/chat/completions", "/v1/chat/completions", "/api/chat", "/nowhere"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", p, nil))
	}
	m.Served("sim", 20*time.Millisecond, 90*time.Millisecond, 12, 10)
	m.Gauge("idlegrid_test_gauge", "A test gauge.", func() float64 { return 7 })
	var nilM *Gateway
	nilM.Served("x", 0, 0, 1, 1) // a nil Gateway records nothing and does not panic
	nilM.Gauge("x", "x", func() float64 { return 0 })
	out := scrape(t, m.Handler())
	for _, want := range []string{
		`idlegrid_gateway_requests_total{code="200",route="/v1/chat/completions"} 2`,
		`idlegrid_gateway_requests_total{code="429",route="/api/chat"} 1`,
		`idlegrid_gateway_requests_total{code="200",route="other"} 1`,
		`idlegrid_gateway_time_to_first_token_seconds_count{model="sim"} 1`,
		`idlegrid_gateway_token_latency_seconds_sum{model="sim"} 0.01`,
		`idlegrid_gateway_tokens_total{kind="completion",model="sim"} 10`,
		`idlegrid_gateway_tokens_total{kind="prompt",model="sim"} 12`,
		`idlegrid_test_gauge 7`,
		`go_goroutines`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestProvider(t *testing.T) {
	one := func() float64 { return 1 }
	out := scrape(t, Provider{Served: func() float64 { return 5 }, Failed: one, Tokens: func() float64 { return 321 }, Active: one, Paused: one, Connected: one}.Handler())
	for _, want := range []string{"idlegrid_provider_jobs_served_total 5", "idlegrid_provider_tokens_total 321", "idlegrid_provider_paused 1"} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
