package sim

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestServerOpenAIChat: /v1/chat/completions answers with the same tokens
// as /api/chat for the same request, as JSON and as server-sent events,
// and bad requests get OpenAI's error body.
func TestServerOpenAIChat(t *testing.T) {
	_, ts := newTestServer(t, fastConfig())
	_, ollama := do(t, "POST", ts.URL+"/api/chat",
		`{"model":"sim","stream":false,"messages":[{"role":"user","content":"hi"}],"options":{"num_predict":5,"seed":1}}`)
	var want struct {
		Message apiMessage `json:"message"`
	}
	if err := json.Unmarshal(ollama, &want); err != nil || want.Message.Content == "" {
		t.Fatalf("ollama answer %s (%v)", ollama, err)
	}

	resp, body := do(t, "POST", ts.URL+"/v1/chat/completions",
		`{"model":"sim","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"seed":1}`)
	var got openaiResponse
	if err := json.Unmarshal(body, &got); err != nil || resp.StatusCode != 200 || len(got.Choices) != 1 || got.Choices[0].Message == nil {
		t.Fatalf("completion: %d %s (%v)", resp.StatusCode, body, err)
	}
	if c := got.Choices[0]; c.Message.Content != want.Message.Content || *c.FinishReason != "length" || got.Usage.CompletionTokens != 5 || got.Object != "chat.completion" {
		t.Errorf("completion %s, want content %q", body, want.Message.Content)
	}

	resp, body = do(t, "POST", ts.URL+"/v1/chat/completions",
		`{"model":"sim","stream":true,"messages":[{"role":"user","content":"hi"}],"max_tokens":5,"seed":1}`)
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("stream content type %q", ct)
	}
	var text strings.Builder
	events := strings.Split(strings.TrimSpace(string(body)), "\n\n")
	if events[len(events)-1] != "data: [DONE]" {
		t.Fatalf("stream does not end with [DONE]: %s", body)
	}
	for _, e := range events[:len(events)-1] {
		var chunk openaiResponse
		if err := json.Unmarshal([]byte(strings.TrimPrefix(e, "data: ")), &chunk); err != nil || len(chunk.Choices) != 1 {
			t.Fatalf("event %q (%v)", e, err)
		}
		text.WriteString(chunk.Choices[0].Delta.Content)
	}
	if text.String() != want.Message.Content {
		t.Errorf("streamed %q, want %q", text.String(), want.Message.Content)
	}

	for _, tc := range []struct {
		body   string
		status int
	}{
		{`{`, 400},
		{`{"messages":[]}`, 400},
		{`{"model":"nope","messages":[]}`, 404},
		{`{"model":"sim","messages":[],"stop":[1]}`, 400},
	} {
		resp, body := do(t, "POST", ts.URL+"/v1/chat/completions", tc.body)
		var e struct {
			Error struct {
				Message string `json:"message"`
				Type    string `json:"type"`
			} `json:"error"`
		}
		if err := json.Unmarshal(body, &e); err != nil || resp.StatusCode != tc.status || e.Error.Message == "" || e.Error.Type == "" {
			t.Errorf("%s: %d %s, want %d with an OpenAI error", tc.body, resp.StatusCode, body, tc.status)
		}
	}
}
