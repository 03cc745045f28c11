package ollama

import (
	"math"

	"github.com/idlegrid/idlegrid/internal/protocol"
)

// maxTopLogprobs is Ollama's cap of top_logprobs.
const maxTopLogprobs = 20

// logprob is Ollama's Logprob: a generated token, its log-probability, its
// UTF-8 bytes and, when asked, the most likely tokens at its position.
type logprob struct {
	tokenLogprob
	TopLogprobs []tokenLogprob `json:"top_logprobs,omitempty"`
}

// tokenLogprob is Ollama's TokenLogprob.
type tokenLogprob struct {
	Token   string  `json:"token"`
	Logprob float64 `json:"logprob"`
	// Bytes are numbers, as Ollama sends them ([]byte would be base64).
	Bytes []int `json:"bytes,omitempty"`
}

func newTokenLogprob(token string, lp float64) tokenLogprob {
	if math.IsNaN(lp) || math.IsInf(lp, 0) {
		// JSON has no infinities; this is "practically impossible".
		lp = -9999
	}
	t := tokenLogprob{Token: token, Logprob: lp, Bytes: make([]int, len(token))}
	for i := 0; i < len(token); i++ {
		t.Bytes[i] = int(token[i])
	}
	return t
}

// newLogprobs converts provider log-probabilities, keeping at most top
// alternatives per token (a provider may send more than was asked).
func newLogprobs(lps []protocol.TokenLogprob, top int) []logprob {
	if len(lps) == 0 {
		return nil
	}
	out := make([]logprob, 0, len(lps))
	for _, lp := range lps {
		l := logprob{tokenLogprob: newTokenLogprob(lp.Token, lp.Logprob)}
		for i, alt := range lp.Top {
			if i >= top {
				break
			}
			l.TopLogprobs = append(l.TopLogprobs, newTokenLogprob(alt.Token, alt.Logprob))
		}
		out = append(out, l)
	}
	return out
}
