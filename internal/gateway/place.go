package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/hub"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/scheduler"
	"github.com/idlegrid/idlegrid/internal/store"
)

// Placement: where an authenticated, parsed request is served. Every
// request that runs a job (the route table's Generation routes) enters it
// once, through serve, after authentication (auth.go). The candidates are
// this gateway's providers, among which the scheduler picks (place), and,
// for gateways sharing a database, the peer gateway with the most free
// slots for the model (Config.Forwarder), which takes the request when no
// provider here can.

// placement is what placement knows of an authenticated, parsed request.
type placement struct {
	key  store.APIKey
	body []byte // as the consumer sent it: what a peer gets
	req  *protocol.Request
	// prefs are the request's routing preferences, its own or its key's.
	prefs scheduler.Preferences
	// stay keeps the request here: it continues a response kept here,
	// which the peers know nothing of.
	stay   bool
	format errorFormat
}

// serve places q: on a peer gateway when no provider here can take it and
// a peer can (peerFor), else here, where here relays it and place picks
// its provider. Images are checked against the providers here, unless
// none offers the model and a peer takes it: the peer checks its own.
func (g *Gateway) serve(w http.ResponseWriter, r *http.Request, q placement, here func()) {
	why := g.localSlots(q.req.Model)
	peer, ok := g.peerFor(r, q, why)
	if !ok || why != peerNoLocal {
		if e := g.checkImages(*q.req); e != nil {
			q.format(w, e)
			return
		}
	}
	if ok {
		g.cfg.Forwarder.Forward(w, r, q.body, peer, q.req.Model, why.unreachable())
		return
	}
	here()
}

// peerReason is how the providers connected here stand for a model, as
// placement on a peer gateway asks.
type peerReason int

const (
	peerNone    peerReason = iota // a provider here has a free slot, or all are paused: stay
	peerNoLocal                   // no provider connected here offers the model
	peerBusy                      // every unpaused provider here that offers it is busy
)

// unreachable is the consumer's error when the peer cannot be reached.
func (why peerReason) unreachable() string {
	if why == peerBusy {
		return "Every provider connected to this gateway for this model is busy, and the peer gateway with a free slot could not be reached; please retry."
	}
	return "No provider connected to this gateway serves this model, and the peer gateway that has one could not be reached; please retry."
}

// peerFor is the peer gateway placement gives q to, if any: when no
// provider connected here offers its model (paused or not), the peer with
// the most free slots for it; when every unpaused one that offers it is
// busy, that peer if it has a free slot, for a request without routing
// preferences (a peer's providers are not the ones they name or allow)
// that is not an embedding (which waits for a slot here). Never for a
// request a peer forwarded (one hop at most), one that stays, or one
// admitted without a key: a peer authenticates the consumer's key itself,
// and refuses a forwarded request without one.
func (g *Gateway) peerFor(r *http.Request, q placement, why peerReason) (store.PeerModel, bool) {
	if g.cfg.Forwarder == nil || q.stay || q.key.ID == keylessAccountKeyID || r.Header.Get(ForwardedHeader) != "" {
		return store.PeerModel{}, false
	}
	switch {
	case why == peerNoLocal:
	case why == peerBusy && q.prefs.IsZero() && q.req.Kind != protocol.KindEmbed:
	default:
		return store.PeerModel{}, false
	}
	peer, ok := g.cfg.Forwarder.Peer(r.Context(), q.req.Model)
	if !ok || why == peerBusy && peer.FreeSlots == 0 {
		return store.PeerModel{}, false
	}
	if why == peerBusy {
		g.log.Info("every local provider of the model is busy; a peer gateway has a free slot", "model", q.req.Model)
	}
	return peer, true
}

// localSlots says how the providers connected here stand for model: none
// offers it (peerNoLocal), every unpaused one that does is busy
// (peerBusy), or else peerNone (one has a free slot, or all that offer it
// are paused and placement explains why).
func (g *Gateway) localSlots(model string) peerReason {
	offered, unpaused := false, false
	for _, in := range g.cfg.Hub.Snapshot() {
		if !slices.ContainsFunc(in.Capabilities.Models, func(m protocol.Model) bool { return scheduler.MatchModel(m.Name, model) }) {
			continue
		}
		offered = true
		if in.Paused {
			continue
		}
		if in.Free() > 0 {
			return peerNone
		}
		unpaused = true
	}
	switch {
	case !offered:
		return peerNoLocal
	case unpaused:
		return peerBusy
	}
	return peerNone
}

// place finds a provider with a free slot for the call's current segment
// and dispatches it. While every provider of the model is busy it waits in
// line (queue.go): placed in arrival order, at most MaxQueued waiting, each
// for at most QueueTimeout. ctx carries the request's overall deadline.
func (g *Gateway) place(ctx context.Context, c *call) (*hub.Stream, *protocol.Job, *reservation, *apierr.Error) {
	h := g.cfg.Hub
	deadline := time.NewTimer(g.cfg.QueueTimeout)
	defer deadline.Stop()
	key := lineKey(c)
	var w *waiter              // set while waiting in line
	tried := false             // the last thing w did was try
	var grace <-chan time.Time // fires when the reconnect grace ends
	defer func() {
		if w != nil {
			g.waiting.leave(w, tried)
			g.queued.Add(-1)
		}
	}()
	var u *scheduler.Unplaceable
	// Somebody already waits for this model: to the back of the line.
	try := !g.waiting.waiting(key)
	for {
		changed := h.Changed() // before the snapshot, so no change is missed
		if try {
			tried = true
			s, job, hold, e, placed := g.tryPlace(ctx, c, h, &u, &grace)
			if e != nil || placed {
				return s, job, hold, e
			}
			if w != nil && restricted(c) {
				g.waiting.handOn(w) // the slot may be one this request cannot use
			}
		}
		tried = false
		if w == nil {
			if g.queued.Add(1) > int64(g.cfg.MaxQueued) {
				g.queued.Add(-1)
				return nil, nil, nil, apierr.Overloaded("The request queue is full (%d waiting; %s). Retry with backoff.", g.cfg.MaxQueued, g.why(c, u))
			}
			w = g.waiting.join(key)
		}
		// The head watches the hub; the others wait for their turn.
		var change <-chan struct{}
		if g.waiting.head(w) {
			change = changed
		}
		select {
		case <-change:
		case <-w.turn:
		case <-grace: // look once more, then answer as after the grace
		case <-deadline.C:
			return nil, nil, nil, apierr.Overloaded("No provider slot freed within %s (%s). Retry with backoff.", g.cfg.QueueTimeout, g.why(c, u))
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, nil, nil, timeoutError(g.cfg.JobTimeout)
			}
			return nil, nil, nil, apierr.Unavailable("cancelled", "The request was cancelled while queued.")
		}
		try = true
	}
}

// tryPlace makes one placement attempt on the hub's current snapshot.
// placed reports a dispatched job; e an answer to give the consumer; with
// neither, wait for the next change (*u says why, when the scheduler did).
func (g *Gateway) tryPlace(ctx context.Context, c *call, h *hub.Hub, u **scheduler.Unplaceable, grace *<-chan time.Time) (
	s *hub.Stream, job *protocol.Job, hold *reservation, e *apierr.Error, placed bool) {
	for {
		snap := runnable(&c.req, h.Snapshot()) // embed jobs only for agents that embed
		choice, err := g.pick(c, snap)         // probation.go
		*u = nil
		if err != nil {
			if !errors.As(err, u) {
				return nil, nil, nil, apierr.Internal("scheduling failed"), false
			}
			if (*u).Offering == 0 {
				return nil, nil, nil, g.nobodyOffers(c, *u, grace), false
			}
			if !(*u).OnlyBusy() {
				return nil, nil, nil, unplaceable(*u), false
			}
			return nil, nil, nil, nil, false
		}
		job := g.job(c, choice)
		hold, e := g.hold(ctx, c, choice)
		if e != nil {
			return nil, nil, nil, e, false
		}
		c.dispatched = time.Now()
		s, err := h.Dispatch(ctx, choice.Key, job)
		if err == nil {
			g.sched.Placed(&c.sched, choice.Key)
			g.placed(probationModel(c.asked), choice.Key, snap)
			g.health.dispatched(choice.Key)
			return s, job, hold, nil, true
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
		return nil, nil, nil, nil, false
	}
}

// nobodyOffers answers a request for a model no connected provider
// offers. A gateway that just restarted knows the models its store served
// before; while its reconnect grace lasts, a request for one of them waits
// in the queue for the hub's next change (its providers are reconnecting),
// and *grace fires when the grace ends: nil says wait. Otherwise: 503 with
// Retry-After for a model providers offered since the start or served
// recently before it (temporarily unavailable: clients retry a 503), 404
// for any other.
func (g *Gateway) nobodyOffers(c *call, u *scheduler.Unplaceable, grace *<-chan time.Time) *apierr.Error {
	since := time.Since(g.started)
	servedBefore := g.servedBefore(c.req.Model) && since < g.cfg.RecentlyServed
	if servedBefore && since < g.cfg.ReconnectGrace {
		if *grace == nil {
			*grace = time.After(g.cfg.ReconnectGrace - since)
		}
		return nil
	}
	if !servedBefore && !g.knownModel(c.req.Model) {
		return apierr.ModelNotFound(c.asked)
	}
	return apierr.Unavailable("no_provider", "No provider can serve this request now (%s). Try again later.", u.Error())
}

// servedBefore reports whether the store had served the model (by name,
// with or without ":latest") within RecentlyServed before the start.
func (g *Gateway) servedBefore(name string) bool {
	base, _ := strings.CutSuffix(name, ":latest")
	return g.served[name] || g.served[base] || g.served[base+":latest"]
}

// servedBefore reads the models of the store's receipts newer than since
// (the latest 1,000 at most): what a restarted gateway served moments ago.
func servedBefore(st *store.Store, since time.Time, log *slog.Logger) map[string]bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rs, err := st.RecentReceipts(ctx, 1000)
	if err != nil {
		log.Warn("reading recent receipts for the models served before the start", "err", err)
		return nil
	}
	served := map[string]bool{}
	for _, r := range rs {
		if r.StoredAt.After(since) {
			served[r.Receipt.Model] = true
		}
	}
	return served
}

// timeoutError is the 504 for a request that outlived the job timeout.
func timeoutError(limit time.Duration) *apierr.Error {
	return &apierr.Error{Status: http.StatusGatewayTimeout, Type: "server_error", Code: "timeout",
		Message: fmt.Sprintf("The request did not finish within the gateway's job timeout (%s); the partial answer is billed only as far as its provider signed for it.", limit)}
}

// unplaceable is the 503 for a request no provider can take and none
// will by merely finishing a job.
func unplaceable(u *scheduler.Unplaceable) *apierr.Error {
	if u.OnlyIncapable() {
		return apierr.Invalid(u.Lacking, "no provider of %s supports %s (%s). Ask without %s, or use a model whose providers support it.", u.Model, u.Lacking, u.Error(), u.Lacking)
	}
	if u.OnlyLogprobs() {
		return apierr.Invalid("logprobs", "No provider of this model can return log-probabilities: their backends return none (Ollama before 0.12.11), and providers whose backends do are not online (%s). Ask without logprobs, or try again later.", u.Error())
	}
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
	if c.seg.Kind == protocol.KindEmbed {
		what = fmt.Sprintf("%d inputs at %s/Mtok", len(c.seg.Input), choice.PricePrompt)
	}
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
