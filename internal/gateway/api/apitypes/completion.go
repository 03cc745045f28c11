package apitypes

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// TextCompletion is both a streamed event and the whole non-streaming
// answer of the legacy /v1/completions: the API uses one shape for both.
type TextCompletion struct {
	Envelope
	Choices []CompletionChoice `json:"choices"`
	// Usage is as in ChatChunk when streamed; the non-streaming body
	// always has it.
	Usage StreamUsage `json:"usage,omitzero"`
}

// CompletionChoice is one choice of a TextCompletion.
type CompletionChoice struct {
	Text  string `json:"text"`
	Index int    `json:"index"`
	// Logprobs is null unless logprobs were requested.
	Logprobs *LegacyLogprobs `json:"logprobs"`
	// FinishReason is null until the last event of a stream.
	FinishReason *string `json:"finish_reason"`
}

// LegacyLogprobs is choices[].logprobs of the completions API.
type LegacyLogprobs struct {
	Tokens        []string  `json:"tokens"`
	TokenLogprobs []float64 `json:"token_logprobs"`
	// TopLogprobs is null when no alternatives were asked for (logprobs=0).
	TopLogprobs []TopLogprobs `json:"top_logprobs"`
	// TextOffset is where each token starts in the completion text, in
	// characters.
	TextOffset []int `json:"text_offset"`
}

// TopLogprob is one alternative token and its log-probability.
type TopLogprob struct {
	Token   string
	Logprob float64
}

// TopLogprobs are one token's alternatives. They marshal as the legacy
// {"token": logprob, …} object with the most likely token first (a Go map
// would sort the keys); a token that repeats keeps its first entry.
type TopLogprobs []TopLogprob

// MarshalJSON implements json.Marshaler.
func (o TopLogprobs) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	seen := make(map[string]bool, len(o))
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for _, alt := range o {
		if seen[alt.Token] {
			continue
		}
		seen[alt.Token] = true
		if len(seen) > 1 {
			buf.WriteByte(',')
		}
		// Encode ends each value with a newline, taken off again.
		if err := enc.Encode(alt.Token); err != nil {
			return nil, err
		}
		buf.Truncate(buf.Len() - 1)
		buf.WriteByte(':')
		if err := enc.Encode(alt.Logprob); err != nil {
			return nil, err
		}
		buf.Truncate(buf.Len() - 1)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// UnmarshalJSON implements json.Unmarshaler, keeping the object's order.
func (o *TopLogprobs) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok == nil {
		*o = nil
		return nil
	}
	if tok != json.Delim('{') {
		return errors.New("top_logprobs: not an object")
	}
	out := TopLogprobs{}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return err
		}
		key, ok := k.(string)
		if !ok {
			return fmt.Errorf("top_logprobs: key %v", k)
		}
		var lp float64
		if err := dec.Decode(&lp); err != nil {
			return fmt.Errorf("top_logprobs: %q: %w", key, err)
		}
		out = append(out, TopLogprob{Token: key, Logprob: lp})
	}
	if _, err := dec.Token(); err != nil {
		return err
	}
	*o = out
	return nil
}
