package openai

import (
	"encoding/json"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/idlegrid/idlegrid/internal/gateway/api/apitypes"
	"github.com/idlegrid/idlegrid/internal/gateway/sink"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// argumentFragment is the most bytes of arguments one streamed tool-call
// chunk carries: clients must join fragments, as they do for OpenAI's
// token-sized ones.
const argumentFragment = 16

// chatSink writes chat completions; see NewChatSink.
type chatSink struct {
	sinkCore
	// text and logprobs are buffered for the non-streaming response.
	text     strings.Builder
	logprobs []protocol.TokenLogprob
	// calls are the tool calls so far (all of them when not streaming,
	// counted for their index when streaming).
	calls []apitypes.ToolCall
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
	return s.out.event(s.chunk(apitypes.ChunkChoice{Delta: apitypes.ChunkDelta{Role: "assistant", Content: &empty, Refusal: json.RawMessage(jsonNull)}}))
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
			s.calls = append(s.calls, apitypes.ToolCall{ID: tc.ID, Type: "function", Function: apitypes.ToolFunction{Name: tc.Name, Arguments: tc.Arguments}})
		}
		return nil
	}
	if d.Text != "" || len(d.Logprobs) > 0 || len(d.ToolCalls) == 0 {
		text := d.Text
		if err := s.out.event(s.chunk(apitypes.ChunkChoice{Delta: apitypes.ChunkDelta{Content: &text}, Logprobs: s.chatLogprobs(d.Logprobs)})); err != nil {
			return err
		}
	}
	for _, tc := range d.ToolCalls {
		if err := s.streamCall(len(s.calls), tc); err != nil {
			return err
		}
		s.calls = append(s.calls, apitypes.ToolCall{ID: tc.ID, Type: "function", Function: apitypes.ToolFunction{Name: tc.Name}})
	}
	return nil
}

// streamCall sends tool call i: a chunk with its id, type and name, then
// its arguments in fragments of at most argumentFragment bytes, cut
// between characters.
func (s *chatSink) streamCall(i int, tc protocol.ToolCall) error {
	first := apitypes.ToolCallDelta{Index: i, ID: tc.ID, Type: "function", Function: apitypes.ToolFunctionDelta{Name: tc.Name}}
	if err := s.out.event(s.chunk(apitypes.ChunkChoice{Delta: apitypes.ChunkDelta{ToolCalls: []apitypes.ToolCallDelta{first}}})); err != nil {
		return err
	}
	for args := tc.Arguments; args != ""; {
		n := min(argumentFragment, len(args))
		for n < len(args) && !utf8.RuneStart(args[n]) {
			n++
		}
		frag := apitypes.ToolCallDelta{Index: i, Function: apitypes.ToolFunctionDelta{Arguments: args[:n]}}
		if err := s.out.event(s.chunk(apitypes.ChunkChoice{Delta: apitypes.ChunkDelta{ToolCalls: []apitypes.ToolCallDelta{frag}}})); err != nil {
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
		msg := apitypes.ChatMessage{Role: "assistant", Refusal: json.RawMessage(jsonNull), ToolCalls: s.calls}
		if text := s.text.String(); text != "" || len(s.calls) == 0 {
			msg.Content = &text
		}
		return s.out.body(http.StatusOK, apitypes.ChatCompletion{
			ID:      s.meta.RequestID,
			Object:  "chat.completion",
			Created: s.meta.Created.Unix(),
			Model:   s.meta.Model,
			Choices: []apitypes.ChatChoice{{
				Message:      msg,
				Logprobs:     s.chatLogprobs(s.logprobs),
				FinishReason: reason,
			}},
			Usage:             new(newUsage(f.Usage)),
			SystemFingerprint: json.RawMessage(jsonNull),
		})
	}
	usage := s.chunk()
	usage.Choices, usage.Usage = []apitypes.ChunkChoice{}, apitypes.WithUsage(newUsage(f.Usage))
	return s.endStream(s.chunk(apitypes.ChunkChoice{FinishReason: &reason}), usage)
}

// chunk returns a chunk with the stream's common members and the choices.
func (s *chatSink) chunk(choices ...apitypes.ChunkChoice) apitypes.ChatChunk {
	return newChatChunk(s.meta, s.p, choices)
}

// chatLogprobs renders logprobs when they were requested, else null.
func (s *chatSink) chatLogprobs(lps []protocol.TokenLogprob) *apitypes.ChatLogprobs {
	if !s.p.Request.Options.Logprobs {
		return nil
	}
	return newChatLogprobs(lps, s.p.Request.Options.TopLogprobs)
}
