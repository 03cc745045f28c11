package ollama

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/gateway/sink"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// message is an Ollama chat message in a response.
type message struct {
	Role      string     `json:"role"`
	Content   string     `json:"content"`
	ToolCalls []toolCall `json:"tool_calls,omitempty"`
}

// toolCall is Ollama's ToolCall: the arguments are an object, and index
// counts the answer's calls from 0.
type toolCall struct {
	ID       string       `json:"id,omitempty"`
	Function toolFunction `json:"function"`
}

type toolFunction struct {
	Index     int             `json:"index"`
	Name      string          `json:"name"`
	Arguments json.RawMessage `json:"arguments"`
}

// newToolCalls renders calls numbered from first. Arguments are a JSON
// object: the protocol refuses a chunk whose arguments are not one.
func newToolCalls(calls []protocol.ToolCall, first int) []toolCall {
	var out []toolCall
	for i, tc := range calls {
		out = append(out, toolCall{ID: tc.ID, Function: toolFunction{Index: first + i, Name: tc.Name, Arguments: json.RawMessage(tc.Arguments)}})
	}
	return out
}

// metrics are the counters of Ollama's last line; durations are in
// nanoseconds, as Ollama's time.Duration fields marshal.
type metrics struct {
	TotalDuration      int64  `json:"total_duration"`
	LoadDuration       int64  `json:"load_duration"`
	PromptEvalCount    uint64 `json:"prompt_eval_count"`
	PromptEvalDuration int64  `json:"prompt_eval_duration"`
	EvalCount          uint64 `json:"eval_count"`
	EvalDuration       int64  `json:"eval_duration"`
}

// newMetrics maps the relay's timings onto Ollama's: providers keep models
// loaded, so load time is 0, and the wait for the first token is the
// consumer-visible prompt evaluation.
func newMetrics(f sink.Final) *metrics {
	return &metrics{
		TotalDuration:      f.Total.Nanoseconds(),
		PromptEvalCount:    f.Usage.PromptTokens,
		PromptEvalDuration: f.FirstToken.Nanoseconds(),
		EvalCount:          f.Usage.CompletionTokens,
		EvalDuration:       f.Eval.Nanoseconds(),
	}
}

// chatLine and generateLine are Ollama's response objects, members in
// Ollama's order; metrics only on the last.
type chatLine struct {
	Model      string    `json:"model"`
	CreatedAt  time.Time `json:"created_at"`
	Message    message   `json:"message"`
	DoneReason string    `json:"done_reason,omitempty"`
	Done       bool      `json:"done"`
	Logprobs   []logprob `json:"logprobs,omitempty"`
	*metrics
}

type generateLine struct {
	Model      string    `json:"model"`
	CreatedAt  time.Time `json:"created_at"`
	Response   string    `json:"response"`
	Done       bool      `json:"done"`
	DoneReason string    `json:"done_reason,omitempty"`
	Logprobs   []logprob `json:"logprobs,omitempty"`
	*metrics
}

// state is where a sink is in Begin → Delta* → End|Fail.
type state int

const (
	stateNew state = iota
	stateBegun
	stateDone
)

// ndjsonSink writes /api/chat (chat) or /api/generate responses.
type ndjsonSink struct {
	w    http.ResponseWriter
	rc   *http.ResponseController
	p    Params
	chat bool
	// now stamps created_at; tests replace it for golden output.
	now   func() time.Time
	meta  sink.Meta
	state state
	// sent is true once the status line is written.
	sent bool
	// text and logprobs are buffered for the non-streaming response.
	text     strings.Builder
	logprobs []protocol.TokenLogprob
	// calls counts the tool calls sent (streaming) or holds them all.
	calls     []toolCall
	sentCalls int
}

var _ sink.Sink = (*ndjsonSink)(nil)

// NewChatSink returns a sink that writes /api/chat responses for p to w:
// one NDJSON line per delta and a last line with done, done_reason and
// Ollama's counters when p.Stream, else one object at End.
func NewChatSink(w http.ResponseWriter, p Params) sink.Sink {
	return newSink(w, p, true, time.Now)
}

// NewGenerateSink is NewChatSink for /api/generate ("response" instead of
// "message").
func NewGenerateSink(w http.ResponseWriter, p Params) sink.Sink {
	return newSink(w, p, false, time.Now)
}

func newSink(w http.ResponseWriter, p Params, chat bool, now func() time.Time) *ndjsonSink {
	return &ndjsonSink{w: w, rc: http.NewResponseController(w), p: p, chat: chat, now: now}
}

// Begin implements sink.Sink. When streaming it sends the headers at once,
// so that the consumer sees the request accepted before the first token.
func (s *ndjsonSink) Begin(m sink.Meta) error {
	if s.state != stateNew {
		return outOfOrder("Begin")
	}
	s.state = stateBegun
	s.meta = m
	if m.RequestID != "" {
		s.w.Header().Set("X-Request-Id", m.RequestID)
	}
	if !s.p.Stream {
		return nil
	}
	s.w.Header().Set("Content-Type", "application/x-ndjson")
	s.w.WriteHeader(http.StatusOK)
	s.sent = true
	return s.flush()
}

// Delta implements sink.Sink.
func (s *ndjsonSink) Delta(d sink.Delta) error {
	if s.state != stateBegun {
		return outOfOrder("Delta")
	}
	calls := newToolCalls(d.ToolCalls, s.sentCalls)
	s.sentCalls += len(calls)
	if !s.p.Stream {
		s.text.WriteString(d.Text)
		if s.p.Request.Options.Logprobs {
			s.logprobs = append(s.logprobs, d.Logprobs...)
		}
		s.calls = append(s.calls, calls...)
		return nil
	}
	return s.line(s.response(d.Text, calls, "", false, d.Logprobs, nil))
}

// End implements sink.Sink.
func (s *ndjsonSink) End(f sink.Final) error {
	if s.state != stateBegun {
		return outOfOrder("End")
	}
	s.state = stateDone
	reason := f.FinishReason
	if reason == "" {
		reason = "stop"
	}
	last := s.response(s.text.String(), s.calls, reason, true, s.logprobs, newMetrics(f))
	if !s.p.Stream {
		s.w.Header().Set("Content-Type", "application/json")
		s.w.WriteHeader(http.StatusOK)
		s.sent = true
	}
	return s.line(last)
}

// Fail implements sink.Sink. Once a stream is open, the error becomes a
// {"error": …} line, which Ollama's clients return as an error.
func (s *ndjsonSink) Fail(e *apierr.Error) {
	if s.state == stateDone {
		return
	}
	s.state = stateDone
	if !s.sent {
		apierr.WriteOllama(s.w, e)
		s.sent = true
		return
	}
	// The consumer may already be gone; there is nobody left to tell.
	_ = s.line(map[string]string{"error": e.Message})
}

// response builds one chat or generate object, with lps when the request
// asked for log-probabilities.
func (s *ndjsonSink) response(text string, calls []toolCall, reason string, done bool, lps []protocol.TokenLogprob, m *metrics) any {
	var out []logprob
	if o := s.p.Request.Options; o.Logprobs {
		out = newLogprobs(lps, o.TopLogprobs)
	}
	line := newLine(s.chat, s.meta.Model, s.now(), text, reason, done, out, m)
	if cl, ok := line.(chatLine); ok {
		cl.Message.ToolCalls = calls
		return cl
	}
	return line
}

func newLine(chat bool, model string, now time.Time, text, reason string, done bool, lps []logprob, m *metrics) any {
	if chat {
		return chatLine{Model: model, CreatedAt: now.UTC(), Message: message{Role: "assistant", Content: text}, DoneReason: reason, Done: done, Logprobs: lps, metrics: m}
	}
	return generateLine{Model: model, CreatedAt: now.UTC(), Response: text, Done: done, DoneReason: reason, Logprobs: lps, metrics: m}
}

// line writes v as one line of JSON and flushes it.
func (s *ndjsonSink) line(v any) error {
	b, err := sink.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := s.w.Write(append(b, '\n')); err != nil {
		return err
	}
	return s.flush()
}

// flush pushes buffered bytes to the consumer; a writer that cannot flush
// still delivers everything at the end, so only real failures count.
func (s *ndjsonSink) flush() error {
	return sink.Flush(s.rc)
}
