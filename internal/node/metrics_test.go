package node_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/tstest"
)

// TestGatewayMetrics: after a streamed and a plain request, /metrics shows
// them by route and status, the time to first token and tokens per model,
// the connected provider and the stored receipts.
func TestGatewayMetrics(t *testing.T) {
	tn := startNet(t, netOptions{})
	if s, b := post(t, tn.URL+"/v1/chat/completions", testAPIKey, `{"model":"sim","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"hi"}]}`); s != 200 || !strings.Contains(string(b), "[DONE]") {
		t.Fatalf("streamed: %d %s", s, b)
	}
	if s, _ := post(t, tn.URL+"/v1/chat/completions", "ig-wrong-0123456789abcdef", `{}`); s != 401 {
		t.Fatalf("bad key: %d", s)
	}
	var out string
	tstest.WaitFor(t, 10*time.Second, "the metrics to show the receipt", func() bool {
		resp, err := http.Get(tn.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		out = string(b)
		return strings.Contains(out, `idlegrid_gateway_tokens_total{kind="completion",model="sim"}`)
	})
	for _, want := range []string{
		`idlegrid_gateway_requests_total{code="200",route="/v1/chat/completions"} 1`,
		`idlegrid_gateway_requests_total{code="401",route="/v1/chat/completions"} 1`,
		`idlegrid_gateway_time_to_first_token_seconds_count{model="sim"} 1`,
		`idlegrid_gateway_providers_connected 1`,
		`idlegrid_gateway_queue_depth 0`,
		`idlegrid_gateway_receipts_pending`,
		`idlegrid_gateway_receipts_settled`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
