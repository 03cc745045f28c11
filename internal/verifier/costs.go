package verifier

import (
	"context"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/verify"
)

// Costs is what the verifier's audits cost so far, in tokens: the
// canaries providers generated for it (consumer-priced work done for the
// audit, not for a consumer) and the reference's replays of canaries,
// samples and others' cases.
type Costs struct {
	// Canaries counts the canaries answered; CanaryTokens their
	// completion tokens.
	Canaries     int
	CanaryTokens uint64
	// Replays counts the reference's generations; RefPrompt and
	// RefDecoded the tokens they prefilled and decoded.
	Replays               int
	RefPrompt, RefDecoded uint64
	// Checks and CheckDecoded are the part of Replays and RefDecoded
	// spent on the per-token checks of sampled (temperature > 0)
	// responses (Config.SampledChecks each).
	Checks       int
	CheckDecoded uint64
	// Greedy and GreedyDecoded are the part spent replaying greedy
	// samples; the rest replays canaries and others' cases.
	Greedy        int
	GreedyDecoded uint64
}

// Sub returns the costs incurred between before and c.
func (c Costs) Sub(before Costs) Costs {
	return Costs{Canaries: c.Canaries - before.Canaries, CanaryTokens: c.CanaryTokens - before.CanaryTokens,
		Replays: c.Replays - before.Replays, RefPrompt: c.RefPrompt - before.RefPrompt, RefDecoded: c.RefDecoded - before.RefDecoded,
		Checks: c.Checks - before.Checks, CheckDecoded: c.CheckDecoded - before.CheckDecoded,
		Greedy: c.Greedy - before.Greedy, GreedyDecoded: c.GreedyDecoded - before.GreedyDecoded}
}

// Costs reports the audits' costs so far.
func (v *Verifier) Costs() Costs {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.costs
}

// replay replays resp on the reference with c and counts what it cost;
// budgeted: against the budget too (budget.go).
func (v *Verifier) replay(ctx context.Context, c verify.Canary, ref backend.Backend, req protocol.Request, resp verify.Response, budgeted bool) (verify.Replayed, error) {
	rp, err := c.Replay(ctx, ref, req, resp)
	v.mu.Lock()
	if budgeted {
		v.charge(uint64(rp.RefDecoded))
	}
	v.costs.Replays += rp.Replays
	v.costs.RefPrompt += uint64(rp.RefPrompt)
	v.costs.RefDecoded += uint64(rp.RefDecoded)
	v.mu.Unlock()
	return rp, err
}
