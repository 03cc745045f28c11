package node_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	ollamaapi "github.com/ollama/ollama/api"

	"github.com/idlegrid/idlegrid/internal/backend/ollama"
	"github.com/idlegrid/idlegrid/internal/node"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

func ollamaClient(t *testing.T, base string) *ollamaapi.Client {
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	return ollamaapi.NewClient(u, &http.Client{Transport: authTransport{testAPIKey}})
}

func TestOllamaClient(t *testing.T) {
	tn := startNet(t, netOptions{})
	c := ollamaClient(t, tn.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts := map[string]any{"num_predict": 25, "seed": 7, "temperature": 0}

	wantText, wantRes := direct(t, tn, chatReq("why is the sky blue?", 25))
	for _, stream := range []bool{true, false} {
		var text strings.Builder
		var last ollamaapi.ChatResponse
		err := c.Chat(ctx, &ollamaapi.ChatRequest{Model: "sim", Stream: &stream, Options: opts,
			Messages: []ollamaapi.Message{{Role: "user", Content: "why is the sky blue?"}}}, func(r ollamaapi.ChatResponse) error {
			text.WriteString(r.Message.Content)
			last = r
			return nil
		})
		if err != nil {
			t.Fatalf("chat stream=%v: %v", stream, err)
		}
		if text.String() != wantText || !last.Done || last.EvalCount != int(wantRes.Usage.CompletionTokens) || last.PromptEvalCount != int(wantRes.Usage.PromptTokens) {
			t.Fatalf("chat stream=%v: %q done=%v eval=%d prompt=%d; want %q %+v", stream, text.String(), last.Done, last.EvalCount, last.PromptEvalCount, wantText, wantRes.Usage)
		}
	}

	wantGen, _ := direct(t, tn, protocol.Request{Kind: protocol.KindGenerate, Model: "sim", Prompt: "hello", Options: greedy(25)})
	var gen strings.Builder
	err := c.Generate(ctx, &ollamaapi.GenerateRequest{Model: "sim", Prompt: "hello", Options: opts}, func(r ollamaapi.GenerateResponse) error {
		gen.WriteString(r.Response)
		return nil
	})
	if err != nil || gen.String() != wantGen {
		t.Fatalf("generate %q, %v; want %q", gen.String(), err, wantGen)
	}

	// Ollama's "load the model" call (no prompt) answers without a job.
	var loaded ollamaapi.GenerateResponse
	if err := c.Generate(ctx, &ollamaapi.GenerateRequest{Model: "sim"}, func(r ollamaapi.GenerateResponse) error { loaded = r; return nil }); err != nil || !loaded.Done || loaded.DoneReason != "load" {
		t.Fatalf("load call: %+v, %v", loaded, err)
	}
	if err := c.Generate(ctx, &ollamaapi.GenerateRequest{Model: "nope"}, func(ollamaapi.GenerateResponse) error { return nil }); err == nil {
		t.Fatal("load call for an unknown model succeeded")
	}

	list, err := c.List(ctx)
	if err != nil || len(list.Models) != 1 || list.Models[0].Name != "sim" || list.Models[0].Digest == "" {
		t.Fatalf("tags %+v, %v", list, err)
	}
	if _, err := c.Show(ctx, &ollamaapi.ShowRequest{Model: "sim"}); err != nil {
		t.Fatalf("show: %v", err)
	}
	if v, err := c.Version(ctx); err != nil || v == "" {
		t.Fatalf("version %q, %v", v, err)
	}
	// Unknown model: Ollama's client reports an error of a streamed call
	// (chat, generate) as a plain error with the server's message, and of
	// other calls as StatusError.
	err = c.Chat(ctx, &ollamaapi.ChatRequest{Model: "nope", Messages: []ollamaapi.Message{{Role: "user", Content: "x"}}}, func(ollamaapi.ChatResponse) error { return nil })
	if err == nil || !strings.Contains(err.Error(), `"nope" does not exist`) {
		t.Fatalf("unknown model, chat: %v", err)
	}
	_, err = c.Show(ctx, &ollamaapi.ShowRequest{Model: "nope"})
	var se ollamaapi.StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown model, show: %v", err)
	}
}

// TestRealOllama runs the whole path against a real Ollama: consumer →
// gateway → provider → Ollama, with the `tiny` test model.
func TestRealOllama(t *testing.T) {
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

	// The digest the provider attests is the model's identity (the same on
	// every machine), with Ollama's own digest beside it.
	models, err := ollama.New(ollamaURL, nil).Models(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want, backendWant := map[string]string{}, map[string]string{}
	for _, m := range models {
		want[m.Name], backendWant[m.Name] = m.Digest, m.BackendDigest
	}
	infos := tn.Gateway.Hub.Snapshot()
	if len(infos) != 1 {
		t.Fatalf("%d providers connected", len(infos))
	}
	found := false
	for _, m := range infos[0].Capabilities.Models {
		if want[m.Name] != m.Digest || backendWant[m.Name] != m.BackendDigest || m.BackendDigest == m.Digest {
			t.Errorf("model %s: capabilities digest %s (backend %s), want %s (backend %s)", m.Name, m.Digest, m.BackendDigest, want[m.Name], backendWant[m.Name])
		}
		found = found || m.Name == "tiny:latest"
	}
	if !found {
		t.Fatalf("tiny:latest not advertised: %+v", infos[0].Capabilities.Models)
	}

	c := openaiClient(tn)
	stream := c.Chat.Completions.NewStreaming(ctx, openaiChatParams("tiny", "Hello there", 16))
	var text strings.Builder
	var id string
	for stream.Next() {
		ch := stream.Current()
		id = ch.ID
		if len(ch.Choices) > 0 {
			text.WriteString(ch.Choices[0].Delta.Content)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if text.Len() == 0 {
		t.Fatal("no text from real Ollama")
	}
	s, err := tn.Gateway.Store.Receipt(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(); err != nil || s.Receipt.ModelDigest != want["tiny:latest"] || s.Receipt.CompletionTokens == 0 {
		t.Fatalf("receipt %+v: %v", s.Receipt, err)
	}
	t.Logf("real Ollama via gateway: %d completion tokens, %q", s.Receipt.CompletionTokens, text.String())
}
