// Package sink is the typed event stream between the gateway's relay and the
// API formats: the relay calls a Sink, and each API (OpenAI chat, OpenAI
// completions, Ollama chat, Ollama generate; streaming or not) implements it
// by writing its own wire format. One relay therefore serves every API.
package sink

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// Meta is known once a provider accepted the job, before any text.
type Meta struct {
	// RequestID is the id consumers see (OpenAI "id") and the receipt's.
	RequestID string
	// Model is the model name as the consumer asked for it.
	Model string
	// Created is when the gateway admitted the request.
	Created time.Time
}

// Delta is generated text, in order.
type Delta struct {
	Text     string
	Logprobs []protocol.TokenLogprob
	// ToolCalls the model made, each whole, after Text.
	ToolCalls []protocol.ToolCall
}

// Final ends a successful stream. The receipt is stored before End is called.
type Final struct {
	// FinishReason is "stop" or "length" (sinks that report calls say
	// "tool_calls" themselves when a Delta carried some).
	FinishReason string
	Usage        protocol.Usage
	// Total is the time from admission to the end; FirstToken from
	// admission to the first delta; Eval from the first delta to the end.
	Total      time.Duration
	FirstToken time.Duration
	Eval       time.Duration
}

// Sink receives one request's events: Begin once, then Delta any number of
// times, then End or Fail. Fail may also come before Begin (nothing has been
// written yet: the sink sends a plain error response with e.Status) or after
// it (headers are out: a streaming sink sends an error event and ends the
// stream; a non-streaming sink has buffered and can still send e.Status).
// A non-nil error from Begin, Delta or End means the consumer is gone; the
// relay then cancels the job and calls nothing more.
type Sink interface {
	Begin(Meta) error
	Delta(Delta) error
	End(Final) error
	Fail(e *apierr.Error)
}

// Marshal encodes v as one line of JSON without HTML escaping, so that "<",
// ">" and "&" in generated text reach clients as written.
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Flush pushes what rc's writer buffered to the consumer. A writer that
// cannot flush (a middleware that hides http.Flusher) still delivers
// everything at the end, so that is not an error; a failed flush is (the
// consumer is gone).
func Flush(rc *http.ResponseController) error {
	if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}
