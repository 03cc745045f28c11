package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// openaiRequest is the part of OpenAI's chat completion request the
// simulator understands, as Ollama's /v1/chat/completions does; other
// fields are ignored. Text content only.
type openaiRequest struct {
	Model               string       `json:"model"`
	Messages            []apiMessage `json:"messages"`
	Stream              bool         `json:"stream"`
	MaxTokens           *int         `json:"max_tokens"`
	MaxCompletionTokens *int         `json:"max_completion_tokens"`
	Temperature         *float64     `json:"temperature"`
	TopP                *float64     `json:"top_p"`
	Seed                *int64       `json:"seed"`
	Stop                any          `json:"stop"`
}

type openaiChoice struct {
	Index        int              `json:"index"`
	Message      *apiMessage      `json:"message,omitempty"`
	Delta        *apiMessage      `json:"delta,omitempty"`
	FinishReason *string          `json:"finish_reason"`
	Logprobs     *json.RawMessage `json:"logprobs"`
}

type openaiResponse struct {
	ID      string         `json:"id"`
	Object  string         `json:"object"`
	Created int64          `json:"created"`
	Model   string         `json:"model"`
	Choices []openaiChoice `json:"choices"`
	Usage   *openaiUsage   `json:"usage,omitempty"`
}

type openaiUsage struct {
	PromptTokens     uint64 `json:"prompt_tokens"`
	CompletionTokens uint64 `json:"completion_tokens"`
	TotalTokens      uint64 `json:"total_tokens"`
}

func (in *openaiRequest) toRequest() (protocol.Request, error) {
	req := protocol.Request{Kind: protocol.KindChat, Model: in.Model}
	for _, m := range in.Messages {
		req.Messages = append(req.Messages, protocol.ChatMessage{Role: strings.ToLower(m.Role), Content: m.Content})
	}
	o := &req.Options
	if n := in.MaxCompletionTokens; n != nil && *n > 0 {
		o.MaxTokens = *n
	} else if n := in.MaxTokens; n != nil && *n > 0 {
		o.MaxTokens = *n
	}
	o.Temperature, o.TopP, o.Seed = in.Temperature, in.TopP, in.Seed
	switch stop := in.Stop.(type) {
	case nil:
	case string:
		o.Stop = []string{stop}
	default:
		list, err := stringList("stop", stop)
		if err != nil {
			return req, errors.New("stop must be a string or an array of strings")
		}
		o.Stop = list
	}
	return req, nil
}

// handleOpenAIChat serves POST /v1/chat/completions: a JSON completion, or
// server-sent events ending with "data: [DONE]" when "stream" is true.
// Errors have OpenAI's shape. Faults are not applied here.
func (s *Server) handleOpenAIChat(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	var in openaiRequest
	if err := decodeBody(w, r, &in); err != nil {
		writeOpenAIError(w, http.StatusBadRequest, err.Error())
		return
	}
	if in.Model == "" {
		writeOpenAIError(w, http.StatusBadRequest, "model is required")
		return
	}
	if _, ok := s.sim.lookup(in.Model); !ok {
		writeOpenAIError(w, http.StatusNotFound, notFoundMessage(in.Model))
		return
	}
	req, err := in.toRequest()
	if err != nil {
		writeOpenAIError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.active.Add(1)
	defer s.active.Add(-1)
	resp := openaiResponse{ID: fmt.Sprintf("chatcmpl-%d", s.requests.Load()), Object: "chat.completion", Created: time.Now().Unix(), Model: in.Model}
	var text strings.Builder
	rc := http.NewResponseController(w)
	emit := func(d backend.Delta) error {
		if !in.Stream {
			text.WriteString(d.Text)
			return nil
		}
		chunk := resp
		chunk.Object = "chat.completion.chunk"
		chunk.Choices = []openaiChoice{{Delta: &apiMessage{Role: "assistant", Content: d.Text}}}
		return writeEvent(w, rc, chunk)
	}
	res, err := s.sim.Generate(r.Context(), req, emit)
	if err != nil {
		if r.Context().Err() != nil {
			s.cancelled.Add(1)
			return
		}
		s.failed.Add(1)
		if !in.Stream {
			writeOpenAIError(w, http.StatusInternalServerError, err.Error())
		}
		return
	}
	s.completed.Add(1)
	finish := res.FinishReason
	resp.Usage = &openaiUsage{PromptTokens: res.Usage.PromptTokens, CompletionTokens: res.Usage.CompletionTokens,
		TotalTokens: res.Usage.PromptTokens + res.Usage.CompletionTokens}
	if !in.Stream {
		resp.Choices = []openaiChoice{{Message: &apiMessage{Role: "assistant", Content: text.String()}, FinishReason: &finish}}
		writeJSON(w, http.StatusOK, resp)
		return
	}
	resp.Object = "chat.completion.chunk"
	resp.Choices = []openaiChoice{{Delta: &apiMessage{}, FinishReason: &finish}}
	if writeEvent(w, rc, resp) == nil {
		_, _ = w.Write([]byte("data: [DONE]\n\n"))
		_ = rc.Flush()
	}
}

// writeEvent writes one server-sent event and flushes it.
func writeEvent(w http.ResponseWriter, rc *http.ResponseController, v any) error {
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "text/event-stream")
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
		return fmt.Errorf("sim: write: %w", err)
	}
	return rc.Flush()
}

// writeOpenAIError answers with OpenAI's error body.
func writeOpenAIError(w http.ResponseWriter, status int, msg string) {
	kind := "invalid_request_error"
	if status >= 500 {
		kind = "api_error"
	}
	writeJSON(w, status, map[string]any{"error": map[string]any{"message": msg, "type": kind, "param": nil, "code": nil}})
}
