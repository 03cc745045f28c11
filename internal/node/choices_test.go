package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/gateway/api/apitypes"
	"github.com/idlegrid/idlegrid/internal/gateway/client"
	"github.com/idlegrid/idlegrid/internal/node"
)

// tokenCounts are the members of a usage the choices tests compare; an
// absent usage counts none.
func tokenCounts(u *apitypes.Usage) [2]uint64 {
	if u == nil {
		return [2]uint64{}
	}
	return [2]uint64{u.PromptTokens, u.CompletionTokens}
}

// TestChoices: n = 3 is three jobs on the simulator, each with its own
// receipt billed to the consumer (ids id, id-n1, id-n2), choice i running
// with seed + i: its text is exactly what one request with that seed
// gets. Streamed, the chunks carry the choice index and join to the same
// texts; the usage chunk sums the three jobs. n above 8 is a 400.
func TestChoices(t *testing.T) {
	tn := startNet(t, netOptions{})
	const msgs = `"messages":[{"role":"user","content":"tell me"}],"max_tokens":12,"temperature":0.9`
	ctx := context.Background()
	c := client.New(tn.URL, testAPIKey)
	var want []string
	var wantUsage [2]uint64
	for i := range 3 {
		one, err := c.Chat(ctx, json.RawMessage(fmt.Sprintf(`{"model":"sim",%s,"seed":%d}`, msgs, 40+i)))
		if err != nil {
			t.Fatalf("n=1 seed %d: %v", 40+i, err)
		}
		want = append(want, one.Choices[0].Message.Text())
		u := tokenCounts(one.Usage)
		wantUsage[0] += u[0]
		wantUsage[1] += u[1]
	}
	if want[0] == want[1] {
		t.Fatalf("seeds 40 and 41 give the same text %q: the test cannot tell choices apart", want[0])
	}

	before, err := tn.Gateway.Store.ConsumerSpend(ctx, tn.Account)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Chat(ctx, json.RawMessage(`{"model":"sim",`+msgs+`,"seed":40,"n":3}`))
	if err != nil || len(got.Choices) != 3 {
		t.Fatalf("n=3: %+v, %v", got, err)
	}
	for i, c := range got.Choices {
		if c.Index != i || c.Message.Text() != want[i] || c.FinishReason == "" {
			t.Errorf("choice %d: index %d, %q (%s), want %q", i, c.Index, c.Message.Text(), c.FinishReason, want[i])
		}
	}
	if tokenCounts(got.Usage) != wantUsage {
		t.Errorf("usage %+v, want the three jobs' sum of prompt and completion tokens %v", got.Usage, wantUsage)
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
	texts, finished, roles := make([]string, 3), make([]int, 3), make([]int, 3)
	var usage *apitypes.Usage
	_, err = c.ChatStream(ctx, json.RawMessage(`{"model":"sim",`+msgs+`,"seed":40,"n":3,"stream":true,"stream_options":{"include_usage":true}}`), func(chunk apitypes.ChatChunk) error {
		if chunk.Usage.Counts != nil {
			usage = chunk.Usage.Counts
		}
		for _, c := range chunk.Choices {
			if c.Index < 0 || c.Index > 2 {
				return fmt.Errorf("choice index %d", c.Index)
			}
			texts[c.Index] += c.Delta.Text()
			if c.Delta.Role == "assistant" {
				roles[c.Index]++
			}
			if c.FinishReason != nil {
				finished[c.Index]++
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, client.ErrTruncated) {
		t.Fatalf("stream: %v", err)
	}
	for i := range 3 {
		if texts[i] != want[i] || roles[i] != 1 || finished[i] != 1 {
			t.Errorf("streamed choice %d: %q (role chunks %d, finish chunks %d), want %q", i, texts[i], roles[i], finished[i], want[i])
		}
	}
	if err != nil || usage == nil || tokenCounts(usage) != wantUsage {
		t.Errorf("stream end: %v, usage %+v, want %v", err, usage, wantUsage)
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
	got, err := client.New(tn.URL, testAPIKey).Chat(ctx, json.RawMessage(`{"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":4,"n":2,"seed":1}`))
	if err != nil || len(got.Choices) != 2 || got.Choices[1].Index != 1 {
		t.Fatalf("n=2: %+v, %v", got, err)
	}
	for _, id := range []string{got.ID, got.ID + "-n1"} {
		if s, err := tn.Gateway.Store.Receipt(ctx, id); err != nil || s.Receipt.Consumer != tn.Account {
			t.Errorf("receipt %s: %v", id, err)
		}
	}
}
