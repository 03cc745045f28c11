package verifier

import (
	"math/rand/v2"
	"time"

	"github.com/idlegrid/idlegrid/internal/gateway/samplefeed"
)

// The verifier's budget. Outside probation the verifier spends on its
// audits at most Config.Budget of the completion tokens the gateway
// served to consumers, as the sample feed reports them (Page.ServedTokens)
// since the verifier's first read: spent is the tokens providers generated
// for its periodic canaries plus the tokens its reference decoded replaying
// them, samples of pairs off probation and the open cases of others (the
// same definition as Costs and the bench's VerifyShare). Its credit
// starts at an allowance of one canary case's cost (CaseSize × MaxTokens,
// generated and replayed), so that the first case after a start is never
// starved, grows by Budget × the tokens served at each read of the feed,
// and shrinks by what is spent; it starts a periodic canary, or judges a
// sample it selected, only while the credit is not negative, so spent ≤
// Budget × served + allowance at all times. Credit left unspent beyond
// the allowance at the next read is dropped: a verifier that had nothing
// to audit off probation for a while (a new network, all of it on
// probation) does not spend what it banked then in one burst later. A
// canary that does not fit waits for the next interval.
//
// Which samples are judged is decided when they are read, before they
// are ordered: each sample of a pair off probation is kept with one
// probability p, the same for every sample of the page, so that the
// expected cost of those kept fills what the budget has left (with half
// the allowance kept for canaries): p = (Budget × served + allowance/2 −
// spent − the expected cost of those still queued) / (the page's samples
// × the average cost of judging one so far). Whether a sample is skipped
// is independent of its provider, its length, its temperature and its
// place in the order of judging; a provider that makes its samples costly
// lowers p for every provider alike. Pairs on probation are neither
// throttled nor counted: their audits come before probation ends.
//
// What served_tokens says is the gateway's word: a gateway that inflates
// it makes the verifier spend more, up to Budget × what it claims (the
// verifier operator's compute, no money on the ledger); one that
// understates it gets fewer audits of its providers off probation, but
// not none: a periodic canary waits for the budget at most CanaryFloor
// (default ten minutes) since the last one.
//
// A gateway that reports no served_tokens (one that predates the field)
// leaves the verifier without a budget, which it says once in its log.

// DefaultBudget is Config.Budget's default: under the 5 % of served
// compute the network targets for verification after probation, with a
// margin.
const DefaultBudget = 0.04

// DefaultCanaryFloor is Config.CanaryFloor's default: at least one
// periodic canary every ten minutes, whatever the budget says (a 128-token
// canary and its replay every ten minutes are well under 1 % of one
// provider's traffic at a few tokens a second).
const DefaultCanaryFloor = 10 * time.Minute

// budget is where the verifier's budget stands; v.mu guards it.
type budget struct {
	// paced: the feed reports served_tokens, so the budget applies.
	paced bool
	// saidUnpaced: the log said once that the feed does not; started:
	// a page reported served_tokens once.
	saidUnpaced, started bool
	// last is the feed's last served_tokens; served their growth since
	// the verifier's first read (a gateway restart starts from zero again).
	last, served uint64
	// spent is the budgeted spending since the first read, in tokens;
	// credit what the budget has left (see above).
	spent  uint64
	credit float64
	// lastCanary is when the last periodic canary went out
	// (Config.CanaryFloor).
	lastCanary time.Time
	// sampleCost is the running average cost of judging a selected sample
	// (0 until one was judged); judgedSamples how many it averages.
	sampleCost    float64
	judgedSamples int
	// selected are the samples kept by the coin and not yet judged, by
	// sequence number.
	selected map[uint64]bool
	// postponed counts periodic canaries that waited for the budget.
	postponed int
}

// BudgetStats is where the verifier's budget stands.
type BudgetStats struct {
	// Budget is Config.Budget (negative: none); Paced whether it applies
	// (the feed reports what the gateway served).
	Budget float64
	Paced  bool
	// Served is the completion tokens the gateway served since the
	// verifier's first read of the feed; Spent the budgeted tokens spent
	// since then.
	Served, Spent uint64
	// Postponed counts periodic canaries that waited for the budget.
	Postponed int
}

// Budget reports where the verifier's budget stands.
func (v *Verifier) Budget() BudgetStats {
	v.mu.Lock()
	defer v.mu.Unlock()
	return BudgetStats{Budget: v.cfg.Budget, Paced: v.bud.paced, Served: v.bud.served, Spent: v.bud.spent, Postponed: v.bud.postponed}
}

// allowance is the spending allowed beyond Budget × served: one canary
// case, generated and replayed.
func (v *Verifier) allowance() float64 {
	return 2 * float64(v.cfg.CaseSize) * float64(v.cfg.MaxTokens)
}

// budgetAllows reports whether a periodic canary or a selected sample may
// be spent on now: no budget, or credit left. v.mu is held.
func (v *Verifier) budgetAllows() bool {
	return !v.budgeted() || v.bud.credit >= 0
}

// budgeted reports whether the budget applies; v.mu is held.
func (v *Verifier) budgeted() bool { return v.cfg.Budget >= 0 && v.bud.paced }

// charge counts tokens spent on budgeted work; v.mu is held.
func (v *Verifier) charge(tokens uint64) {
	if v.budgeted() {
		v.bud.spent += tokens
		v.bud.credit -= float64(tokens)
	}
}

// observeServed takes a page's served_tokens; v.mu is held.
func (v *Verifier) observeServed(p *samplefeed.Page) {
	if p.ServedTokens == nil {
		if !v.bud.saidUnpaced && v.cfg.Budget >= 0 {
			v.bud.saidUnpaced = true
			v.log.Info("the gateway's sample feed does not report the tokens it served: no budget, every sample judged and every canary sent")
		}
		v.bud.paced = false
		return
	}
	cur := *p.ServedTokens
	grown := cur - v.bud.last
	switch {
	case !v.bud.started:
		// The first read: served counts from here.
		v.bud.started, v.bud.credit, grown = true, v.allowance(), 0
		if v.cfg.Budget >= 0 {
			v.log.Info("budget: auditing off probation within a share of the tokens the gateway serves", "budget", v.cfg.Budget, "served_tokens", cur, "sample_share", p.Share)
		}
	case cur < v.bud.last:
		grown = cur // the gateway restarted: its counter too
	}
	v.bud.served += grown
	v.bud.credit = min(v.bud.credit, v.allowance()) + v.cfg.Budget*float64(grown)
	v.bud.last, v.bud.paced = cur, true
}

// selectSamples keeps each sample of a pair off probation with the
// probability that spends what the budget has left on them, and returns
// the samples to queue (those of pairs on probation, and unshared ones,
// all kept); it counts the others as skipped. v.mu is held.
func (v *Verifier) selectSamples(samples []samplefeed.Sample) []samplefeed.Sample {
	if !v.budgeted() {
		return samples
	}
	off := func(s *samplefeed.Sample) bool {
		r := &s.Receipt.Receipt
		p := v.pairs[pairKey(r.Provider, r.ModelDigest)]
		return s.Shared() && p != nil && r.Gateway == v.feed.gateway && !v.onProbation(p)
	}
	n := 0
	for i := range samples {
		if off(&samples[i]) {
			n++
		}
	}
	if n == 0 {
		return samples
	}
	left := v.bud.credit - v.allowance()/2 - float64(len(v.bud.selected))*v.bud.sampleCost
	p := 1.0
	switch {
	case left <= 0:
		p = 0
	case v.bud.sampleCost > 0:
		p = min(1, left/(float64(n)*v.bud.sampleCost))
	}
	if v.bud.selected == nil {
		v.bud.selected = map[uint64]bool{}
	}
	kept := samples[:0]
	for _, s := range samples {
		if !off(&s) {
			kept = append(kept, s)
			continue
		}
		if p < 1 && rand.Float64() >= p {
			v.feed.skipped++
			continue
		}
		v.bud.selected[s.Seq] = true
		kept = append(kept, s)
	}
	return kept
}

// takeSelected reports whether the coin selected the sample seq (its
// audit is budgeted) and forgets it; v.mu is held.
func (v *Verifier) takeSelected(seq uint64) bool {
	if !v.bud.selected[seq] {
		return false
	}
	delete(v.bud.selected, seq)
	return true
}

// sampleJudged counts the cost of judging a selected sample into the
// average the coin uses; v.mu is held.
func (v *Verifier) sampleJudged(cost uint64) {
	v.bud.judgedSamples++
	// A running mean over the first samples, then a moving average that
	// follows the traffic's mix.
	w := max(1/float64(v.bud.judgedSamples), 1.0/32)
	v.bud.sampleCost += w * (float64(cost) - v.bud.sampleCost)
}
