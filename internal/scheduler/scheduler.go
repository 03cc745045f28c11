// Package scheduler chooses which provider serves a request: it filters the
// connected providers (model, not paused, a free slot), scores the rest and
// picks one by power of two choices, and when nothing fits it says exactly
// why, with counts, so the consumer gets a useful error.
package scheduler

import (
	"fmt"
	"math/rand/v2"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// Candidate is one connected provider as the scheduler sees it.
type Candidate struct {
	Key      keys.PublicKey
	Models   []protocol.Model
	Slots    int
	InFlight int
	Paused   bool
}

// Choice is the picked provider and its entry for the model.
type Choice struct {
	Key   keys.PublicKey
	Model protocol.Model
}

// Unplaceable says why no provider can take a request now.
type Unplaceable struct {
	Model string
	// Offering is how many connected providers serve the model; Paused and
	// Busy how many of those are paused or have no free slot.
	Offering, Paused, Busy int
}

func (u *Unplaceable) Error() string {
	switch {
	case u.Offering == 0:
		return fmt.Sprintf("model %q: 0 providers online", u.Model)
	case u.Paused == u.Offering:
		return fmt.Sprintf("model %q: %s online, all paused by their owners", u.Model, plural(u.Offering, "provider"))
	default:
		return fmt.Sprintf("model %q: %s online, %d busy, %d paused", u.Model, plural(u.Offering, "provider"), u.Busy, u.Paused)
	}
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// OnlyBusy reports whether capacity will come back by itself (every
// provider offering the model is busy or paused, at least one busy), so a
// request may wait in the queue for a slot.
func (u *Unplaceable) OnlyBusy() bool { return u.Offering > 0 && u.Busy > 0 }

// MatchModel reports whether a provider's model name serves a requested
// name: equal, or equal but for Ollama's implicit ":latest" tag.
func MatchModel(offered, requested string) bool {
	return offered == requested || offered == requested+":latest" || offered+":latest" == requested
}

// Pick chooses a provider for model among cands. rng may be nil.
func Pick(cands []Candidate, model string, rng *rand.Rand) (Choice, error) {
	u := &Unplaceable{Model: model}
	var ok []Choice
	var load []float64
	for _, c := range cands {
		m, found := find(c.Models, model)
		if !found {
			continue
		}
		u.Offering++
		switch {
		case c.Paused:
			u.Paused++
		case c.InFlight >= c.Slots:
			u.Busy++
		default:
			ok = append(ok, Choice{Key: c.Key, Model: m})
			load = append(load, float64(c.InFlight)/float64(c.Slots))
		}
	}
	switch len(ok) {
	case 0:
		return Choice{}, u
	case 1:
		return ok[0], nil
	}
	intn := rand.IntN
	if rng != nil {
		intn = rng.IntN
	}
	// Power of two choices: two random candidates, the less loaded wins.
	// It spreads load almost as well as scanning for the minimum, without
	// every request herding onto the same momentarily idle provider.
	i := intn(len(ok))
	j := intn(len(ok) - 1)
	if j >= i {
		j++
	}
	if load[j] < load[i] {
		i = j
	}
	return ok[i], nil
}

func find(models []protocol.Model, name string) (protocol.Model, bool) {
	for _, m := range models {
		if MatchModel(m.Name, name) {
			return m, true
		}
	}
	return protocol.Model{}, false
}
