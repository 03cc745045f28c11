package openai

import (
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/idlegrid/idlegrid/internal/gateway/api/apitypes"
	"github.com/idlegrid/idlegrid/internal/gateway/sink"
)

// completionSink writes legacy completions; see NewCompletionSink.
type completionSink struct {
	sinkCore
	// offset is the completion's length so far in runes, for text_offset.
	offset int
	// text and logprobs are buffered for the non-streaming response.
	text     strings.Builder
	logprobs *apitypes.LegacyLogprobs
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
		s.logprobs = appendLogprobs(s.logprobs, lps)
		return nil
	}
	return s.out.event(s.completion(apitypes.CompletionChoice{Text: d.Text, Logprobs: lps}))
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
		c := s.completion(apitypes.CompletionChoice{Text: s.text.String(), Logprobs: lps, FinishReason: &reason})
		c.Usage = apitypes.WithUsage(newUsage(f.Usage))
		return s.out.body(http.StatusOK, c)
	}
	usage := s.completion()
	usage.Choices, usage.Usage = []apitypes.CompletionChoice{}, apitypes.WithUsage(newUsage(f.Usage))
	return s.endStream(s.completion(apitypes.CompletionChoice{FinishReason: &reason}), usage)
}

func (s *completionSink) completion(choices ...apitypes.CompletionChoice) apitypes.TextCompletion {
	return apitypes.TextCompletion{Envelope: newEnvelope(s.meta, "text_completion"), Choices: choices, Usage: nullUsage(s.p)}
}

// legacyLogprobs renders d's logprobs when they were requested, else nil,
// and advances the text offset. Offsets restart from the delta's own start
// at each delta, so that a provider whose tokens do not spell out the text
// exactly cannot make them drift across the whole completion.
func (s *completionSink) legacyLogprobs(d sink.Delta) *apitypes.LegacyLogprobs {
	start := s.offset
	s.offset += utf8.RuneCountInString(d.Text)
	if !s.p.Request.Options.Logprobs {
		return nil
	}
	return newLegacyLogprobs(d.Logprobs, s.p.Request.Options.TopLogprobs, start)
}
