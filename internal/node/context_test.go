package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/gateway"
	"github.com/idlegrid/idlegrid/internal/node"
)

type generated struct {
	Response string
	Done     bool
	Context  []int
}

func generate(t *testing.T, url, body string) generated {
	t.Helper()
	status, out := post(t, url+"/api/generate", testAPIKey, body)
	var g generated
	if err := json.Unmarshal(out, &g); status != 200 || err != nil || !g.Done {
		t.Fatalf("/api/generate %s: %d %s", body, status, out)
	}
	return g
}

// TestGenerateContext: /api/generate returns the token context the answer
// ends with, and a request with it continues from there: on the
// simulator, the second answer is exactly what the first prompt, the
// first answer and the second prompt get in one request. Streamed, the
// last line carries the context.
func TestGenerateContext(t *testing.T) {
	tn := startNet(t, netOptions{})
	first := generate(t, tn.URL, `{"model":"sim","prompt":"Once upon a time","stream":false,"options":{"num_predict":8}}`)
	if len(first.Context) == 0 {
		t.Fatalf("no context: %+v", first)
	}
	ctxJSON, _ := json.Marshal(first.Context)
	second := generate(t, tn.URL, fmt.Sprintf(`{"model":"sim","prompt":" and then","context":%s,"stream":false,"options":{"num_predict":8}}`, ctxJSON))
	whole, _ := json.Marshal("Once upon a time" + first.Response + " and then")
	want := generate(t, tn.URL, fmt.Sprintf(`{"model":"sim","prompt":%s,"stream":false,"options":{"num_predict":8}}`, whole))
	if second.Response != want.Response || fmt.Sprint(second.Context) != fmt.Sprint(want.Context) {
		t.Errorf("continued from the context: %q %v\nwant %q %v", second.Response, second.Context, want.Response, want.Context)
	}

	status, out := post(t, tn.URL+"/api/generate", testAPIKey, fmt.Sprintf(`{"model":"sim","prompt":" and then","context":%s,"options":{"num_predict":8}}`, ctxJSON))
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var last generated
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); status != 200 || err != nil || !last.Done || fmt.Sprint(last.Context) != fmt.Sprint(want.Context) {
		t.Errorf("streamed: %d, last line %s", status, lines[len(lines)-1])
	}
	if status, out := post(t, tn.URL+"/api/generate", testAPIKey, `{"model":"sim","prompt":"p","context":[-1]}`); status != 400 || !strings.Contains(string(out), "context[0]") {
		t.Errorf("negative token id: %d %s", status, out)
	}

	// A long context with a short prompt: the provider's prompt count
	// holds the context's tokens, and the gateway's bound on prompt
	// tokens counts them, so the receipt stands.
	long := generate(t, tn.URL, `{"model":"sim","prompt":"`+strings.Repeat("word ", 400)+`","stream":false,"options":{"num_predict":2}}`)
	longJSON, _ := json.Marshal(long.Context)
	if status, out := post(t, tn.URL+"/api/generate", testAPIKey, fmt.Sprintf(`{"model":"sim","prompt":"x","context":%s,"stream":false,"options":{"num_predict":2}}`, longJSON)); status != 200 {
		t.Errorf("long context: %d %s", status, out)
	}
}

// TestGenerateContextRealOllama: the context passes through a real
// Ollama both ways (plumbing: the model's text is gibberish).
func TestGenerateContextRealOllama(t *testing.T) {
	ollamaURL := os.Getenv("OLLAMA_URL")
	if ollamaURL == "" {
		t.Skip("OLLAMA_URL not set: start a test Ollama with shared/scripts/ollama-test-server.sh start")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, err := node.OpenBackend(ctx, node.BackendOllama, ollamaURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	tn := startNet(t, netOptions{backend: b, slots: 2, gateway: gateway.Config{DefaultMaxTokens: 8}})
	first := generate(t, tn.URL, `{"model":"tiny","prompt":"hello","stream":false,"options":{"temperature":0}}`)
	if len(first.Context) == 0 {
		t.Fatalf("no context from Ollama: %+v", first)
	}
	ctxJSON, _ := json.Marshal(first.Context)
	second := generate(t, tn.URL, fmt.Sprintf(`{"model":"tiny","prompt":"again","context":%s,"stream":false,"options":{"temperature":0}}`, ctxJSON))
	// Ollama's template may add tokens before the earlier ones.
	inner := strings.Trim(fmt.Sprint(first.Context), "[]")
	if len(second.Context) <= len(first.Context) || !strings.Contains(fmt.Sprint(second.Context), inner) {
		t.Errorf("the second context does not hold the first:\n%v\n%v", first.Context, second.Context)
	}
}
