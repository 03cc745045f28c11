package node_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/idlegrid/idlegrid/internal/gateway/api/apitypes"
	"github.com/idlegrid/idlegrid/internal/gateway/client"
	"github.com/idlegrid/idlegrid/internal/keys"
)

func TestBadInput(t *testing.T) {
	tn := startNet(t, netOptions{})
	ctx := context.Background()
	revokedSecret, revoked, err := tn.Gateway.Store.CreateAPIKey(ctx, "revoked", tn.Account)
	if err != nil {
		t.Fatal(err)
	}
	if err := tn.Gateway.Store.RevokeAPIKey(ctx, revoked.ID); err != nil {
		t.Fatal(err)
	}
	chat := func(extra string) string {
		return `{"model":"sim","messages":[{"role":"user","content":"hi"}]` + extra + `}`
	}
	huge := `{"model":"sim","messages":[{"role":"user","content":"` + strings.Repeat("a", 9<<20) + `"}]}`
	tests := []struct {
		name, path, key, body string
		status                int
		typ, code, param      string
	}{
		{"malformed JSON", "/v1/chat/completions", testAPIKey, `{"model":`, 400, "invalid_request_error", "", ""},
		{"not an object", "/v1/chat/completions", testAPIKey, `[1,2]`, 400, "invalid_request_error", "", ""},
		{"wrong type", "/v1/chat/completions", testAPIKey, chat(`,"temperature":"hot"`), 400, "invalid_request_error", "", "temperature"},
		{"empty messages", "/v1/chat/completions", testAPIKey, `{"model":"sim","messages":[]}`, 400, "invalid_request_error", "", "messages"},
		{"no model", "/v1/chat/completions", testAPIKey, `{"messages":[{"role":"user","content":"hi"}]}`, 400, "invalid_request_error", "", "model"},
		{"n above 8", "/v1/chat/completions", testAPIKey, chat(`,"n":9`), 400, "invalid_request_error", "invalid_value", "n"},
		{"oversized body", "/v1/chat/completions", testAPIKey, huge, 400, "invalid_request_error", "request_too_large", ""},
		{"unknown model", "/v1/chat/completions", testAPIKey, `{"model":"gpt-9","messages":[{"role":"user","content":"hi"}]}`, 404, "invalid_request_error", "model_not_found", "model"},
		{"missing key", "/v1/chat/completions", "", chat(""), 401, "authentication_error", "invalid_api_key", ""},
		{"unknown key", "/v1/chat/completions", "ig-nope-nope-nope-nope", chat(""), 401, "authentication_error", "invalid_api_key", ""},
		{"revoked key", "/v1/chat/completions", revokedSecret, chat(""), 401, "authentication_error", "invalid_api_key", ""},
		{"completions prompt array", "/v1/completions", testAPIKey, `{"model":"sim","prompt":["a","b"]}`, 400, "invalid_request_error", "", "prompt"},
		{"unknown endpoint", "/v1/audio/speech", testAPIKey, `{}`, 404, "not_found_error", "not_found", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := post(t, tn.URL+tt.path, tt.key, tt.body)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, body)
			}
			var e apitypes.ErrorBody
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("not OpenAI error JSON: %s", body)
			}
			if e.Error.Message == "" || e.Error.Type != tt.typ {
				t.Errorf("error %+v, want type %q", e.Error, tt.typ)
			}
			if tt.code != "" && (e.Error.Code == nil || *e.Error.Code != tt.code) {
				t.Errorf("code %v, want %q", e.Error.Code, tt.code)
			}
			if tt.param != "" && (e.Error.Param == nil || *e.Error.Param != tt.param) {
				t.Errorf("param %v, want %q (%s)", e.Error.Param, tt.param, e.Error.Message)
			}
		})
	}

	// The Ollama API answers in Ollama's error shape.
	for _, tt := range []struct {
		name, path, key, body string
		status                int
	}{
		{"ollama malformed", "/api/chat", testAPIKey, `{"model":`, 400},
		{"ollama unknown model", "/api/generate", testAPIKey, `{"model":"nope","prompt":"x"}`, 404},
		{"ollama missing key", "/api/chat", "", `{"model":"sim","messages":[{"role":"user","content":"x"}]}`, 401},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, body := post(t, tn.URL+tt.path, tt.key, tt.body)
			var e struct {
				Error string `json:"error"`
			}
			if status != tt.status || json.Unmarshal(body, &e) != nil || e.Error == "" {
				t.Fatalf("status %d body %s, want %d with {\"error\":...}", status, body, tt.status)
			}
		})
	}

	// Wrong method gets a JSON 405, not the router's text.
	req, _ := http.NewRequest("GET", tn.URL+"/v1/chat/completions", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 405 || !json.Valid(b) {
		t.Fatalf("GET chat completions: %d %s", resp.StatusCode, b)
	}
}

func post(t *testing.T, url, key, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestReceiptsArePrivate: a consumer reads its own receipts; another
// account's key gets the same 404 as for an id that does not exist.
func TestReceiptsArePrivate(t *testing.T) {
	tn := startNet(t, netOptions{})
	ctx := context.Background()
	resp, err := client.New(tn.URL, testAPIKey).Chat(ctx, json.RawMessage(`{"model":"sim","max_tokens":3,"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil || resp.ID == "" {
		t.Fatalf("chat: %+v, %v", resp, err)
	}
	other, _, err := tn.Gateway.Store.CreateAPIKey(ctx, "other", keys.Address("idg"+strings.Repeat("ab", 20)))
	if err != nil {
		t.Fatal(err)
	}
	get := func(key, id string) (int, []byte) {
		req, _ := http.NewRequest("GET", tn.URL+"/v1/receipts/"+id, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return r.StatusCode, b
	}
	if s, b := get(testAPIKey, resp.ID); s != 200 {
		t.Fatalf("own receipt: %d %s", s, b)
	}
	s1, b1 := get(other, resp.ID)
	s2, b2 := get(other, "chatcmpl-doesnotexist")
	if s1 != 404 || s2 != 404 || strings.Contains(string(b1), string(tn.Account)) {
		t.Fatalf("other account: %d %s; unknown id: %d %s", s1, b1, s2, b2)
	}
	if s, _ := get("", resp.ID); s != 401 {
		t.Fatalf("no key: %d", s)
	}
}
