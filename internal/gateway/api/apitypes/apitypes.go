// Package apitypes holds the JSON bodies the gateway's OpenAI-style
// consumer API answers with: chat completions and their streamed chunks,
// legacy text completions, the model list, the account view and the error
// body. The gateway encodes its answers with these types and the typed
// client (internal/gateway/client) decodes them, so the two cannot drift.
// Like the other wire packages it reads no environment and no clock.
package apitypes

import (
	"bytes"
	"encoding/json"
)

// null is a literal JSON null.
const null = "null"

// Usage is OpenAI's token usage object.
type Usage struct {
	PromptTokens     uint64 `json:"prompt_tokens"`
	CompletionTokens uint64 `json:"completion_tokens"`
	TotalTokens      uint64 `json:"total_tokens"`
}

// StreamUsage is the "usage" member of a streamed chunk (and of the legacy
// completion body, which has the chunk's shape). OpenAI sends it only when
// stream_options.include_usage asks for it: then it is null on every chunk
// but the last one, which carries the counts. The zero value is left out
// (omitzero).
type StreamUsage struct {
	// Asked is whether the member is present: include_usage was set (or
	// the body is not streamed).
	Asked bool
	// Counts is the usage itself, on the last chunk only; nil encodes as
	// null.
	Counts *Usage
}

// WithUsage is the member that carries u.
func WithUsage(u Usage) StreamUsage { return StreamUsage{Asked: true, Counts: &u} }

// IsZero reports an absent member, for omitzero.
func (s StreamUsage) IsZero() bool { return !s.Asked && s.Counts == nil }

// MarshalJSON implements json.Marshaler.
func (s StreamUsage) MarshalJSON() ([]byte, error) {
	if s.Counts == nil {
		return []byte(null), nil
	}
	return json.Marshal(s.Counts)
}

// UnmarshalJSON implements json.Unmarshaler: a present member, null or not.
func (s *StreamUsage) UnmarshalJSON(b []byte) error {
	s.Asked, s.Counts = true, nil
	if string(bytes.TrimSpace(b)) == null {
		return nil
	}
	var u Usage
	if err := json.Unmarshal(b, &u); err != nil {
		return err
	}
	s.Counts = &u
	return nil
}

// ErrorBody is OpenAI's error response, {"error":{…}}; a stream that
// fails after it began sends it as its last event.
type ErrorBody struct {
	Error ErrorObject `json:"error"`
}

// ErrorObject is the inner object of ErrorBody.
type ErrorObject struct {
	// Message is for people.
	Message string `json:"message"`
	// Type is OpenAI's error type, e.g. invalid_request_error.
	Type string `json:"type"`
	// Param names the offending request member; null when none.
	Param *string `json:"param"`
	// Code is a short machine-readable code, e.g. model_not_found; null
	// when none.
	Code *string `json:"code"`
}
