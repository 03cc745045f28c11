package openai

import (
	"encoding/json"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/idlegrid/idlegrid/internal/gateway/sink"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// chatChunk is one chat.completion.chunk event.
type chatChunk struct {
	envelope
	Choices []chunkChoice `json:"choices"`
	// Usage is omitted unless stream_options.include_usage was set; then
	// it is null on every chunk but the last, as OpenAI sends it.
	Usage any `json:"usage,omitempty"`
}

type chunkChoice struct {
	Index        int           `json:"index"`
	Delta        chunkDelta    `json:"delta"`
	Logprobs     *chatLogprobs `json:"logprobs"`
	FinishReason *string       `json:"finish_reason"`
}

type chunkDelta struct {
	Role      string          `json:"role,omitempty"`
	Content   *string         `json:"content,omitempty"`
	Refusal   json.RawMessage `json:"refusal,omitempty"`
	ToolCalls []toolCallDelta `json:"tool_calls,omitempty"`
}

// toolCallDelta is a streamed piece of a tool call, as OpenAI streams
// them: the first piece of each call has its index, id, type, name and
// empty arguments, the next ones the index and a fragment of arguments.
type toolCallDelta struct {
	Index    int               `json:"index"`
	ID       string            `json:"id,omitempty"`
	Type     string            `json:"type,omitempty"`
	Function toolFunctionDelta `json:"function"`
}

type toolFunctionDelta struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

// toolCall is a whole tool call in a chat.completion message.
type toolCall struct {
	ID       string       `json:"id"`
	Type     string       `json:"type"`
	Function toolFunction `json:"function"`
}

type toolFunction struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// argumentFragment is the most bytes of arguments one streamed tool-call
// chunk carries: clients must join fragments, as they do for OpenAI's
// token-sized ones.
const argumentFragment = 16

// chatCompletion is the non-streaming response.
type chatCompletion struct {
	ID                string          `json:"id"`
	Object            string          `json:"object"`
	Created           int64           `json:"created"`
	Model             string          `json:"model"`
	Choices           []chatChoice    `json:"choices"`
	Usage             *usage          `json:"usage"`
	SystemFingerprint json.RawMessage `json:"system_fingerprint"`
}

type chatChoice struct {
	Index        int           `json:"index"`
	Message      chatMessage   `json:"message"`
	Logprobs     *chatLogprobs `json:"logprobs"`
	FinishReason string        `json:"finish_reason"`
}

type chatMessage struct {
	Role string `json:"role"`
	// Content is null when the answer is only tool calls.
	Content   *string         `json:"content"`
	Refusal   json.RawMessage `json:"refusal"`
	ToolCalls []toolCall      `json:"tool_calls,omitempty"`
}

// chatSink writes chat completions; see NewChatSink.
type chatSink struct {
	sinkCore
	// text and logprobs are buffered for the non-streaming response.
	text     strings.Builder
	logprobs []protocol.TokenLogprob
	// calls are the tool calls so far (all of them when not streaming,
	// counted for their index when streaming).
	calls []toolCall
}

var _ sink.Sink = (*chatSink)(nil)

// NewChatSink returns a sink that writes /v1/chat/completions responses
// for p to w: server-sent chat.completion.chunk events when p.Stream, else
// one chat.completion object written at End. Meta.RequestID becomes the
// "id" and the X-Request-Id header, Meta.Created the "created" time and
// Meta.Model the "model".
func NewChatSink(w http.ResponseWriter, p Params) sink.Sink {
	return &chatSink{sinkCore: sinkCore{out: newResponder(w), p: p}}
}

// Begin implements sink.Sink. When streaming, it opens the stream with
// OpenAI's first chunk: the assistant role and empty content.
func (s *chatSink) Begin(m sink.Meta) error {
	if err := s.begin(m); err != nil || !s.p.Stream {
		return err
	}
	empty := ""
	return s.out.event(s.chunk(chunkChoice{Delta: chunkDelta{Role: "assistant", Content: &empty, Refusal: json.RawMessage(jsonNull)}}))
}

// Delta implements sink.Sink.
func (s *chatSink) Delta(d sink.Delta) error {
	if err := s.delta(); err != nil {
		return err
	}
	if !s.p.Stream {
		s.text.WriteString(d.Text)
		s.logprobs = append(s.logprobs, d.Logprobs...)
		for _, tc := range d.ToolCalls {
			s.calls = append(s.calls, toolCall{ID: tc.ID, Type: "function", Function: toolFunction{Name: tc.Name, Arguments: tc.Arguments}})
		}
		return nil
	}
	if d.Text != "" || len(d.Logprobs) > 0 || len(d.ToolCalls) == 0 {
		text := d.Text
		if err := s.out.event(s.chunk(chunkChoice{Delta: chunkDelta{Content: &text}, Logprobs: s.chatLogprobs(d.Logprobs)})); err != nil {
			return err
		}
	}
	for _, tc := range d.ToolCalls {
		if err := s.streamCall(len(s.calls), tc); err != nil {
			return err
		}
		s.calls = append(s.calls, toolCall{ID: tc.ID, Type: "function", Function: toolFunction{Name: tc.Name}})
	}
	return nil
}

// streamCall sends tool call i: a chunk with its id, type and name, then
// its arguments in fragments of at most argumentFragment bytes, cut
// between characters.
func (s *chatSink) streamCall(i int, tc protocol.ToolCall) error {
	first := toolCallDelta{Index: i, ID: tc.ID, Type: "function", Function: toolFunctionDelta{Name: tc.Name}}
	if err := s.out.event(s.chunk(chunkChoice{Delta: chunkDelta{ToolCalls: []toolCallDelta{first}}})); err != nil {
		return err
	}
	for args := tc.Arguments; args != ""; {
		n := min(argumentFragment, len(args))
		for n < len(args) && !utf8.RuneStart(args[n]) {
			n++
		}
		frag := toolCallDelta{Index: i, Function: toolFunctionDelta{Arguments: args[:n]}}
		if err := s.out.event(s.chunk(chunkChoice{Delta: chunkDelta{ToolCalls: []toolCallDelta{frag}}})); err != nil {
			return err
		}
		args = args[n:]
	}
	return nil
}

// End implements sink.Sink: the finish_reason chunk, the usage chunk when
// asked for, and [DONE]; or the whole response when not streaming.
func (s *chatSink) End(f sink.Final) error {
	if err := s.end(); err != nil {
		return err
	}
	reason := finishReason(f.FinishReason)
	if len(s.calls) > 0 && reason == "stop" {
		reason = "tool_calls"
	}
	if !s.p.Stream {
		msg := chatMessage{Role: "assistant", Refusal: json.RawMessage(jsonNull), ToolCalls: s.calls}
		if text := s.text.String(); text != "" || len(s.calls) == 0 {
			msg.Content = &text
		}
		return s.out.body(http.StatusOK, chatCompletion{
			ID:      s.meta.RequestID,
			Object:  "chat.completion",
			Created: s.meta.Created.Unix(),
			Model:   s.meta.Model,
			Choices: []chatChoice{{
				Message:      msg,
				Logprobs:     s.chatLogprobs(s.logprobs),
				FinishReason: reason,
			}},
			Usage:             newUsage(f.Usage),
			SystemFingerprint: json.RawMessage(jsonNull),
		})
	}
	usage := s.chunk()
	usage.Choices, usage.Usage = []chunkChoice{}, newUsage(f.Usage)
	return s.endStream(s.chunk(chunkChoice{FinishReason: &reason}), usage)
}

// chunk returns a chunk with the stream's common members and the choices.
func (s *chatSink) chunk(choices ...chunkChoice) chatChunk {
	return chatChunk{envelope: s.envelope("chat.completion.chunk"), Choices: choices, Usage: s.nullUsage()}
}

// chatLogprobs renders logprobs when they were requested, else null.
func (s *chatSink) chatLogprobs(lps []protocol.TokenLogprob) *chatLogprobs {
	if !s.p.Request.Options.Logprobs {
		return nil
	}
	return newChatLogprobs(lps, s.p.Request.Options.TopLogprobs)
}
