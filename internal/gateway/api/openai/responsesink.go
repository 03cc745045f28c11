package openai

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/gateway/sink"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// Response statuses of the Responses API.
const (
	statusInProgress = "in_progress"
	statusCompleted  = "completed"
	statusIncomplete = "incomplete"
	statusFailed     = "failed"
)

// responseObject is the Responses API's response, in OpenAI's member order.
// Members about features the network does not have are sent with the
// values OpenAI sends when they are unused.
type responseObject struct {
	ID                 string            `json:"id"`
	Object             string            `json:"object"`
	CreatedAt          int64             `json:"created_at"`
	Status             string            `json:"status"`
	Background         bool              `json:"background"`
	CompletedAt        *int64            `json:"completed_at"`
	Error              *responseError    `json:"error"`
	IncompleteDetails  *incompleteReason `json:"incomplete_details"`
	Instructions       *string           `json:"instructions"`
	MaxOutputTokens    *int              `json:"max_output_tokens"`
	MaxToolCalls       json.RawMessage   `json:"max_tool_calls"`
	Model              string            `json:"model"`
	Output             []outputMessage   `json:"output"`
	ParallelToolCalls  bool              `json:"parallel_tool_calls"`
	PreviousResponseID *string           `json:"previous_response_id"`
	Reasoning          reasoningConfig   `json:"reasoning"`
	ServiceTier        string            `json:"service_tier"`
	Store              bool              `json:"store"`
	Temperature        *float64          `json:"temperature"`
	Text               textConfig        `json:"text"`
	ToolChoice         string            `json:"tool_choice"`
	Tools              []struct{}        `json:"tools"`
	TopLogprobs        int               `json:"top_logprobs"`
	TopP               *float64          `json:"top_p"`
	Truncation         string            `json:"truncation"`
	Usage              *responseUsage    `json:"usage"`
	User               *string           `json:"user"`
	Metadata           map[string]string `json:"metadata"`
}

type responseError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type incompleteReason struct {
	Reason string `json:"reason"`
}

type reasoningConfig struct {
	Effort  json.RawMessage `json:"effort"`
	Summary json.RawMessage `json:"summary"`
}

type textConfig struct {
	Format    textFormat `json:"format"`
	Verbosity string     `json:"verbosity"`
}

type textFormat struct {
	Type string `json:"type"`
}

// outputMessage is the assistant's message item in output.
type outputMessage struct {
	ID      string       `json:"id"`
	Type    string       `json:"type"`
	Status  string       `json:"status"`
	Content []outputText `json:"content"`
	Role    string       `json:"role"`
}

// outputText is the message's one content part.
type outputText struct {
	Type        string             `json:"type"`
	Annotations []struct{}         `json:"annotations"`
	Logprobs    []chatTokenLogprob `json:"logprobs"`
	Text        string             `json:"text"`
}

type responseUsage struct {
	InputTokens         uint64              `json:"input_tokens"`
	InputTokensDetails  inputTokensDetails  `json:"input_tokens_details"`
	OutputTokens        uint64              `json:"output_tokens"`
	OutputTokensDetails outputTokensDetails `json:"output_tokens_details"`
	TotalTokens         uint64              `json:"total_tokens"`
}

type inputTokensDetails struct {
	CachedTokens uint64 `json:"cached_tokens"`
}

type outputTokensDetails struct {
	ReasoningTokens uint64 `json:"reasoning_tokens"`
}

// Stream events, each with its type first and sequence_number last, as
// OpenAI sends them.
type (
	responseEvent struct {
		Type     string         `json:"type"`
		Response responseObject `json:"response"`
		Seq      int            `json:"sequence_number"`
	}
	outputItemEvent struct {
		Type        string        `json:"type"`
		OutputIndex int           `json:"output_index"`
		Item        outputMessage `json:"item"`
		Seq         int           `json:"sequence_number"`
	}
	contentPartEvent struct {
		Type         string     `json:"type"`
		ItemID       string     `json:"item_id"`
		OutputIndex  int        `json:"output_index"`
		ContentIndex int        `json:"content_index"`
		Part         outputText `json:"part"`
		Seq          int        `json:"sequence_number"`
	}
	textDeltaEvent struct {
		Type         string             `json:"type"`
		ItemID       string             `json:"item_id"`
		OutputIndex  int                `json:"output_index"`
		ContentIndex int                `json:"content_index"`
		Delta        string             `json:"delta"`
		Logprobs     []chatTokenLogprob `json:"logprobs"`
		Seq          int                `json:"sequence_number"`
	}
	textDoneEvent struct {
		Type         string             `json:"type"`
		ItemID       string             `json:"item_id"`
		OutputIndex  int                `json:"output_index"`
		ContentIndex int                `json:"content_index"`
		Text         string             `json:"text"`
		Logprobs     []chatTokenLogprob `json:"logprobs"`
		Seq          int                `json:"sequence_number"`
	}
)

// responsesSink writes /v1/responses answers; see NewResponsesSink.
type responsesSink struct {
	sinkCore
	// seq is the next event's sequence_number.
	seq int
	// opened is set once the message item and its text part were announced.
	opened bool
	// text and logprobs are the answer so far: the final response object
	// carries the whole text even when it was streamed.
	text     strings.Builder
	logprobs []protocol.TokenLogprob
}

var _ sink.Sink = (*responsesSink)(nil)

// NewResponsesSink returns a sink that writes /v1/responses answers for p
// (p.Responses must be set, as ParseResponses sets it) to w: the Responses
// API's named server-sent events when p.Stream, else one response object
// written at End. Meta.RequestID ("resp_…") becomes the response id and
// the receipt's, and "msg_" plus the same suffix the message item's id.
func NewResponsesSink(w http.ResponseWriter, p Params) sink.Sink {
	if p.Responses == nil {
		p.Responses = &ResponsesOptions{ToolChoice: "auto", ParallelToolCalls: true, Verbosity: "medium", Truncation: "disabled", Metadata: map[string]string{}}
	}
	return &responsesSink{sinkCore: sinkCore{out: newResponder(w), p: p}}
}

// Begin implements sink.Sink: a stream opens with response.created and
// response.in_progress.
func (s *responsesSink) Begin(m sink.Meta) error {
	if err := s.begin(m); err != nil || !s.p.Stream {
		return err
	}
	r := s.response(statusInProgress, nil)
	if err := s.emit("response.created", func(t string, seq int) any { return responseEvent{Type: t, Response: r, Seq: seq} }); err != nil {
		return err
	}
	return s.emit("response.in_progress", func(t string, seq int) any { return responseEvent{Type: t, Response: r, Seq: seq} })
}

// Delta implements sink.Sink.
func (s *responsesSink) Delta(d sink.Delta) error {
	if err := s.delta(); err != nil {
		return err
	}
	s.text.WriteString(d.Text)
	s.logprobs = append(s.logprobs, d.Logprobs...)
	if !s.p.Stream {
		return nil
	}
	if err := s.open(); err != nil {
		return err
	}
	lps := s.outputLogprobs(d.Logprobs)
	return s.emit("response.output_text.delta", func(t string, seq int) any {
		return textDeltaEvent{Type: t, ItemID: s.messageID(), Delta: d.Text, Logprobs: lps, Seq: seq}
	})
}

// End implements sink.Sink. An answer cut by the token limit is
// "incomplete" with reason max_output_tokens, as on OpenAI.
func (s *responsesSink) End(f sink.Final) error {
	if err := s.end(); err != nil {
		return err
	}
	status := statusCompleted
	if f.FinishReason == "length" {
		status = statusIncomplete
	}
	r := s.response(status, &f)
	if !s.p.Stream {
		return s.out.body(http.StatusOK, r)
	}
	if err := s.open(); err != nil {
		return err
	}
	msg := r.Output[0]
	part := msg.Content[0]
	steps := []struct {
		event string
		make  func(t string, seq int) any
	}{
		{"response.output_text.done", func(t string, seq int) any {
			return textDoneEvent{Type: t, ItemID: msg.ID, Text: part.Text, Logprobs: part.Logprobs, Seq: seq}
		}},
		{"response.content_part.done", func(t string, seq int) any {
			return contentPartEvent{Type: t, ItemID: msg.ID, Part: part, Seq: seq}
		}},
		{"response.output_item.done", func(t string, seq int) any { return outputItemEvent{Type: t, Item: msg, Seq: seq} }},
		{"response." + status, func(t string, seq int) any { return responseEvent{Type: t, Response: r, Seq: seq} }},
	}
	for _, step := range steps {
		if err := s.emit(step.event, step.make); err != nil {
			return err
		}
	}
	return nil
}

// Fail implements sink.Sink. Once a stream is open, the failure is a
// response.failed event whose response carries the error and the text so
// far; otherwise it is a plain OpenAI error response.
func (s *responsesSink) Fail(e *apierr.Error) {
	if s.state == stateDone {
		return
	}
	streaming := s.p.Stream && s.state == stateBegun
	s.state = stateDone
	if !streaming {
		s.out.fail(e)
		return
	}
	r := s.response(statusFailed, nil)
	code := "server_error"
	if e.Status == http.StatusTooManyRequests {
		code = "rate_limit_exceeded"
	}
	r.Error = &responseError{Code: code, Message: e.Message}
	// The consumer may already be gone; there is nobody left to tell.
	_ = s.emit("response.failed", func(t string, seq int) any { return responseEvent{Type: t, Response: r, Seq: seq} })
}

// open announces the message item and its output_text part before the
// first text (or at the end of an empty answer).
func (s *responsesSink) open() error {
	if s.opened {
		return nil
	}
	s.opened = true
	item := outputMessage{ID: s.messageID(), Type: "message", Status: statusInProgress, Content: []outputText{}, Role: "assistant"}
	if err := s.emit("response.output_item.added", func(t string, seq int) any { return outputItemEvent{Type: t, Item: item, Seq: seq} }); err != nil {
		return err
	}
	return s.emit("response.content_part.added", func(t string, seq int) any {
		return contentPartEvent{Type: t, ItemID: item.ID, Part: s.part(""), Seq: seq}
	})
}

// emit writes one named event built by make with the next sequence number.
func (s *responsesSink) emit(event string, make func(event string, seq int) any) error {
	v := make(event, s.seq)
	s.seq++
	return s.out.namedEvent(event, v)
}

// messageID derives the message item's id from the response id, so that
// both name the same answer.
func (s *responsesSink) messageID() string {
	return "msg_" + strings.TrimPrefix(s.meta.RequestID, "resp_")
}

func (s *responsesSink) part(text string) outputText {
	return outputText{Type: "output_text", Annotations: []struct{}{}, Logprobs: s.outputLogprobs(nil), Text: text}
}

// outputLogprobs renders lps when log-probabilities were requested; the
// Responses API sends an empty list otherwise.
func (s *responsesSink) outputLogprobs(lps []protocol.TokenLogprob) []chatTokenLogprob {
	if !s.p.Request.Options.Logprobs || len(lps) == 0 {
		return []chatTokenLogprob{}
	}
	return newChatLogprobs(lps, s.p.Request.Options.TopLogprobs).Content
}

// response builds the response object in status; f is the end of a
// successful answer (nil while in progress or failed), which adds usage
// and, when completed, completed_at. The output holds the message once there is text or the
// answer ended.
func (s *responsesSink) response(status string, f *sink.Final) responseObject {
	ro := s.p.Responses
	opts := s.p.Request.Options
	r := responseObject{
		ID:                s.meta.RequestID,
		Object:            "response",
		CreatedAt:         s.meta.Created.Unix(),
		Status:            status,
		Instructions:      ro.Instructions,
		MaxToolCalls:      json.RawMessage(jsonNull),
		Model:             s.meta.Model,
		Output:            []outputMessage{},
		ParallelToolCalls: ro.ParallelToolCalls,
		Reasoning:         reasoningConfig{Effort: json.RawMessage(jsonNull), Summary: json.RawMessage(jsonNull)},
		ServiceTier:       "default",
		Store:             ro.Store,
		Temperature:       opts.Temperature,
		Text:              textConfig{Format: textFormat{Type: "text"}, Verbosity: ro.Verbosity},
		ToolChoice:        ro.ToolChoice,
		Tools:             []struct{}{},
		TopLogprobs:       opts.TopLogprobs,
		TopP:              opts.TopP,
		Truncation:        ro.Truncation,
		Metadata:          ro.Metadata,
	}
	if ro.MaxOutputTokens > 0 {
		r.MaxOutputTokens = &ro.MaxOutputTokens
	}
	if s.p.User != "" {
		r.User = &s.p.User
	}
	if ro.PreviousResponseID != "" {
		r.PreviousResponseID = &ro.PreviousResponseID
	}
	if status == statusIncomplete {
		r.IncompleteDetails = &incompleteReason{Reason: "max_output_tokens"}
	}
	if f != nil {
		if status == statusCompleted {
			done := s.meta.Created.Add(f.Total).Unix()
			r.CompletedAt = &done
		}
		u := f.Usage
		r.Usage = &responseUsage{InputTokens: u.PromptTokens, OutputTokens: u.CompletionTokens, TotalTokens: u.PromptTokens + u.CompletionTokens}
	}
	if status == statusInProgress || (status == statusFailed && s.text.Len() == 0) {
		return r
	}
	itemStatus := status
	if status == statusFailed {
		itemStatus = statusIncomplete
	}
	part := s.part(s.text.String())
	part.Logprobs = s.outputLogprobs(s.logprobs)
	r.Output = append(r.Output, outputMessage{ID: s.messageID(), Type: "message", Status: itemStatus, Content: []outputText{part}, Role: "assistant"})
	return r
}
