package sim

import (
	"context"
	"fmt"
	"math"
	"strings"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// Perturbed is a Sim whose candidate logits carry deterministic noise: the
// same model computed differently. With Noise of a few thousandths it
// stands for the same weights on other hardware, thread counts or batch
// sizes (reductions summed in another order); with Noise of a few hundredths
// it stands for a cheaper quantization of the weights, which agrees with
// the original on some prompts and drifts on others. Either way it flips
// the greedy choice only where candidates nearly tie, then continues
// greedily from its own prefix, as a real model does.
//
// The noise of each candidate is a pure function of Seed, the model's
// Weights, the sequence so far and the candidate, so one Perturbed (one
// machine) always gives the same text for the same request.
type Perturbed struct {
	Sim *Sim
	// Noise is the standard deviation of the noise added to each logit
	// (the model's logits span 0–5).
	Noise float64
	// Seed selects the noise pattern.
	Seed uint64
}

var _ backend.Backend = (*Perturbed)(nil)

// Models lists the underlying Sim's models, with the same digests: a
// perturbed model claims to be the original.
func (p *Perturbed) Models(ctx context.Context) ([]backend.Model, error) {
	return p.Sim.Models(ctx)
}

// Generate runs req like Sim.Generate, without pacing, on the perturbed
// logits, and emits the whole text as one Delta at the end. Log-probabilities
// reported are the perturbed model's own.
func (p *Perturbed) Generate(ctx context.Context, req protocol.Request, emit func(backend.Delta) error) (backend.Result, error) {
	s := p.Sim
	m, ok := s.lookup(req.Model)
	if !ok {
		return backend.Result{}, fmt.Errorf("sim: %w: %s", backend.ErrModelNotFound, notFoundMessage(req.Model))
	}
	prompt, err := render(req)
	if err != nil {
		return backend.Result{}, fmt.Errorf("sim: %w", err)
	}
	st := newSeqState()
	for _, t := range tokenize(prompt) {
		st = st.push(t)
	}
	promptTokens := st.pos
	o := req.Options
	limit := m.DefaultMaxTokens
	if o.MaxTokens > 0 {
		limit = o.MaxTokens
	}
	samp := sampling{topP: 1, ignoreEOS: m.IgnoreEOS}
	if o.Temperature != nil && *o.Temperature > 0 {
		samp.temperature = *o.Temperature
		if o.Seed != nil {
			samp.seed = uint64(*o.Seed)
		}
	}
	if o.TopP != nil && *o.TopP > 0 && *o.TopP < 1 {
		samp.topP = *o.TopP
	}
	var text strings.Builder
	var lps []protocol.TokenLogprob
	n, finish := 0, "length"
	for n < limit {
		if err := ctx.Err(); err != nil {
			return backend.Result{}, fmt.Errorf("sim: %w", err)
		}
		d := s.vocab.next(m.Weights, st)
		p.perturb(&d, m.Weights, st)
		slot := s.vocab.choose(&d, samp, m.Weights, st)
		idx := d.cand[slot]
		if idx == eosIndex {
			finish = "stop"
			break
		}
		tok := s.vocab.texts[idx]
		if o.Logprobs {
			lps = append(lps, protocol.TokenLogprob{Token: tok, Logprob: s.vocab.logprob(&d, idx)})
		}
		st = st.push(tok)
		n++
		text.WriteString(tok)
		if cut := firstStop(text.String(), o.Stop); cut >= 0 {
			kept := text.String()[:cut]
			text.Reset()
			text.WriteString(kept)
			finish = "stop"
			break
		}
	}
	if text.Len() > 0 {
		if err := emit(backend.Delta{Text: text.String(), Tokens: n, Logprobs: lps}); err != nil {
			return backend.Result{}, err
		}
	}
	return backend.Result{
		Usage:        protocol.Usage{PromptTokens: uint64(promptTokens), CompletionTokens: uint64(n)},
		FinishReason: finish,
	}, nil
}

// perturb adds the noise to d's logits and renormalises.
func (p *Perturbed) perturb(d *dist, weights uint64, st seqState) {
	if p.Noise == 0 {
		return
	}
	base := mix64(p.Seed ^ mix64(st.hash^mix64(weights^0x2545f4914f6cdd1d)))
	hi := math.Inf(-1)
	for i := range d.logit {
		rng := splitmix(mix64(base ^ uint64(d.cand[i])))
		d.logit[i] += p.Noise * gaussian(&rng)
		hi = max(hi, d.logit[i])
	}
	var sum float64
	for _, l := range d.logit {
		sum += math.Exp(l - hi)
	}
	d.logZ = hi + math.Log(sum)
}

// gaussian draws a standard normal value (Box–Muller).
func gaussian(rng *splitmix) float64 {
	u := 1 - rng.float() // in (0, 1]: the logarithm is finite
	return math.Sqrt(-2*math.Log(u)) * math.Cos(2*math.Pi*rng.float())
}

// firstStop is the index of the earliest stop string in text, or -1.
func firstStop(text string, stops []string) int {
	cut := -1
	for _, s := range stops {
		if s == "" {
			continue
		}
		if i := strings.Index(text, s); i >= 0 && (cut < 0 || i < cut) {
			cut = i
		}
	}
	return cut
}
