package node_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

func openaiClient(tn *testNet) openai.Client {
	return openai.NewClient(option.WithBaseURL(tn.URL+"/v1/"), option.WithAPIKey(testAPIKey), option.WithMaxRetries(0))
}

// direct asks the simulator itself (no gateway) for the same request, so
// the gateway's answer can be compared with the provider's own counts.
func direct(t *testing.T, tn *testNet, req protocol.Request) (string, backend.Result) {
	t.Helper()
	var text strings.Builder
	res, err := tn.Backend.Backend.Generate(context.Background(), req, func(d backend.Delta) error {
		text.WriteString(d.Text)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return text.String(), res
}

// greedy are the options of the test requests: seed 7, temperature 0.
func greedy(maxTokens int) protocol.Options {
	seed, temp := int64(7), 0.0
	return protocol.Options{MaxTokens: maxTokens, Seed: &seed, Temperature: &temp}
}

func chatReq(prompt string, maxTokens int) protocol.Request {
	return protocol.Request{Kind: protocol.KindChat, Model: "sim", Messages: []protocol.ChatMessage{{Role: "user", Content: prompt}}, Options: greedy(maxTokens)}
}

func TestOpenAIChat(t *testing.T) {
	tn := startNet(t, netOptions{})
	c := openaiClient(tn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	params := openai.ChatCompletionNewParams{
		Model:       "sim",
		Messages:    []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Tell me about idle GPUs")},
		MaxTokens:   openai.Int(40),
		Seed:        openai.Int(7),
		Temperature: openai.Float(0),
	}
	wantText, wantRes := direct(t, tn, chatReq("Tell me about idle GPUs", 40))

	t.Run("non-streaming", func(t *testing.T) {
		resp, err := c.Chat.Completions.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Choices) != 1 || resp.Choices[0].Message.Content != wantText {
			t.Fatalf("content %q, want %q", resp.Choices[0].Message.Content, wantText)
		}
		if resp.Choices[0].FinishReason != wantRes.FinishReason {
			t.Errorf("finish_reason %q, want %q", resp.Choices[0].FinishReason, wantRes.FinishReason)
		}
		if resp.Usage.PromptTokens != int64(wantRes.Usage.PromptTokens) || resp.Usage.CompletionTokens != int64(wantRes.Usage.CompletionTokens) ||
			resp.Usage.TotalTokens != resp.Usage.PromptTokens+resp.Usage.CompletionTokens {
			t.Errorf("usage %+v, provider counted %+v", resp.Usage, wantRes.Usage)
		}
		checkReceipt(t, tn, resp.ID, wantRes.Usage)
	})

	t.Run("streaming", func(t *testing.T) {
		p := params
		p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		stream := c.Chat.Completions.NewStreaming(ctx, p)
		var acc openai.ChatCompletionAccumulator
		chunks := 0
		for stream.Next() {
			acc.AddChunk(stream.Current())
			chunks++
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if got := acc.Choices[0].Message.Content; got != wantText {
			t.Fatalf("streamed %q, want %q", got, wantText)
		}
		if acc.Usage.CompletionTokens != int64(wantRes.Usage.CompletionTokens) || acc.Usage.PromptTokens != int64(wantRes.Usage.PromptTokens) {
			t.Errorf("usage %+v, provider counted %+v", acc.Usage, wantRes.Usage)
		}
		if chunks < 3 {
			t.Errorf("only %d chunks", chunks)
		}
		checkReceipt(t, tn, acc.ID, wantRes.Usage)
	})

	t.Run("completions", func(t *testing.T) {
		prompt := "Once upon a time"
		wantText, wantRes := direct(t, tn, protocol.Request{Kind: protocol.KindGenerate, Model: "sim", Prompt: prompt, Options: greedy(30)})
		cp := openai.CompletionNewParams{Model: "sim", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String(prompt)},
			MaxTokens: openai.Int(30), Seed: openai.Int(7), Temperature: openai.Float(0)}
		resp, err := c.Completions.New(ctx, cp)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Choices[0].Text != wantText || resp.Usage.CompletionTokens != int64(wantRes.Usage.CompletionTokens) {
			t.Fatalf("completion %q usage %+v, want %q %+v", resp.Choices[0].Text, resp.Usage, wantText, wantRes.Usage)
		}
		stream := c.Completions.NewStreaming(ctx, cp)
		var text strings.Builder
		for stream.Next() {
			if ch := stream.Current().Choices; len(ch) > 0 {
				text.WriteString(ch[0].Text)
			}
		}
		if err := stream.Err(); err != nil || text.String() != wantText {
			t.Fatalf("streamed completion %q, %v; want %q", text.String(), err, wantText)
		}
	})

	t.Run("models", func(t *testing.T) {
		page, err := c.Models.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Data) != 1 || page.Data[0].ID != "sim" {
			t.Fatalf("models %+v", page.Data)
		}
		m, err := c.Models.Get(ctx, "sim")
		if err != nil || m.ID != "sim" {
			t.Fatalf("get model: %+v, %v", m, err)
		}
		if _, err := c.Models.Get(ctx, "nope"); err == nil {
			t.Fatal("unknown model found")
		}
	})

	t.Run("raw SSE ends with DONE", func(t *testing.T) {
		body := `{"model":"sim","stream":true,"max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`
		req, _ := http.NewRequestWithContext(ctx, "POST", tn.URL+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testAPIKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
			t.Fatalf("content type %q", ct)
		}
		var lines []string
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if l := sc.Text(); l != "" {
				lines = append(lines, l)
			}
		}
		if len(lines) < 3 || lines[len(lines)-1] != "data: [DONE]" {
			t.Fatalf("stream does not end with [DONE]: %q", lines)
		}
		for _, l := range lines[:len(lines)-1] {
			var v map[string]any
			if !strings.HasPrefix(l, "data: ") || json.Unmarshal([]byte(strings.TrimPrefix(l, "data: ")), &v) != nil {
				t.Fatalf("bad SSE line %q", l)
			}
		}
	})
}

// checkReceipt fetches the consumer's receipt and checks it against the
// provider's counts and both signatures.
func checkReceipt(t *testing.T, tn *testNet, id string, usage protocol.Usage) {
	t.Helper()
	r := fetchReceipt(t, tn, id)
	if r.RequestID != id || r.PromptTokens != usage.PromptTokens || r.CompletionTokens != usage.CompletionTokens ||
		r.Consumer != tn.Account || r.Provider != tn.Provider.Key || r.Gateway != tn.Gateway.Key.Public() {
		t.Fatalf("receipt %+v does not match request %s usage %+v", r, id, usage)
	}
}

func openaiChatParams(model, prompt string, maxTokens int64) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model:       model,
		Messages:    []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)},
		MaxTokens:   openai.Int(maxTokens),
		Seed:        openai.Int(7),
		Temperature: openai.Float(0),
	}
}
