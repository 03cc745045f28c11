package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/idlegrid/idlegrid/internal/gateway/api/apitypes"
	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
)

// serve answers every request with status, content type and body.
func serve(t *testing.T, status int, contentType, body string) *Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("X-Request-Id", "chatcmpl-test")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return New(srv.URL, "key", WithMaxLine(256), WithMaxBody(1<<10))
}

func TestRefusals(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		want   APIError
		// inMessage is part of the message when the body is no OpenAI
		// error.
		inMessage string
	}{
		{"OpenAI error", 401, `{"error":{"message":"Incorrect API key provided.","type":"authentication_error","param":null,"code":"invalid_api_key"}}`,
			APIError{Status: 401, Type: "authentication_error", Code: "invalid_api_key", Message: "Incorrect API key provided.", RequestID: "chatcmpl-test"}, ""},
		{"with param", 400, `{"error":{"message":"bad","type":"invalid_request_error","param":"model","code":null}}`,
			APIError{Status: 400, Type: "invalid_request_error", Param: "model", Message: "bad", RequestID: "chatcmpl-test"}, ""},
		{"HTML", 500, `<html><body>Internal Server Error</body></html>`, APIError{Status: 500, RequestID: "chatcmpl-test"}, "<html><body>"},
		{"Ollama's error", 404, `{"error":"model not found"}`, APIError{Status: 404, RequestID: "chatcmpl-test"}, "model not found"},
		{"empty", 502, ``, APIError{Status: 502, RequestID: "chatcmpl-test"}, "Bad Gateway"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := serve(t, tt.status, "text/html", tt.body)
			check := func(call string, err error) {
				t.Helper()
				var ae *APIError
				if !errors.As(err, &ae) {
					t.Fatalf("%s: %v is no *APIError", call, err)
				}
				got := *ae
				if !strings.Contains(err.Error(), fmt.Sprintf("HTTP %d", tt.status)) {
					t.Errorf("%s: %q does not say the status", call, err)
				}
				if tt.inMessage != "" {
					if !strings.Contains(got.Message, tt.inMessage) {
						t.Errorf("%s: message %q lacks %q", call, got.Message, tt.inMessage)
					}
					got.Message = ""
				}
				if got != tt.want {
					t.Errorf("%s: %+v, want %+v", call, got, tt.want)
				}
				// The gateway's own error type reads it the same way.
				var ge *apierr.Error
				if !errors.As(err, &ge) || ge.Status != tt.status || ge.Message != ae.Message {
					t.Errorf("%s: as *apierr.Error: %+v", call, ge)
				}
			}
			ctx := context.Background()
			_, err := c.Chat(ctx, map[string]any{"model": "m"})
			check("Chat", err)
			_, err = c.Models(ctx)
			check("Models", err)
			_, err = c.Account(ctx)
			check("Account", err)
			id, err := c.ChatStream(ctx, map[string]any{"model": "m", "stream": true}, func(apitypes.ChatChunk) error { return nil })
			check("ChatStream", err)
			if id != "chatcmpl-test" {
				t.Errorf("ChatStream's request id %q", id)
			}
		})
	}
}

func TestOversizedBody(t *testing.T) {
	c := serve(t, 200, "application/json", `{"object":"list","data":[{"id":"`+strings.Repeat("m", 2<<10)+`"}]}`)
	if _, err := c.Models(context.Background()); err == nil || !strings.Contains(err.Error(), "longer than 1024 bytes") {
		t.Fatalf("oversized answer: %v", err)
	}
}

const (
	chunk1 = `data: {"id":"chatcmpl-test","object":"chat.completion.chunk","created":1,"model":"m","system_fingerprint":null,"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}` + "\n\n"
	chunk2 = `data: {"id":"chatcmpl-test","object":"chat.completion.chunk","created":1,"model":"m","system_fingerprint":null,"choices":[{"index":0,"delta":{"content":"Hi"},"logprobs":null,"finish_reason":"stop"}],"usage":null}` + "\n\n"
	usage  = `data: {"id":"chatcmpl-test","object":"chat.completion.chunk","created":1,"model":"m","system_fingerprint":null,"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}` + "\n\n"
)

func TestChatStream(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		chunks int
		check  func(error) bool
	}{
		{"whole", chunk1 + chunk2 + usage + "data: [DONE]\n\n", 3, func(err error) bool { return err == nil }},
		{"no space after data:", strings.ReplaceAll(chunk1+chunk2+"data: [DONE]\n\n", "data: ", "data:"), 2, func(err error) bool { return err == nil }},
		{"truncated", chunk1 + chunk2, 2, func(err error) bool { return errors.Is(err, ErrTruncated) }},
		{"cut mid-event", chunk1 + chunk2[:40], 1, func(err error) bool { return err != nil && !errors.Is(err, ErrTruncated) }},
		{"oversized line", chunk1 + "data: " + strings.Repeat("x", 300) + "\n\n", 1, func(err error) bool {
			return err != nil && strings.Contains(err.Error(), "longer than 256 bytes")
		}},
		{"error event", chunk1 + `data: {"error":{"message":"provider lost","type":"server_error","param":null,"code":"upstream_error"}}` + "\n\n", 1, func(err error) bool {
			var ae *APIError
			return errors.As(err, &ae) && ae.Status == 200 && ae.Code == "upstream_error" && ae.Message == "provider lost" && ae.RequestID == "chatcmpl-test"
		}},
		{"garbage", "data: {not json\n\n", 0, func(err error) bool { return err != nil && !errors.Is(err, ErrTruncated) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := serve(t, 200, "text/event-stream", tt.body)
			var got []apitypes.ChatChunk
			id, err := c.ChatStream(context.Background(), map[string]any{"stream": true}, func(ch apitypes.ChatChunk) error {
				got = append(got, ch)
				return nil
			})
			if !tt.check(err) || len(got) != tt.chunks || id != "chatcmpl-test" {
				t.Fatalf("err %v, %d chunks (want %d), id %q", err, len(got), tt.chunks, id)
			}
			if tt.name == "whole" {
				if got[0].Choices[0].Delta.Role != "assistant" || got[1].Choices[0].Delta.Text() != "Hi" || !got[1].Usage.Asked || got[1].Usage.Counts != nil ||
					got[2].Usage.Counts == nil || got[2].Usage.Counts.TotalTokens != 4 {
					t.Errorf("chunks decoded as %+v", got)
				}
			}
		})
	}
}

// TestChatStreamStopsOnCallbackError: an error from onChunk ends the
// stream and is returned as it is.
func TestChatStreamStopsOnCallbackError(t *testing.T) {
	c := serve(t, 200, "text/event-stream", chunk1+chunk2+"data: [DONE]\n\n")
	stop := errors.New("enough")
	n := 0
	_, err := c.ChatStream(context.Background(), map[string]any{"stream": true}, func(apitypes.ChatChunk) error {
		n++
		return stop
	})
	if err != stop || n != 1 {
		t.Fatalf("err %v after %d chunks", err, n)
	}
}
