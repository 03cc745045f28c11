package gateway

import (
	"errors"
	"slices"
	"strings"
	"sync"

	"github.com/idlegrid/idlegrid/internal/hub"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/scheduler"
)

// Probation: trust before traffic. With a ledger, a provider that has not
// yet passed Config.ProbationCases cases (matured on the ledger, as its
// standing says), or that has a failed case still inside the conviction
// window, is on probation: of the requests for one model it gets at most
// Config.ProbationShare while a provider of the model that is not on
// probation can take them: when those are busy, the request waits in the
// queue for one of their slots. Requests pinned to it (provider.order
// without fallbacks, as verifiers' canaries are) and requests no provider
// off probation would take (none connected, all paused or ruled out by the
// request's preferences) still reach it. With a sample feed, every response of a provider on
// probation is sampled. The gateway re-reads standings at every block, so a
// provider leaves probation in the block its last needed case matures.

// Probation is per (provider, digest): the ledger counts each provider's
// passed cases per model digest (ledger.ProviderRecord.Passed), and a
// provider off probation that serves a model with a digest it has not
// passed ProbationCases cases with is on probation for that model, as a
// newcomer is. The count is the ledger's, so every gateway, and one just
// restarted, sees the same.

// Defaults of the probation policy (Config.ProbationCases and
// Config.ProbationShare).
const (
	DefaultProbationCases = 3
	DefaultProbationShare = 0.1
)

// probation holds, per model as consumers name it, each provider on
// probation's credit: every request placed for the model adds
// ProbationShare to it (up to one request's worth: credit does not bank),
// and a request placed on the provider takes one. A provider without a
// whole request of credit is capped.
type probation struct {
	mu     sync.Mutex
	credit map[string]map[keys.PublicKey]float64
}

// pairOnProbation reports whether a provider with standing st is on
// probation serving digest: it has passed fewer than ProbationCases cases
// with digest (the ledger counts every case toward the provider's total
// and a passed one toward its digest too, so this covers a newcomer), or
// a failed case of it is still inside the conviction window. A gateway
// without a ledger, or one that serves unregistered providers, has no
// probation.
func (g *Gateway) pairOnProbation(st standing, digest string) bool {
	if !g.enforced() || g.cfg.ProbationCases < 0 {
		return false
	}
	return st.recentFailures > 0 || st.passed.Passes(digest) < uint64(g.cfg.ProbationCases)
}

// probationSplit sorts model's providers on probation by their credit:
// due have a whole request of it (the next request goes to one of them
// first), capped have had their share (the next request goes elsewhere if
// it can). Both are nil when no provider of the model is off probation:
// with all on probation, routing is as usual.
func (g *Gateway) probationSplit(model string, infos []hub.Info) (due, capped map[keys.PublicKey]bool) {
	due, capped = map[keys.PublicKey]bool{}, map[keys.PublicKey]bool{}
	off := false
	on := g.probationOf(model, infos)
	g.prob.mu.Lock()
	defer g.prob.mu.Unlock()
	for _, in := range infos {
		if _, ok := servedDigest(in, model); !ok {
			continue
		}
		switch {
		case !on[in.Key]:
			off = true
		case g.prob.credit[model][in.Key] >= 1:
			due[in.Key] = true
		default:
			capped[in.Key] = true
		}
	}
	if !off {
		return nil, nil
	}
	return due, capped
}

// probationOf is the set of model's providers among infos that are on
// probation serving it.
func (g *Gateway) probationOf(model string, infos []hub.Info) map[keys.PublicKey]bool {
	on := map[keys.PublicKey]bool{}
	for _, in := range infos {
		d, ok := servedDigest(in, model)
		if !ok {
			continue
		}
		if st, _ := g.standing(in.Key); g.pairOnProbation(st, d) {
			on[in.Key] = true
		}
	}
	return on
}

// placed accounts for a request for model placed on key, infos being the
// providers it was picked among.
func (g *Gateway) placed(model string, key keys.PublicKey, infos []hub.Info) {
	var on []keys.PublicKey
	for k := range g.probationOf(model, infos) {
		on = append(on, k)
	}
	g.prob.mu.Lock()
	defer g.prob.mu.Unlock()
	if g.prob.credit == nil {
		g.prob.credit = map[string]map[keys.PublicKey]float64{}
	}
	credit := g.prob.credit[model]
	if credit == nil {
		credit = map[keys.PublicKey]float64{}
		g.prob.credit[model] = credit
	}
	for k := range credit {
		if !slices.Contains(on, k) {
			delete(credit, k) // left probation, or left the gateway
		}
	}
	for _, k := range on {
		credit[k] = min(credit[k]+g.cfg.ProbationShare, 1)
		if k == key {
			// Placed on it even when capped (pinned, or nobody else
			// free): it waits for its share to catch up, at most one
			// request's worth.
			credit[k] = max(credit[k]-1, -1)
		}
	}
}

// sampledOnProbation reports whether key is on probation serving digest:
// the sample feed then takes every response of it, so that verifiers meet
// a newcomer (or a provider's new weights) at its first request and judge
// all it serves while on probation.
func (g *Gateway) sampledOnProbation(key keys.PublicKey, digest string) bool {
	st, ok := g.standing(key)
	return ok && g.pairOnProbation(st, digest)
}

// pick is the scheduler's choice for c among infos: a provider on
// probation with its share to take gets c first (unless c names providers
// to try first), so that newcomers get the traffic that samples them;
// those that have had their share are kept out while a provider off
// probation can take c, now or once it has a free slot (c then waits in
// the queue).
func (g *Gateway) pick(c *call, infos []hub.Info) (scheduler.Choice, error) {
	cands := g.candidates(infos)
	model := probationModel(c.asked)
	due, capped := g.probationSplit(model, infos)
	if len(due) > 0 && len(c.sched.Prefs.Order) == 0 {
		if choice, err := g.sched.Pick(pauseUnless(cands, due, true), &c.sched); err == nil {
			return choice, nil
		}
	}
	if len(capped) > 0 {
		choice, err := g.sched.Pick(pauseUnless(cands, capped, false), &c.sched)
		var u *scheduler.Unplaceable
		if err == nil || errors.As(err, &u) && u.OnlyBusy() {
			// A provider off probation takes c now, or when one of its
			// slots frees: c waits for it rather than go over the cap
			// (under steady load a consumer's next request often comes
			// before the slot of its last is free).
			return choice, err
		}
	}
	return g.sched.Pick(cands, &c.sched)
}

// pauseUnless is a copy of cands in which the providers whose membership
// in set differs from keep are paused (out of this pick).
func pauseUnless(cands []scheduler.Candidate, set map[keys.PublicKey]bool, keep bool) []scheduler.Candidate {
	out := slices.Clone(cands)
	for i := range out {
		if set[out[i].Key] != keep {
			out[i].Paused = true
		}
	}
	return out
}

// servedDigest is the digest with which in offers model (as
// probationModel names it); ok is false when it does not offer it.
func servedDigest(in hub.Info, model string) (string, bool) {
	i := slices.IndexFunc(in.Capabilities.Models, func(m protocol.Model) bool { return probationModel(m.Name) == model })
	if i < 0 {
		return "", false
	}
	return in.Capabilities.Models[i].Digest, true
}

// probationModel is the name probation counts a model's requests under.
func probationModel(asked string) string {
	base, _ := strings.CutSuffix(asked, ":latest")
	return base
}
