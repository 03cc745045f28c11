package openai

import (
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/idlegrid/idlegrid/internal/gateway/sink"
)

// textCompletion is both a streamed chunk and the whole non-streaming
// response of /v1/completions: the legacy API uses one shape for both.
type textCompletion struct {
	envelope
	Choices []completionChoice `json:"choices"`
	// Usage: see chatChunk.Usage; always set on the non-streaming body.
	Usage any `json:"usage,omitempty"`
}

type completionChoice struct {
	Text         string          `json:"text"`
	Index        int             `json:"index"`
	Logprobs     *legacyLogprobs `json:"logprobs"`
	FinishReason *string         `json:"finish_reason"`
}

// completionSink writes legacy completions; see NewCompletionSink.
type completionSink struct {
	sinkCore
	// offset is the completion's length so far in runes, for text_offset.
	offset int
	// text and logprobs are buffered for the non-streaming response.
	text     strings.Builder
	logprobs *legacyLogprobs
}

var _ sink.Sink = (*completionSink)(nil)

// NewCompletionSink returns a sink that writes /v1/completions responses
// for p to w: server-sent text_completion events when p.Stream, else one
// text_completion object written at End. Meta is used as in NewChatSink.
func NewCompletionSink(w http.ResponseWriter, p Params) sink.Sink {
	return &completionSink{sinkCore: sinkCore{out: newResponder(w), p: p}}
}

// Begin implements sink.Sink. The legacy stream has no role chunk, so
// streaming only sends the headers, to show the consumer it was accepted.
func (s *completionSink) Begin(m sink.Meta) error { return s.begin(m) }

// Delta implements sink.Sink.
func (s *completionSink) Delta(d sink.Delta) error {
	if err := s.delta(); err != nil {
		return err
	}
	lps := s.legacyLogprobs(d)
	if !s.p.Stream {
		s.text.WriteString(d.Text)
		s.logprobs = s.logprobs.append(lps)
		return nil
	}
	return s.out.event(s.completion(completionChoice{Text: d.Text, Logprobs: lps}))
}

// End implements sink.Sink.
func (s *completionSink) End(f sink.Final) error {
	if err := s.end(); err != nil {
		return err
	}
	reason := finishReason(f.FinishReason)
	if !s.p.Stream {
		lps := s.logprobs
		if lps == nil && s.p.Request.Options.Logprobs {
			lps = newLegacyLogprobs(nil, s.p.Request.Options.TopLogprobs, 0)
		}
		c := s.completion(completionChoice{Text: s.text.String(), Logprobs: lps, FinishReason: &reason})
		c.Usage = newUsage(f.Usage)
		return s.out.body(http.StatusOK, c)
	}
	usage := s.completion()
	usage.Choices, usage.Usage = []completionChoice{}, newUsage(f.Usage)
	return s.endStream(s.completion(completionChoice{FinishReason: &reason}), usage)
}

func (s *completionSink) completion(choices ...completionChoice) textCompletion {
	return textCompletion{envelope: s.envelope("text_completion"), Choices: choices, Usage: s.nullUsage()}
}

// legacyLogprobs renders d's logprobs when they were requested, else nil,
// and advances the text offset. Offsets restart from the delta's own start
// at each delta, so that a provider whose tokens do not spell out the text
// exactly cannot make them drift across the whole completion.
func (s *completionSink) legacyLogprobs(d sink.Delta) *legacyLogprobs {
	start := s.offset
	s.offset += utf8.RuneCountInString(d.Text)
	if !s.p.Request.Options.Logprobs {
		return nil
	}
	return newLegacyLogprobs(d.Logprobs, s.p.Request.Options.TopLogprobs, start)
}
