package verify

import (
	"context"
	"math"

	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// Scores is a reference model's teacher-forced view of one completion.
type Scores struct {
	// PromptTokens counts the prompt's tokens under the reference.
	PromptTokens int
	// Tokens are the completion's tokens in the reference's tokenization.
	Tokens []TokenScore
	// EndLogprob is the log-probability of ending right after the
	// completion and EndBest the best log-probability there.
	EndLogprob, EndBest float64
	// StopDeficit explains a stop by a stop string: the smallest worst
	// deficit of a reference continuation, starting at the completion's
	// last token, that runs into a stop string where the completion ends
	// (+Inf: none). StopTokens counts the tokens of that continuation after
	// its first, which a server counts but whose text it cut.
	StopDeficit float64
	StopTokens  int
}

// TokenScore is one completion token under the reference.
type TokenScore struct {
	Token string
	// Logprob is the token's log-probability; Best the reference's most
	// likely token at the position and BestLogprob its log-probability.
	Logprob     float64
	Best        string
	BestLogprob float64
}

// Deficit is how far below the reference's best the token is, in nats
// (≥ 0; +Inf when a log-probability is not a number).
func (t TokenScore) Deficit() float64 { return deficit(t.BestLogprob, t.Logprob) }

// EndDeficit is how far ending after the completion is below the
// reference's best choice there.
func (s *Scores) EndDeficit() float64 { return deficit(s.EndBest, s.EndLogprob) }

func deficit(best, lp float64) float64 {
	d := best - lp
	switch {
	case math.IsNaN(d):
		return math.Inf(1)
	case d < 0:
		return 0
	}
	return d
}

// Scorer scores completions under a reference model.
type Scorer interface {
	Score(ctx context.Context, req protocol.Request, completion string) (Scores, error)
}

// SimScorer is the simulator as a reference model.
type SimScorer struct{ Sim *sim.Sim }

var _ Scorer = SimScorer{}

// Score runs the simulator's teacher-forced scoring.
func (r SimScorer) Score(ctx context.Context, req protocol.Request, completion string) (Scores, error) {
	if err := ctx.Err(); err != nil {
		return Scores{}, err
	}
	sc, err := r.Sim.Score(req, completion)
	if err != nil {
		return Scores{}, err
	}
	out := Scores{
		PromptTokens: sc.PromptTokens, Tokens: make([]TokenScore, len(sc.Tokens)),
		EndLogprob: sc.EndLogprob, EndBest: sc.EndBest, StopDeficit: sc.StopDeficit, StopTokens: sc.StopTokens,
	}
	for i, t := range sc.Tokens {
		out.Tokens[i] = TokenScore{Token: t.Token, Logprob: t.Logprob, Best: t.Best, BestLogprob: t.BestLogprob}
	}
	return out, nil
}
