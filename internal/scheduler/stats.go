package scheduler

import (
	"time"

	"github.com/idlegrid/idlegrid/internal/keys"
)

// Observation is what the gateway measured on one served request, on its
// own clock.
type Observation struct {
	// FirstToken is the time from dispatch to the first token, when
	// HasFirstToken.
	FirstToken    time.Duration
	HasFirstToken bool
	// Tokens were delivered in Took, from dispatch to the end of the
	// answer, the wait for the first token included; no rate is measured
	// without tokens.
	Tokens uint64
	Took   time.Duration
}

// Estimate is the scheduler's recent view of one provider's speed on one
// model: exponentially weighted moving averages of its observations.
type Estimate struct {
	FirstToken time.Duration
	// TokensPerSecond is the delivered rate: the moving average of tokens
	// per answer over that of the time per answer. A ratio of averages
	// rather than an average of ratios, so that it is the rate consumers
	// got over recent answers: a short answer that came fast does not
	// outweigh a long one that came slowly.
	TokensPerSecond float64
	// FirstTokenSamples and RateSamples count the observations behind
	// each average (0: no estimate).
	FirstTokenSamples, RateSamples int

	tokens, seconds float64 // the moving averages behind TokensPerSecond
}

// ewmaWeight is the weight of the newest observation: after about ten
// requests an old measurement has faded, so a provider that slows down
// (or speeds up) is noticed quickly without one outlier dominating.
const ewmaWeight = 0.3

// maxStats bounds the (provider, model) pairs remembered; beyond it an
// arbitrary one is forgotten (providers come and go).
const maxStats = 1 << 14

type statKey struct {
	key   keys.PublicKey
	model string
}

func (e *Estimate) add(o Observation) {
	if o.HasFirstToken && o.FirstToken >= 0 {
		if e.FirstTokenSamples == 0 {
			e.FirstToken = o.FirstToken
		} else {
			e.FirstToken = time.Duration(ewmaWeight*float64(o.FirstToken) + (1-ewmaWeight)*float64(e.FirstToken))
		}
		e.FirstTokenSamples++
	}
	if o.Tokens > 0 && o.Took > 0 {
		if e.RateSamples == 0 {
			e.tokens, e.seconds = float64(o.Tokens), o.Took.Seconds()
		} else {
			e.tokens = ewmaWeight*float64(o.Tokens) + (1-ewmaWeight)*e.tokens
			e.seconds = ewmaWeight*o.Took.Seconds() + (1-ewmaWeight)*e.seconds
		}
		e.TokensPerSecond = e.tokens / e.seconds
		e.RateSamples++
	}
}

// Observe records a served request of provider key on model (the
// provider's own name for it).
func (s *Scheduler) Observe(key keys.PublicKey, model string, o Observation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := statKey{key, model}
	e, ok := s.stats[k]
	if !ok {
		if len(s.stats) >= maxStats {
			for old := range s.stats {
				delete(s.stats, old)
				break
			}
		}
		e = &Estimate{}
		s.stats[k] = e
	}
	e.add(o)
}

// Estimate returns the current estimate for provider key on model; false
// when nothing was observed.
func (s *Scheduler) Estimate(key keys.PublicKey, model string) (Estimate, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.stats[statKey{key, model}]
	if !ok {
		return Estimate{}, false
	}
	return *e, true
}
