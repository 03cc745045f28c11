package sim

import (
	"fmt"
	"math"
	"strings"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// TokenScore is the model's teacher-forced view of one token of a
// completion: its log-probability after the prompt and the completion's
// earlier tokens, and the model's most likely token at the same position.
type TokenScore struct {
	Token   string
	Logprob float64
	// Known: Token is in the vocabulary. An unknown token (a newline, a
	// word the model cannot produce) gets the floor log-probability.
	Known bool
	// Best is the most likely token at this position ("" for end of text)
	// and BestLogprob its log-probability.
	Best        string
	BestLogprob float64
}

// Scores is what a verifier's re-scoring of a response computes: one
// prefill pass over prompt and completion.
type Scores struct {
	// PromptTokens counts the rendered prompt's tokens.
	PromptTokens int
	// Tokens are the completion's tokens in order.
	Tokens []TokenScore
	// EndLogprob is the log-probability of ending (EOS) right after the
	// completion, EndBest the best log-probability at that position: an
	// answer that claims to have stopped by itself where the model would
	// go on has EndBest − EndLogprob well above zero.
	EndLogprob, EndBest float64
	// StopDeficit, when the request has stop strings, explains a stop by
	// one of them: the smallest possible worst deficit (best log-probability
	// minus the token's) over continuations that start at the completion's
	// last token — a stop string may have cut it — and whose text runs into
	// a stop string exactly where the completion ends. StopTokens is that
	// continuation's length after its first token: tokens a server counts
	// but whose text was cut. StopDeficit is +Inf when the request has no
	// stop strings or no such continuation exists among the candidates.
	StopDeficit float64
	StopTokens  int
}

// maxStopSearch bounds the tokens of a stop-string explanation.
const maxStopSearch = 64

// Score scores completion as the answer to req under req's model, teacher
// forced: each token conditioned on the prompt and the completion's tokens
// before it, whatever the model would have generated there. It never
// generates, so its cost is one pass over prompt and completion.
func (s *Sim) Score(req protocol.Request, completion string) (Scores, error) {
	m, ok := s.lookup(req.Model)
	if !ok {
		return Scores{}, fmt.Errorf("sim: %w: %s", backend.ErrModelNotFound, notFoundMessage(req.Model))
	}
	prompt, err := render(req)
	if err != nil {
		return Scores{}, fmt.Errorf("sim: %w", err)
	}
	st := newSeqState()
	for _, t := range tokenize(prompt) {
		st = st.push(t)
	}
	sc := Scores{PromptTokens: st.pos, StopDeficit: math.Inf(1)}
	toks := tokenize(completion)
	beforeLast := st
	for i, t := range toks {
		if i == len(toks)-1 {
			beforeLast = st
		}
		d := s.vocab.next(m.Weights, st)
		idx, known := s.vocab.index[t]
		if !known {
			idx = -1
		}
		best, bestLP := s.vocab.best(&d, m.IgnoreEOS)
		sc.Tokens = append(sc.Tokens, TokenScore{
			Token: t, Logprob: s.vocab.logprob(&d, idx), Known: known,
			Best: s.vocab.texts[d.cand[best]], BestLogprob: bestLP,
		})
		st = st.push(t)
	}
	d := s.vocab.next(m.Weights, st)
	sc.EndLogprob = s.vocab.logprob(&d, eosIndex)
	_, sc.EndBest = s.vocab.best(&d, m.IgnoreEOS)
	if m.IgnoreEOS {
		// The model never ends by itself: ending is as unlikely as it gets.
		sc.EndLogprob = math.Inf(-1)
	}
	last := ""
	if len(toks) > 0 {
		last = toks[len(toks)-1]
	}
	for _, stop := range req.Options.Stop {
		if stop == "" {
			continue
		}
		def, n := s.vocab.stopSearch(m.Weights, beforeLast, last+stop, m.IgnoreEOS, 0)
		if def < sc.StopDeficit {
			sc.StopDeficit, sc.StopTokens = def, n
		}
	}
	return sc, nil
}

// best returns d's most likely candidate slot and its log-probability,
// leaving out EOS when the model never ends by itself.
func (v *vocab) best(d *dist, ignoreEOS bool) (int, float64) {
	first := 0
	if ignoreEOS {
		first = 1
	}
	b := first
	for i := first + 1; i < numCandidates; i++ {
		if d.logit[i] > d.logit[b] {
			b = i
		}
	}
	return b, math.Log1p(-floorMass) + d.logit[b] - d.logZ
}

// stopSearch finds the candidate continuation from st whose text starts
// with target and whose worst per-token deficit is smallest; it returns
// that deficit and the continuation's length minus one (+Inf, 0 when none
// exists within maxStopSearch tokens). Only candidates consistent with the
// target are followed, so the search stays small.
func (v *vocab) stopSearch(weights uint64, st seqState, target string, ignoreEOS bool, depth int) (float64, int) {
	if depth >= maxStopSearch {
		return math.Inf(1), 0
	}
	d := v.next(weights, st)
	_, bestLP := v.best(&d, ignoreEOS)
	worst, length := math.Inf(1), 0
	for i := 1; i < numCandidates; i++ {
		text := v.texts[d.cand[i]]
		def := bestLP - (math.Log1p(-floorMass) + d.logit[i] - d.logZ)
		switch {
		case def >= worst:
			// cannot improve on a continuation already found
		case strings.HasPrefix(text, target):
			worst, length = def, depth
		case strings.HasPrefix(target, text):
			rest, n := v.stopSearch(weights, st.push(text), target[len(text):], ignoreEOS, depth+1)
			if w := max(def, rest); w < worst {
				worst, length = w, n
			}
		}
	}
	return worst, length
}

// score returns the log-probability of each token of completion: the
// Logprob column of Score.
func (s *Sim) score(req protocol.Request, completion string) ([]float64, error) {
	sc, err := s.Score(req, completion)
	if err != nil {
		return nil, err
	}
	out := make([]float64, len(sc.Tokens))
	for i, t := range sc.Tokens {
		out[i] = t.Logprob
	}
	return out, nil
}
