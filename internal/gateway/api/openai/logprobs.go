package openai

import (
	"encoding/json"
	"math"
	"unicode/utf8"

	"github.com/idlegrid/idlegrid/internal/gateway/api/apitypes"
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

// newChatLogprobs converts provider logprobs, keeping at most top
// alternatives per token (a provider may send more than was asked).
func newChatLogprobs(lps []protocol.TokenLogprob, top int) *apitypes.ChatLogprobs {
	out := &apitypes.ChatLogprobs{Content: make([]apitypes.ChatTokenLogprob, 0, len(lps)), Refusal: json.RawMessage(jsonNull)}
	for _, lp := range lps {
		t := apitypes.ChatTokenLogprob{Token: lp.Token, Logprob: finite(lp.Logprob), Bytes: tokenBytes(lp.Token), TopLogprobs: []apitypes.ChatTopLogprob{}}
		for i, alt := range lp.Top {
			if i >= top {
				break
			}
			t.TopLogprobs = append(t.TopLogprobs, apitypes.ChatTopLogprob{Token: alt.Token, Logprob: finite(alt.Logprob), Bytes: tokenBytes(alt.Token)})
		}
		out.Content = append(out.Content, t)
	}
	return out
}

// newLegacyLogprobs converts provider logprobs; offset is where the first
// token starts in the completion text, counted in characters (runes) as
// Python clients index strings.
func newLegacyLogprobs(lps []protocol.TokenLogprob, top, offset int) *apitypes.LegacyLogprobs {
	out := &apitypes.LegacyLogprobs{Tokens: make([]string, 0, len(lps)), TokenLogprobs: make([]float64, 0, len(lps)), TextOffset: make([]int, 0, len(lps))}
	if top > 0 {
		out.TopLogprobs = make([]apitypes.TopLogprobs, 0, len(lps))
	}
	for _, lp := range lps {
		out.Tokens = append(out.Tokens, lp.Token)
		out.TokenLogprobs = append(out.TokenLogprobs, finite(lp.Logprob))
		out.TextOffset = append(out.TextOffset, offset)
		offset += utf8.RuneCountInString(lp.Token)
		if top > 0 {
			n := min(top, len(lp.Top))
			alts := make(apitypes.TopLogprobs, n)
			for i, alt := range lp.Top[:n] {
				alts[i] = apitypes.TopLogprob{Token: alt.Token, Logprob: finite(alt.Logprob)}
			}
			out.TopLogprobs = append(out.TopLogprobs, alts)
		}
	}
	return out
}

// appendLogprobs returns l extended with m, for the non-streaming
// response; nil stays nil when nothing was requested.
func appendLogprobs(l, m *apitypes.LegacyLogprobs) *apitypes.LegacyLogprobs {
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
