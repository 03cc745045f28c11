package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/node"
)

type chatCompletion struct {
	ID      string
	Choices []struct {
		Index        int
		Message      struct{ Content string }
		FinishReason string `json:"finish_reason"`
	}
	Usage struct {
		PromptTokens     uint64 `json:"prompt_tokens"`
		CompletionTokens uint64 `json:"completion_tokens"`
	}
}

// TestChoices: n = 3 is three jobs on the simulator, each with its own
// receipt billed to the consumer (ids id, id-n1, id-n2), choice i running
// with seed + i: its text is exactly what one request with that seed
// gets. Streamed, the chunks carry the choice index and join to the same
// texts; the usage chunk sums the three jobs. n above 8 is a 400.
func TestChoices(t *testing.T) {
	tn := startNet(t, netOptions{})
	const msgs = `"messages":[{"role":"user","content":"tell me"}],"max_tokens":12,"temperature":0.9`
	var want []string
	var wantUsage chatCompletion
	for i := range 3 {
		status, body := post(t, tn.URL+"/v1/chat/completions", testAPIKey, fmt.Sprintf(`{"model":"sim",%s,"seed":%d}`, msgs, 40+i))
		var one chatCompletion
		if err := json.Unmarshal(body, &one); status != 200 || err != nil {
			t.Fatalf("n=1 seed %d: %d %s", 40+i, status, body)
		}
		want = append(want, one.Choices[0].Message.Content)
		wantUsage.Usage.PromptTokens += one.Usage.PromptTokens
		wantUsage.Usage.CompletionTokens += one.Usage.CompletionTokens
	}
	if want[0] == want[1] {
		t.Fatalf("seeds 40 and 41 give the same text %q: the test cannot tell choices apart", want[0])
	}

	ctx := context.Background()
	before, err := tn.Gateway.Store.ConsumerSpend(ctx, tn.Account)
	if err != nil {
		t.Fatal(err)
	}
	status, body := post(t, tn.URL+"/v1/chat/completions", testAPIKey, `{"model":"sim",`+msgs+`,"seed":40,"n":3}`)
	var got chatCompletion
	if err := json.Unmarshal(body, &got); status != 200 || err != nil || len(got.Choices) != 3 {
		t.Fatalf("n=3: %d %s", status, body)
	}
	for i, c := range got.Choices {
		if c.Index != i || c.Message.Content != want[i] || c.FinishReason == "" {
			t.Errorf("choice %d: index %d, %q (%s), want %q", i, c.Index, c.Message.Content, c.FinishReason, want[i])
		}
	}
	if got.Usage != wantUsage.Usage {
		t.Errorf("usage %+v, want the three jobs' sum %+v", got.Usage, wantUsage.Usage)
	}
	for _, id := range []string{got.ID, got.ID + "-n1", got.ID + "-n2"} {
		s, err := tn.Gateway.Store.Receipt(ctx, id)
		if err != nil || s.Receipt.Consumer != tn.Account {
			t.Errorf("receipt %s: %v (consumer %v)", id, err, s.Receipt.Consumer)
		}
	}
	after, err := tn.Gateway.Store.ConsumerSpend(ctx, tn.Account)
	if err != nil {
		t.Fatal(err)
	}
	if n := after.PendingCount + after.SettledCount - before.PendingCount - before.SettledCount; n != 3 {
		t.Errorf("n=3 left %d receipts, want 3", n)
	}

	// Streamed: interleaved chunks with each choice's index.
	status, body = post(t, tn.URL+"/v1/chat/completions", testAPIKey, `{"model":"sim",`+msgs+`,"seed":40,"n":3,"stream":true,"stream_options":{"include_usage":true}}`)
	if status != 200 {
		t.Fatalf("stream: %d %s", status, body)
	}
	texts, finished, roles := make([]string, 3), make([]int, 3), make([]int, 3)
	var usage *chatCompletion
	done := false
	for line := range strings.Lines(string(body)) {
		data, ok := strings.CutPrefix(strings.TrimSpace(line), "data: ")
		if !ok {
			continue
		}
		if data == "[DONE]" {
			done = true
			continue
		}
		var chunk struct {
			Choices []struct {
				Index int
				Delta struct {
					Role    string
					Content string
				}
				FinishReason *string `json:"finish_reason"`
			}
			Usage *struct {
				PromptTokens     uint64 `json:"prompt_tokens"`
				CompletionTokens uint64 `json:"completion_tokens"`
			}
		}
		if err := json.Unmarshal([]byte(data), &chunk); err != nil {
			t.Fatalf("chunk %s: %v", data, err)
		}
		if chunk.Usage != nil {
			usage = &chatCompletion{}
			usage.Usage.PromptTokens, usage.Usage.CompletionTokens = chunk.Usage.PromptTokens, chunk.Usage.CompletionTokens
		}
		for _, c := range chunk.Choices {
			if c.Index < 0 || c.Index > 2 {
				t.Fatalf("choice index %d", c.Index)
			}
			texts[c.Index] += c.Delta.Content
			if c.Delta.Role == "assistant" {
				roles[c.Index]++
			}
			if c.FinishReason != nil {
				finished[c.Index]++
			}
		}
	}
	for i := range 3 {
		if texts[i] != want[i] || roles[i] != 1 || finished[i] != 1 {
			t.Errorf("streamed choice %d: %q (role chunks %d, finish chunks %d), want %q", i, texts[i], roles[i], finished[i], want[i])
		}
	}
	if !done || usage == nil || usage.Usage != wantUsage.Usage {
		t.Errorf("stream end: [DONE] %v, usage %+v, want %+v", done, usage, wantUsage.Usage)
	}

	if status, body := post(t, tn.URL+"/v1/chat/completions", testAPIKey, `{"model":"sim",`+msgs+`,"n":9}`); status != 400 || !strings.Contains(string(body), "maximum of 8") {
		t.Errorf("n=9: %d %s", status, body)
	}
}

// TestChoicesRealOllama: n = 2 through a real Ollama (plumbing): two
// choices, two receipts.
func TestChoicesRealOllama(t *testing.T) {
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
	tn := startNet(t, netOptions{backend: b, slots: 2})
	status, body := post(t, tn.URL+"/v1/chat/completions", testAPIKey, `{"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":4,"n":2,"seed":1}`)
	var got chatCompletion
	if err := json.Unmarshal(body, &got); status != 200 || err != nil || len(got.Choices) != 2 || got.Choices[1].Index != 1 {
		t.Fatalf("n=2: %d %s", status, body)
	}
	for _, id := range []string{got.ID, got.ID + "-n1"} {
		if s, err := tn.Gateway.Store.Receipt(ctx, id); err != nil || s.Receipt.Consumer != tn.Account {
			t.Errorf("receipt %s: %v", id, err)
		}
	}
}
