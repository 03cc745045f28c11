package openai

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/idlegrid/idlegrid/internal/gateway/api/apitypes"
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
	Output             []any             `json:"output"`
	ParallelToolCalls  bool              `json:"parallel_tool_calls"`
	PreviousResponseID *string           `json:"previous_response_id"`
	Reasoning          reasoningConfig   `json:"reasoning"`
	ServiceTier        string            `json:"service_tier"`
	Store              bool              `json:"store"`
	Temperature        *float64          `json:"temperature"`
	Text               textConfig        `json:"text"`
	ToolChoice         json.RawMessage   `json:"tool_choice"`
	Tools              []responseTool    `json:"tools"`
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
	Format    json.RawMessage `json:"format"`
	Verbosity string          `json:"verbosity"`
}

// outputMessage is the assistant's message item in output.
type outputMessage struct {
	ID      string       `json:"id"`
	Type    string       `json:"type"`
	Status  string       `json:"status"`
	Content []outputText `json:"content"`
	Role    string       `json:"role"`
}

// functionCall is a function_call item in output: one tool call.
type functionCall struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	Status    string `json:"status"`
	Arguments string `json:"arguments"`
	CallID    string `json:"call_id"`
	Name      string `json:"name"`
}

// outputText is the message's one content part.
type outputText struct {
	Type        string                      `json:"type"`
	Annotations []struct{}                  `json:"annotations"`
	Logprobs    []apitypes.ChatTokenLogprob `json:"logprobs"`
	Text        string                      `json:"text"`
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
		Type        string `json:"type"`
		OutputIndex int    `json:"output_index"`
		Item        any    `json:"item"`
		Seq         int    `json:"sequence_number"`
	}
	argumentsDeltaEvent struct {
		Type        string `json:"type"`
		ItemID      string `json:"item_id"`
		OutputIndex int    `json:"output_index"`
		Delta       string `json:"delta"`
		Seq         int    `json:"sequence_number"`
	}
	argumentsDoneEvent struct {
		Type        string `json:"type"`
		ItemID      string `json:"item_id"`
		OutputIndex int    `json:"output_index"`
		Name        string `json:"name"`
		Arguments   string `json:"arguments"`
		Seq         int    `json:"sequence_number"`
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
		Type         string                      `json:"type"`
		ItemID       string                      `json:"item_id"`
		OutputIndex  int                         `json:"output_index"`
		ContentIndex int                         `json:"content_index"`
		Delta        string                      `json:"delta"`
		Logprobs     []apitypes.ChatTokenLogprob `json:"logprobs"`
		Seq          int                         `json:"sequence_number"`
	}
	textDoneEvent struct {
		Type         string                      `json:"type"`
		ItemID       string                      `json:"item_id"`
		OutputIndex  int                         `json:"output_index"`
		ContentIndex int                         `json:"content_index"`
		Text         string                      `json:"text"`
		Logprobs     []apitypes.ChatTokenLogprob `json:"logprobs"`
		Seq          int                         `json:"sequence_number"`
	}
)

// responsesSink writes /v1/responses answers; see NewResponsesSink.
type responsesSink struct {
	sinkCore
	// seq is the next event's sequence_number.
	seq int
	// opened is set once the message item and its text part were
	// announced, closed once they were done (before the first tool call).
	opened, closed bool
	// calls are the tool calls so far, each a function_call item after
	// the message.
	calls []protocol.ToolCall
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
		p.Responses = newResponsesOptions()
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
		s.calls = append(s.calls, d.ToolCalls...)
		return nil
	}
	if d.Text != "" && !s.closed {
		if err := s.open(); err != nil {
			return err
		}
		lps := s.outputLogprobs(d.Logprobs)
		if err := s.emit("response.output_text.delta", func(t string, seq int) any {
			return textDeltaEvent{Type: t, ItemID: s.messageID(), Delta: d.Text, Logprobs: lps, Seq: seq}
		}); err != nil {
			return err
		}
	}
	for _, tc := range d.ToolCalls {
		if err := s.streamCall(tc); err != nil {
			return err
		}
	}
	return nil
}

// streamCall sends one tool call as a function_call item, after closing
// the message before it: its arguments arrive whole, so in one delta.
func (s *responsesSink) streamCall(tc protocol.ToolCall) error {
	if s.opened && !s.closed {
		if err := s.closeMessage(statusCompleted); err != nil {
			return err
		}
	}
	s.closed = true // text after a call has no message to go to
	s.calls = append(s.calls, tc)
	i := len(s.calls) - 1
	index := s.callIndex(i)
	item := s.callItem(i)
	item.Status, item.Arguments = statusInProgress, ""
	steps := []struct {
		event string
		make  func(t string, seq int) any
	}{
		{"response.output_item.added", func(t string, seq int) any { return outputItemEvent{Type: t, OutputIndex: index, Item: item, Seq: seq} }},
		{"response.function_call_arguments.delta", func(t string, seq int) any {
			return argumentsDeltaEvent{Type: t, ItemID: item.ID, OutputIndex: index, Delta: tc.Arguments, Seq: seq}
		}},
		{"response.function_call_arguments.done", func(t string, seq int) any {
			return argumentsDoneEvent{Type: t, ItemID: item.ID, OutputIndex: index, Name: tc.Name, Arguments: tc.Arguments, Seq: seq}
		}},
		{"response.output_item.done", func(t string, seq int) any {
			return outputItemEvent{Type: t, OutputIndex: index, Item: s.callItem(i), Seq: seq}
		}},
	}
	for _, step := range steps {
		if err := s.emit(step.event, step.make); err != nil {
			return err
		}
	}
	return nil
}

// hasMessage says whether output holds the message item: when there is
// text, or no tool call (an empty answer is an empty message).
func (s *responsesSink) hasMessage() bool { return s.opened || s.text.Len() > 0 || len(s.calls) == 0 }

// callIndex is tool call i's output_index: after the message, if any.
func (s *responsesSink) callIndex(i int) int {
	if s.hasMessage() {
		return i + 1
	}
	return i
}

func (s *responsesSink) callItem(i int) functionCall {
	tc := s.calls[i]
	return functionCall{ID: fmt.Sprintf("fc_%s_%d", strings.TrimPrefix(s.meta.RequestID, "resp_"), i), Type: "function_call",
		Status: statusCompleted, Arguments: tc.Arguments, CallID: tc.ID, Name: tc.Name}
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
	if !s.closed && s.hasMessage() {
		if err := s.open(); err != nil {
			return err
		}
		if err := s.closeMessage(status); err != nil {
			return err
		}
	}
	return s.emit("response."+status, func(t string, seq int) any { return responseEvent{Type: t, Response: r, Seq: seq} })
}

// closeMessage sends the done events of the message item, in status.
func (s *responsesSink) closeMessage(status string) error {
	s.closed = true
	msg := s.message(status)
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
	}
	for _, step := range steps {
		if err := s.emit(step.event, step.make); err != nil {
			return err
		}
	}
	return nil
}

// message is the message item with the text so far, in status.
func (s *responsesSink) message(status string) outputMessage {
	part := s.part(s.text.String())
	part.Logprobs = s.outputLogprobs(s.logprobs)
	return outputMessage{ID: s.messageID(), Type: "message", Status: status, Content: []outputText{part}, Role: "assistant"}
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
func (s *responsesSink) outputLogprobs(lps []protocol.TokenLogprob) []apitypes.ChatTokenLogprob {
	if !s.p.Request.Options.Logprobs || len(lps) == 0 {
		return []apitypes.ChatTokenLogprob{}
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
		Output:            []any{},
		ParallelToolCalls: ro.ParallelToolCalls,
		Reasoning:         reasoningConfig{Effort: json.RawMessage(jsonNull), Summary: json.RawMessage(jsonNull)},
		ServiceTier:       "default",
		Store:             ro.Store,
		Temperature:       opts.Temperature,
		Text:              textConfig{Format: ro.Format, Verbosity: ro.Verbosity},
		ToolChoice:        ro.ToolChoice,
		Tools:             ro.Tools,
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
	if status == statusInProgress || (status == statusFailed && s.text.Len() == 0 && len(s.calls) == 0) {
		return r
	}
	itemStatus := status
	if status == statusFailed {
		itemStatus = statusIncomplete
	}
	if s.hasMessage() {
		if len(s.calls) > 0 {
			itemStatus = statusCompleted // it was done before the first call
		}
		r.Output = append(r.Output, s.message(itemStatus))
	}
	for i := range s.calls {
		r.Output = append(r.Output, s.callItem(i))
	}
	return r
}
