package sim

import (
	"fmt"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// score returns the model's log-probability of each token of completion
// when it follows req's rendered prompt: what a verifier's re-scoring of a
// response computes. Tokens outside the vocabulary get the floor value.
func (s *Sim) score(req protocol.Request, completion string) ([]float64, error) {
	m, ok := s.lookup(req.Model)
	if !ok {
		return nil, fmt.Errorf("sim: %w: %s", backend.ErrModelNotFound, notFoundMessage(req.Model))
	}
	prompt, err := render(req)
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	st := newSeqState()
	for _, t := range tokenize(prompt) {
		st = st.push(t)
	}
	var out []float64
	for _, t := range tokenize(completion) {
		d := s.vocab.next(m.Weights, st)
		idx, ok := s.vocab.index[t]
		if !ok {
			idx = -1
		}
		out = append(out, s.vocab.logprob(&d, idx))
		st = st.push(t)
	}
	return out, nil
}
