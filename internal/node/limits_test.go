package node_test

import (
	"strings"
	"testing"

	"github.com/idlegrid/idlegrid/internal/limits"
)

// TestRateLimitedKey: with a limit of one request per second per key, a
// second request at once gets 429 in OpenAI's format; the provider's
// connection is not limited (it connected, the first request was served).
func TestRateLimitedKey(t *testing.T) {
	tn := startNet(t, netOptions{limits: limits.Config{KeyRate: 1, KeyBurst: 1}})
	chat := `{"model":"sim","max_tokens":2,"messages":[{"role":"user","content":"hi"}]}`
	if s, b := post(t, tn.URL+"/v1/chat/completions", testAPIKey, chat); s != 200 {
		t.Fatalf("first: %d %s", s, b)
	}
	s, b := post(t, tn.URL+"/v1/chat/completions", testAPIKey, chat)
	if e := decodeError(t, b); s != 429 || e.Code != "rate_limited" || !strings.Contains(e.Message, "API key") {
		t.Fatalf("second at once: %d %s", s, b)
	}
}
