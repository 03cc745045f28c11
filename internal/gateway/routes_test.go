package gateway

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/idlegrid/idlegrid/internal/hub"
	"github.com/idlegrid/idlegrid/internal/metrics"
)

// TestRouteTable: every route of the table is served (another method gets
// a 405 in the route's own error shape, never the catch-all 404), metrics
// label each by its own path, and the generation routes (those that enter
// placement) are POSTs.
func TestRouteTable(t *testing.T) {
	st, gw, _, _ := settlementParties(t)
	g, err := New(Config{Key: gw, ChainID: "c", Store: st, Hub: hub.New(hub.Config{Key: gw, ChainID: "c"})})
	if err != nil {
		t.Fatal(err)
	}
	h := g.Handler()
	labels := MetricsRoutes()
	generation := 0
	for _, r := range Routes() {
		path := strings.NewReplacer("{id...}", "sim", "{id}", "chatcmpl-x").Replace(r.Path)
		if got := metrics.Route(labels, path); got == "other" || !strings.HasPrefix(path, got) {
			t.Errorf("%s is labelled %q", path, got)
		}
		if r.Generation {
			generation++
			if r.Method != "POST" {
				t.Errorf("%s: generation routes are POSTs", r.Path)
			}
		}
		if r.Loose {
			continue
		}
		other := "DELETE"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(other, path, nil))
		wantShape := `{"error":{`
		if r.Ollama {
			wantShape = `{"error":"`
		}
		if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != r.Method || !strings.HasPrefix(rec.Body.String(), wantShape) {
			t.Errorf("%s %s: %d Allow=%q %s", other, path, rec.Code, rec.Header().Get("Allow"), rec.Body)
		}
	}
	if generation != 8 {
		t.Errorf("%d generation routes, want 8 (chat, completions, responses, embeddings; Ollama chat, generate, embed, embeddings)", generation)
	}
}
