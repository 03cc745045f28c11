package openai

import (
	"bytes"
	"encoding/json"
	"math"
	"unicode/utf8"

	"github.com/idlegrid/idlegrid/internal/gateway/sink"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// floorLogprob stands in for a non-finite log-probability, which JSON cannot
// carry; OpenAI uses the same value for "practically impossible".
const floorLogprob = -9999.0

func finite(lp float64) float64 {
	if math.IsNaN(lp) || math.IsInf(lp, 0) {
		return floorLogprob
	}
	return lp
}

// tokenBytes is a token's UTF-8 bytes as JSON numbers: OpenAI sends them so
// that clients can rebuild characters split across tokens ([]byte would
// marshal as base64).
func tokenBytes(token string) []int {
	b := make([]int, len(token))
	for i := 0; i < len(token); i++ {
		b[i] = int(token[i])
	}
	return b
}

// chatLogprobs is choices[].logprobs of the chat API.
type chatLogprobs struct {
	Content []chatTokenLogprob `json:"content"`
	Refusal json.RawMessage    `json:"refusal"`
}

type chatTokenLogprob struct {
	Token       string           `json:"token"`
	Logprob     float64          `json:"logprob"`
	Bytes       []int            `json:"bytes"`
	TopLogprobs []chatTopLogprob `json:"top_logprobs"`
}

type chatTopLogprob struct {
	Token   string  `json:"token"`
	Logprob float64 `json:"logprob"`
	Bytes   []int   `json:"bytes"`
}

// newChatLogprobs converts provider logprobs, keeping at most top
// alternatives per token (a provider may send more than was asked).
func newChatLogprobs(lps []protocol.TokenLogprob, top int) *chatLogprobs {
	out := &chatLogprobs{Content: make([]chatTokenLogprob, 0, len(lps)), Refusal: json.RawMessage(jsonNull)}
	for _, lp := range lps {
		t := chatTokenLogprob{Token: lp.Token, Logprob: finite(lp.Logprob), Bytes: tokenBytes(lp.Token), TopLogprobs: []chatTopLogprob{}}
		for i, alt := range lp.Top {
			if i >= top {
				break
			}
			t.TopLogprobs = append(t.TopLogprobs, chatTopLogprob{Token: alt.Token, Logprob: finite(alt.Logprob), Bytes: tokenBytes(alt.Token)})
		}
		out.Content = append(out.Content, t)
	}
	return out
}

// legacyLogprobs is choices[].logprobs of the completions API.
type legacyLogprobs struct {
	Tokens        []string  `json:"tokens"`
	TokenLogprobs []float64 `json:"token_logprobs"`
	// TopLogprobs is null when no alternatives were asked for (logprobs=0).
	TopLogprobs []orderedLogprobs `json:"top_logprobs"`
	TextOffset  []int             `json:"text_offset"`
}

// newLegacyLogprobs converts provider logprobs; offset is where the first
// token starts in the completion text, counted in characters (runes) as
// Python clients index strings.
func newLegacyLogprobs(lps []protocol.TokenLogprob, top, offset int) *legacyLogprobs {
	out := &legacyLogprobs{Tokens: make([]string, 0, len(lps)), TokenLogprobs: make([]float64, 0, len(lps)), TextOffset: make([]int, 0, len(lps))}
	if top > 0 {
		out.TopLogprobs = make([]orderedLogprobs, 0, len(lps))
	}
	for _, lp := range lps {
		out.Tokens = append(out.Tokens, lp.Token)
		out.TokenLogprobs = append(out.TokenLogprobs, finite(lp.Logprob))
		out.TextOffset = append(out.TextOffset, offset)
		offset += utf8.RuneCountInString(lp.Token)
		if top > 0 {
			n := min(top, len(lp.Top))
			out.TopLogprobs = append(out.TopLogprobs, orderedLogprobs(lp.Top[:n]))
		}
	}
	return out
}

// append returns l extended with m, for the non-streaming response; nil
// stays nil when nothing was requested.
func (l *legacyLogprobs) append(m *legacyLogprobs) *legacyLogprobs {
	if l == nil {
		return m
	}
	if m == nil {
		return l
	}
	l.Tokens = append(l.Tokens, m.Tokens...)
	l.TokenLogprobs = append(l.TokenLogprobs, m.TokenLogprobs...)
	l.TextOffset = append(l.TextOffset, m.TextOffset...)
	if l.TopLogprobs != nil {
		l.TopLogprobs = append(l.TopLogprobs, m.TopLogprobs...)
	}
	return l
}

// orderedLogprobs marshals as the legacy {"token": logprob, …} object with
// the most likely token first (a Go map would sort the keys). A token that
// repeats keeps its first, most likely, entry.
type orderedLogprobs []protocol.TopLogprob

// MarshalJSON implements json.Marshaler.
func (o orderedLogprobs) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	seen := make(map[string]bool, len(o))
	for _, alt := range o {
		if seen[alt.Token] {
			continue
		}
		seen[alt.Token] = true
		if len(seen) > 1 {
			buf.WriteByte(',')
		}
		k, err := sink.Marshal(alt.Token)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(finite(alt.Logprob))
		if err != nil {
			return nil, err
		}
		buf.Write(k)
		buf.WriteByte(':')
		buf.Write(v)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}
