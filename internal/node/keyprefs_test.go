package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/idlegrid/idlegrid/internal/gateway"
	"github.com/idlegrid/idlegrid/internal/gateway/api/apitypes"
	"github.com/idlegrid/idlegrid/internal/keys"
)

// TestAPIKeyDefaultPreferences: a key's stored default preferences route
// its requests on both APIs; a request's own "provider" members replace
// the defaults' members of the same name and keep the others; a key
// without defaults is unaffected.
func TestAPIKeyDefaultPreferences(t *testing.T) {
	cfg := slowSim(2000)
	n := startFaultyNet(t, gateway.Config{}, cfg, cfg)
	ctx := context.Background()
	p0, p1 := n.Providers[0].Key, n.Providers[1].Key
	secret, key, err := n.Gateway.Store.CreateAPIKey(ctx, "pinned", n.Consumer)
	if err != nil {
		t.Fatal(err)
	}
	defaults := fmt.Sprintf(`{"order":[%q],"allow_fallbacks":false,"sort":"price"}`, p1.String())
	if err := n.Gateway.Store.SetAPIKeyPreferences(ctx, key.ID, defaults); err != nil {
		t.Fatal(err)
	}
	chat := func(secret, provider string) (int, []byte) {
		t.Helper()
		return post(t, n.URL+"/v1/chat/completions", secret,
			`{"model":"sim","max_tokens":3,"messages":[{"role":"user","content":"hi"}]`+provider+`}`)
	}
	servedBy := func(status int, b []byte) keys.PublicKey {
		t.Helper()
		var r apitypes.ChatCompletion
		if status != 200 || json.Unmarshal(b, &r) != nil || r.ID == "" {
			t.Fatalf("%d %s", status, b)
		}
		return n.receiptProvider(t, r.ID)
	}
	for i := range 4 {
		if got := servedBy(chat(secret, "")); got != p1 {
			t.Fatalf("request %d without preferences went to %s, the key's defaults allow only %s", i, got, p1)
		}
	}
	// The request's order replaces the key's; allow_fallbacks false stays.
	if got := servedBy(chat(secret, fmt.Sprintf(`,"provider":{"order":[%q]}`, p0.String()))); got != p0 {
		t.Fatalf("the request's own order was not used: served by %s", got)
	}
	// The key's order and no fallbacks stay; the request ignores that one
	// provider: nothing is left.
	status, b := chat(secret, fmt.Sprintf(`,"provider":{"ignore":[%q]}`, p1.String()))
	if e := decodeError(t, b); status != http.StatusServiceUnavailable || e.Code != "no_matching_provider" {
		t.Fatalf("ignore laid over the key's order: %d %s", status, b)
	}
	// null resets a member to the network's default: fallbacks allowed.
	status, b = chat(secret, fmt.Sprintf(`,"provider":{"ignore":[%q],"allow_fallbacks":null}`, p1.String()))
	if got := servedBy(status, b); got != p0 {
		t.Fatalf("with fallbacks allowed again, served by %s", got)
	}
	// Ollama's API has no preferences of its own: the key's apply.
	for range 3 {
		status, b := post(t, n.URL+"/api/chat", secret, `{"model":"sim","stream":false,"options":{"num_predict":3},"messages":[{"role":"user","content":"hi"}]}`)
		if status != 200 {
			t.Fatalf("ollama: %d %s", status, b)
		}
	}
	if st := n.Providers[0].Agent.Status(); st.Served != 2 {
		t.Fatalf("provider 0 served %d requests, want the 2 that asked for it", st.Served)
	}
	// Cleared, the key routes like any other: both providers get work.
	if err := n.Gateway.Store.SetAPIKeyPreferences(ctx, key.ID, ""); err != nil {
		t.Fatal(err)
	}
	status, b = chat(secret, fmt.Sprintf(`,"provider":{"order":[%q],"allow_fallbacks":false}`, p0.String()))
	if got := servedBy(status, b); got != p0 || !strings.Contains(string(b), "chat.completion") {
		t.Fatalf("after clearing: served by %s", got)
	}
}
