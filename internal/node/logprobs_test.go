package node_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/node"
	"github.com/idlegrid/idlegrid/internal/tstest"
)

// TestRealOllamaLogprobs: a consumer who asks for log-probabilities gets
// them from a provider in front of a real Ollama (v0.12.11 or later), in
// OpenAI's shape (streaming and not) and in Ollama's, one per generated
// token, with the alternatives asked for.
func TestRealOllamaLogprobs(t *testing.T) {
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
	c := openaiClient(tn)

	params := openaiChatParams("tiny", "Hello there", 8)
	params.Logprobs = openai.Bool(true)
	params.TopLogprobs = openai.Int(2)
	resp, err := c.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	lps := resp.Choices[0].Logprobs.Content
	var joined strings.Builder
	for _, lp := range lps {
		joined.WriteString(lp.Token)
		if len(lp.TopLogprobs) != 2 || lp.Logprob > 0 || string(bytesOf(lp.Bytes)) != lp.Token {
			t.Errorf("token %+v: want 2 alternatives, logprob ≤ 0, bytes of the token", lp)
		}
	}
	if len(lps) == 0 || int64(len(lps)) != resp.Usage.CompletionTokens || joined.String() != resp.Choices[0].Message.Content {
		t.Fatalf("non-streaming: %d logprobs for %d tokens, tokens %q, text %q", len(lps), resp.Usage.CompletionTokens, joined.String(), resp.Choices[0].Message.Content)
	}

	stream := c.Chat.Completions.NewStreaming(ctx, params)
	var text, tokens strings.Builder
	n := 0
	for stream.Next() {
		ch := stream.Current()
		if len(ch.Choices) == 0 {
			continue
		}
		text.WriteString(ch.Choices[0].Delta.Content)
		for _, lp := range ch.Choices[0].Logprobs.Content {
			tokens.WriteString(lp.Token)
			n++
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if n == 0 || tokens.String() != text.String() {
		t.Fatalf("streaming: %d logprobs, tokens %q, text %q", n, tokens.String(), text.String())
	}

	// Ollama's API, streamed: every line with text carries its tokens.
	body := `{"model":"tiny","messages":[{"role":"user","content":"Hello there"}],"logprobs":true,"top_logprobs":3,"options":{"num_predict":6,"temperature":0}}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tn.URL+"/api/chat", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	hr, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer hr.Body.Close()
	if hr.StatusCode != http.StatusOK {
		t.Fatalf("/api/chat: HTTP %d", hr.StatusCode)
	}
	sc := bufio.NewScanner(hr.Body)
	lines := 0
	for sc.Scan() {
		var line struct {
			Message  struct{ Content string }
			Done     bool
			Logprobs []struct {
				Token       string
				Logprob     float64
				Bytes       []int
				TopLogprobs []struct{ Token string } `json:"top_logprobs"`
			}
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("line %s: %v", sc.Bytes(), err)
		}
		if line.Done || line.Message.Content == "" {
			continue
		}
		lines++
		var tok bytes.Buffer
		for _, lp := range line.Logprobs {
			tok.WriteString(lp.Token)
			if len(lp.TopLogprobs) != 3 || len(lp.Bytes) != len(lp.Token) {
				t.Errorf("line %s: want 3 alternatives and the token's bytes", sc.Bytes())
			}
		}
		if tok.String() != line.Message.Content {
			t.Errorf("line %s: tokens %q, text %q", sc.Bytes(), tok.String(), line.Message.Content)
		}
	}
	if lines == 0 {
		t.Fatal("/api/chat: no text")
	}
}

func bytesOf(b []int64) []byte {
	out := make([]byte, len(b))
	for i, v := range b {
		out[i] = byte(v)
	}
	return out
}

// TestOldOllamaLogprobs: a provider in front of an Ollama older than
// 0.12.11 (which returns no log-probabilities) advertises it, and a
// request asking for them is refused with a 400 saying why, instead of an
// answer with an empty list; requests without logprobs are served.
func TestOldOllamaLogprobs(t *testing.T) {
	s, err := sim.New(fastSim())
	if err != nil {
		t.Fatal(err)
	}
	simSrv := sim.NewServer(s)
	old := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/version" {
			io.WriteString(w, `{"version":"0.6.5"}`)
			return
		}
		simSrv.ServeHTTP(w, r)
	}))
	t.Cleanup(old.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := node.OpenBackend(ctx, node.BackendOllama, old.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	tn := startNet(t, netOptions{backend: b})
	c := openaiClient(tn)

	params := openaiChatParams("sim", "hi", 4)
	if _, err := c.Chat.Completions.New(ctx, params); err != nil {
		t.Fatalf("without logprobs: %v", err)
	}
	params.Logprobs = openai.Bool(true)
	_, err = c.Chat.Completions.New(ctx, params)
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest || apiErr.Param != "logprobs" || !strings.Contains(apiErr.Message, "log-probabilities") {
		t.Fatalf("with logprobs: %v, want a 400 on logprobs", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tn.URL+"/api/generate", strings.NewReader(`{"model":"sim","prompt":"hi","logprobs":true}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	hr, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(hr.Body)
	hr.Body.Close()
	if hr.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "log-probabilities") {
		t.Fatalf("/api/generate with logprobs: HTTP %d %s", hr.StatusCode, body)
	}
}

// TestSilentOllamaLogprobs: a server whose version says nothing ("0.0.0")
// but that returns no log-probabilities: the first request asking for them
// is a 400 from the provider's backend, and from then on the gateway
// refuses such requests itself; requests without logprobs are served.
func TestSilentOllamaLogprobs(t *testing.T) {
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/version":
			io.WriteString(w, `{"version":"0.0.0"}`)
		case "/api/tags":
			io.WriteString(w, `{"models":[{"name":"old:latest","digest":"`+strings.Repeat("0", 64)+`"}]}`)
		case "/api/show":
			io.WriteString(w, `{"modelfile":"FROM old\n"}`)
		case "/api/chat":
			io.WriteString(w, `{"message":{"role":"assistant","content":"hi"},"done":false}`+"\n"+`{"message":{"role":"assistant","content":""},"done":true,"eval_count":1,"prompt_eval_count":1}`+"\n")
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(fake.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := node.OpenBackend(ctx, node.BackendOllama, fake.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	tn := startNet(t, netOptions{backend: b})
	c := openaiClient(tn)
	params := openaiChatParams("old", "hi", 4)
	if r, err := c.Chat.Completions.New(ctx, params); err != nil || r.Choices[0].Message.Content != "hi" {
		t.Fatalf("without logprobs: %v", err)
	}
	params.Logprobs = openai.Bool(true)
	refused := func(want string) bool {
		_, err := c.Chat.Completions.New(ctx, params)
		var apiErr *openai.Error
		return errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusBadRequest && strings.Contains(apiErr.Message, want)
	}
	if !refused("The provider's model server rejected the request: ") {
		t.Fatal("the first request with logprobs was not refused by the provider's backend")
	}
	// The gateway learns no_logprobs from the agent's capabilities a
	// moment after the failed job.
	tstest.WaitFor(t, 10*time.Second, "the gateway to refuse logprobs itself", func() bool {
		return refused("No provider of this model can return log-probabilities")
	})
}
