package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/hub"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/scheduler"
)

// place finds a provider with a free slot for the call's current segment
// and dispatches it, waiting in the queue while every provider of the model
// is busy. ctx carries the request's overall deadline.
func (g *Gateway) place(ctx context.Context, c *call) (*hub.Stream, *protocol.Job, *reservation, *apierr.Error) {
	h := g.cfg.Hub
	deadline := time.NewTimer(g.cfg.QueueTimeout)
	defer deadline.Stop()
	queued := false
	defer func() {
		if queued {
			g.queued.Add(-1)
		}
	}()
	for {
		changed := h.Changed()                 // before the snapshot, so no change is missed
		choice, err := g.pick(c, h.Snapshot()) // probation.go
		var u *scheduler.Unplaceable
		if err == nil {
			job := g.job(c, choice)
			hold, e := g.hold(ctx, c, choice)
			if e != nil {
				return nil, nil, nil, e
			}
			c.dispatched = time.Now()
			s, err := h.Dispatch(ctx, choice.Key, job)
			if err == nil {
				g.sched.Placed(&c.sched, choice.Key)
				g.placed(probationModel(c.asked), choice.Key)
				g.health.dispatched(choice.Key)
				return s, job, hold, nil
			}
			hold.release()
			if errors.Is(err, hub.ErrCongested) {
				// The provider is not reading its connection: the next
				// snapshot shows it without a free slot, so pick again now.
				g.log.Debug("provider congested; placing elsewhere", "request_id", c.id, "provider", choice.Key.String())
				continue
			}
			// The snapshot was already stale: the slot was taken, or the
			// provider paused or went away. Wait for the hub's next change
			// rather than picking the same provider again at once.
			g.log.Debug("dispatch lost a race; waiting for the next change", "request_id", c.id, "err", err)
		} else {
			if !errors.As(err, &u) {
				return nil, nil, nil, apierr.Internal("scheduling failed")
			}
			if u.Offering == 0 {
				if !g.knownModel(c.req.Model) {
					return nil, nil, nil, apierr.ModelNotFound(c.asked)
				}
				return nil, nil, nil, apierr.Unavailable("no_provider", "No provider can serve this request now (%s). Try again later.", u.Error())
			}
			if !u.OnlyBusy() {
				return nil, nil, nil, unplaceable(u)
			}
		}
		if !queued {
			if g.queued.Add(1) > int64(g.cfg.MaxQueued) {
				g.queued.Add(-1)
				return nil, nil, nil, apierr.Overloaded("The request queue is full (%d waiting; %s). Retry with backoff.", g.cfg.MaxQueued, g.why(c, u))
			}
			queued = true
		}
		select {
		case <-changed:
		case <-deadline.C:
			return nil, nil, nil, apierr.Overloaded("No provider slot freed within %s (%s). Retry with backoff.", g.cfg.QueueTimeout, g.why(c, u))
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, nil, nil, timeoutError(g.cfg.JobTimeout)
			}
			return nil, nil, nil, apierr.Unavailable("cancelled", "The request was cancelled while queued.")
		}
	}
}

// timeoutError is the 504 for a request that outlived the job timeout.
func timeoutError(limit time.Duration) *apierr.Error {
	return &apierr.Error{Status: http.StatusGatewayTimeout, Type: "server_error", Code: "timeout",
		Message: fmt.Sprintf("The request did not finish within the gateway's job timeout (%s); the partial answer is billed only as far as its provider signed for it.", limit)}
}

// unplaceable is the 503 for a request no provider can take and none
// will by merely finishing a job.
func unplaceable(u *scheduler.Unplaceable) *apierr.Error {
	if banned := u.NotAllowed + u.Jailed; banned > 0 && banned+u.Excluded() == u.Offering {
		return apierr.Unavailable("no_allowed_provider", "No provider the network allows can serve this request: convicted providers and weights the ledger does not allow for the model are never used (%s). Try again later.", u.Error())
	}
	if u.Excluded() > 0 {
		return apierr.Unavailable("no_matching_provider", "No provider can serve this request within its routing preferences (%s). "+
			"Relax the request's \"provider\" preferences, or try again later.", u.Error())
	}
	if u.Failing > 0 {
		return apierr.Unavailable("providers_failing", "No provider can serve this request now (%s). Try again later.", u.Error())
	}
	return apierr.Unavailable("providers_paused", "No provider can serve this request now (%s). Try again later.", u.Error())
}

// hold reserves the current segment's worst-case cost at the chosen
// provider's consumer prices; nil without a ledger.
func (g *Gateway) hold(ctx context.Context, c *call, choice scheduler.Choice) (*reservation, *apierr.Error) {
	if g.funds == nil {
		return nil, nil
	}
	cost, err := worstCost(&c.seg, choice.PricePrompt, choice.PriceCompletion)
	if err != nil {
		return nil, apierr.Invalid("max_tokens", "This request's worst-case cost does not fit in an amount: %v", err)
	}
	what := fmt.Sprintf("max_tokens %d at %s/Mtok output, prompt at %s/Mtok", c.seg.Options.MaxTokens, choice.PriceCompletion, choice.PricePrompt)
	return g.funds.reserve(ctx, c.key.Account, cost, what)
}

// why describes why a request waits: u when the scheduler said, else the
// hub's current state for the model.
func (g *Gateway) why(c *call, u *scheduler.Unplaceable) string {
	if u == nil {
		if u = g.sched.Explain(g.candidates(g.cfg.Hub.Snapshot()), &c.sched); u == nil {
			return fmt.Sprintf("model %q: every provider was busy a moment ago", c.asked)
		}
	}
	return u.Error()
}

func (g *Gateway) knownModel(name string) bool {
	h := g.cfg.Hub
	base, _ := strings.CutSuffix(name, ":latest")
	return h.KnownModel(name) || h.KnownModel(base) || h.KnownModel(base+":latest")
}

// job builds the job for the call's current segment and its receipt terms
// for the chosen provider.
func (g *Gateway) job(c *call, choice scheduler.Choice) *protocol.Job {
	req := c.seg
	req.Model = choice.Model.Name // the provider's exact name, e.g. "tiny:latest" for "tiny"
	return &protocol.Job{
		ID:             c.segID,
		Request:        req,
		DeadlineUnixMs: c.admitted.Add(g.cfg.JobTimeout).UnixMilli(),
		Terms: protocol.Terms{
			ChainID:                g.cfg.ChainID,
			RequestID:              c.segID,
			Gateway:                g.cfg.Key.Public(),
			Consumer:               c.key.Account,
			Model:                  choice.Model.Name,
			ModelDigest:            choice.Model.Digest,
			PricePromptPerMTok:     choice.PricePrompt,
			PriceCompletionPerMTok: choice.PriceCompletion,
			RequestHash:            c.reqHash,
			StartUnixMs:            c.admitted.UnixMilli(),
		},
	}
}

// candidates turns the hub's snapshot into the scheduler's view, with each
// provider's circuit breaker and standing: a provider the ledger does not
// admit (or not yet) counts as jailed.
func (g *Gateway) candidates(infos []hub.Info) []scheduler.Candidate {
	out := make([]scheduler.Candidate, len(infos))
	for i, in := range infos {
		st, ok := g.servable(in.Key)
		inflight := in.InFlight
		if in.Congested {
			inflight = max(inflight, in.Capabilities.Slots) // not reading its connection: no free slot
		}
		out[i] = scheduler.Candidate{Key: in.Key, Models: in.Capabilities.Models, Slots: in.Capabilities.Slots, InFlight: inflight,
			Paused: in.Paused, Failing: g.health.failing(in.Key), Jailed: !ok, Reputation: st.routingReputation()}
	}
	return out
}
