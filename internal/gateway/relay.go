package gateway

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/gateway/sink"
	"github.com/idlegrid/idlegrid/internal/hub"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/receipt"
	"github.com/idlegrid/idlegrid/internal/scheduler"
	"github.com/idlegrid/idlegrid/internal/store"
)

// admit authenticates the consumer and reads the size-limited body; on
// failure it has answered in format and returns ok = false.
func (g *Gateway) admit(w http.ResponseWriter, r *http.Request, format errorFormat) (key store.APIKey, body []byte, ok bool) {
	key, e := g.authenticate(r)
	if e == nil {
		body, e = g.readBody(w, r)
	}
	if e != nil {
		format(w, e)
		return store.APIKey{}, nil, false
	}
	return key, body, true
}

// requestID returns prefix + 26 random base32 characters.
func requestID(prefix string) string {
	var b [16]byte
	rand.Read(b[:])
	return prefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// SessionHeader is the request header that names a session for affinity:
// requests of one session prefer the provider that served it last. On the
// OpenAI API the "user" member serves when the header is absent.
const SessionHeader = "X-Session-Id"

// route is how the consumer wants a request placed.
type route struct {
	prefs   scheduler.Preferences
	session string // explicit session id; "" for none
}

// call is one admitted request on its way through the relay.
type call struct {
	id         string
	asked      string // model name as the consumer wrote it
	key        store.APIKey
	req        protocol.Request
	sched      scheduler.Request
	reqHash    receipt.Hash
	admitted   time.Time
	dispatched time.Time    // when the job was sent to its provider
	hold       *reservation // funds held for it; nil without a ledger
}

// relay places the request on a provider and streams the result into snk.
func (g *Gateway) relay(ctx context.Context, key store.APIKey, req protocol.Request, reqHash receipt.Hash, idPrefix string, rt route, snk sink.Sink) {
	c := &call{id: requestID(idPrefix), asked: req.Model, key: key, req: req, reqHash: reqHash, admitted: time.Now()}
	if c.req.Options.MaxTokens <= 0 {
		c.req.Options.MaxTokens = g.cfg.DefaultMaxTokens
	}
	c.sched = g.sched.NewRequest(&c.req, rt.prefs, rt.session)
	stream, job, hold, e := g.place(ctx, c)
	if e != nil {
		snk.Fail(e)
		return
	}
	defer hold.release() // a request that ends without a receipt costs nothing
	c.hold = hold
	log := g.log.With("request_id", c.id, "provider", stream.Provider().Key.String(), "model", job.Request.Model)
	var (
		began      bool
		firstToken time.Duration
		firstChunk time.Time
		chunks     int
		relayed    int // bytes of text relayed
		text       = sha256.New()
	)
	begin := func() error {
		if began {
			return nil
		}
		began = true
		return snk.Begin(sink.Meta{RequestID: c.id, Model: c.asked, Created: c.admitted})
	}
	// The gateway enforces the job deadline itself: a provider that stays
	// connected but never finishes must not hold the consumer forever.
	jobCtx, cancel := context.WithDeadline(ctx, time.UnixMilli(job.DeadlineUnixMs))
	defer cancel()
	for {
		ev, err := stream.Next(jobCtx)
		if err != nil {
			stream.Cancel()
			if ctx.Err() == nil {
				log.Warn("job deadline passed; job cancelled", "chunks", chunks)
				snk.Fail(&apierr.Error{Status: http.StatusGatewayTimeout, Type: "server_error", Code: "timeout",
					Message: fmt.Sprintf("The provider did not finish within the gateway's job timeout (%s); the partial answer is not billed.", g.cfg.JobTimeout)})
				return
			}
			log.Info("consumer went away; job cancelled", "chunks", chunks)
			return
		}
		switch {
		case ev.Chunk != nil:
			if firstChunk.IsZero() {
				firstChunk = time.Now()
				firstToken = firstChunk.Sub(c.admitted)
			}
			chunks++
			relayed += len(ev.Chunk.Delta)
			text.Write([]byte(ev.Chunk.Delta))
			err := begin()
			if err == nil {
				err = snk.Delta(sink.Delta{Text: ev.Chunk.Delta, Logprobs: ev.Chunk.Logprobs})
			}
			if err != nil {
				stream.Cancel()
				log.Info("consumer went away; job cancelled", "chunks", chunks, "err", err)
				return
			}
		case ev.Done != nil:
			g.observe(c, job, stream.Provider().Key, ev.Done, firstChunk, chunks)
			g.finish(ctx, c, job, stream, ev.Done, text, relayed, firstToken, begin, snk, log)
			return
		default:
			e := jobFailure(ev.Err, chunks)
			log.Warn("job failed", "err", ev.Err, "chunks", chunks)
			snk.Fail(e)
			return
		}
	}
}

// finish verifies the provider's receipt, countersigns and stores it, and
// only then ends the consumer's stream: a consumer never sees a complete
// answer without a stored receipt.
func (g *Gateway) finish(ctx context.Context, c *call, job *protocol.Job, stream *hub.Stream, d *protocol.Done, text hash.Hash, relayed int,
	firstToken time.Duration, begin func() error, snk sink.Sink, log *slog.Logger) {
	var responseHash receipt.Hash
	text.Sum(responseHash[:0])
	now := time.Now()
	r, err := job.Terms.Receipt(stream.Provider().Key, d.Usage, responseHash, d.EndUnixMs)
	if err == nil {
		err = checkUsage(&job.Request, d.Usage, relayed)
	}
	if err == nil && d.EndUnixMs > now.Add(5*time.Minute).UnixMilli() {
		err = errors.New("receipt end time is in the future")
	}
	if err == nil {
		err = r.Validate()
	}
	if err == nil {
		err = receipt.VerifyProvider(&r, d.ReceiptSignature)
	}
	if err != nil {
		log.Warn("provider receipt rejected", "err", err)
		snk.Fail(apierr.Upstream("The provider returned an invalid receipt for this request, so it is not billed; please retry."))
		return
	}
	signed := receipt.Signed{Receipt: r, ProviderSignature: d.ReceiptSignature, GatewaySignature: receipt.SignGateway(g.cfg.Key, &r)}
	// The tokens were delivered: record the receipt even if the consumer
	// has just gone away.
	if err := g.cfg.Store.SaveReceipt(context.WithoutCancel(ctx), signed); err != nil {
		log.Error("could not store receipt", "err", err)
		snk.Fail(apierr.Internal("The gateway could not record the receipt for this request; it is not billed. Please retry."))
		return
	}
	if c.hold != nil {
		c.hold.charged(r.Amount)
		g.settle.stored()
	}
	total := now.Sub(c.admitted)
	final := sink.Final{FinishReason: d.FinishReason, Usage: d.Usage, Total: total, FirstToken: firstToken, Eval: total - firstToken}
	err = begin()
	if err == nil {
		err = snk.End(final)
	}
	if err != nil {
		log.Info("consumer went away before the end of the answer; the receipt stands for the tokens relayed", "err", err)
	}
	log.Info("request served", "prompt_tokens", d.Usage.PromptTokens, "completion_tokens", d.Usage.CompletionTokens,
		"amount", r.Amount.String(), "ttft_ms", firstToken.Milliseconds(), "total_ms", total.Milliseconds())
}

// jobFailure maps a stream's error to what the consumer sees.
func jobFailure(err error, chunks int) *apierr.Error {
	var je *hub.JobError
	switch {
	case errors.As(err, &je):
		switch je.Code {
		case protocol.CodeBusy:
			return apierr.Overloaded("The provider had no free slot; please retry.")
		case protocol.CodeBadRequest:
			return apierr.Invalid("", "The provider's model server rejected the request: %s", je.Message)
		case protocol.CodeModelNotFound:
			return apierr.Unavailable("model_unavailable", "The provider no longer serves this model; please retry.")
		case protocol.CodeDeadline:
			return &apierr.Error{Status: http.StatusGatewayTimeout, Type: "server_error", Code: "timeout", Message: "The provider did not finish within the gateway's job timeout; the partial answer is not billed."}
		}
		return apierr.Upstream("The provider failed while generating: %s", je.Message)
	case errors.Is(err, hub.ErrProviderLost):
		return apierr.Upstream("The provider disconnected after %d chunks; the partial answer is not billed. Please retry.", chunks)
	case errors.Is(err, hub.ErrSlowConsumer):
		return apierr.Upstream("The response was read too slowly and was cancelled.")
	}
	return apierr.Upstream("The provider failed: %v", err)
}

// place finds a provider with a free slot and dispatches the job, waiting in
// the queue while every provider of the model is busy.
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
		changed := h.Changed() // before the snapshot, so no change is missed
		choice, err := g.sched.Pick(candidates(h.Snapshot()), &c.sched)
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
				return s, job, hold, nil
			}
			hold.release()
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
			return nil, nil, nil, apierr.Unavailable("cancelled", "The request was cancelled while queued.")
		}
	}
}

// unplaceable is the 503 for a request no provider can take and none
// will by merely finishing a job.
func unplaceable(u *scheduler.Unplaceable) *apierr.Error {
	if u.NotAllowed > 0 && u.NotAllowed+u.Excluded()+u.Paused == u.Offering && u.Paused == 0 {
		return apierr.Unavailable("no_allowed_provider", "No provider can serve this request with weights the network allows for this model (%s). Try again later.", u.Error())
	}
	if u.Excluded() > 0 {
		return apierr.Unavailable("no_matching_provider", "No provider can serve this request within its routing preferences (%s). "+
			"Relax the request's \"provider\" preferences, or try again later.", u.Error())
	}
	return apierr.Unavailable("providers_paused", "No provider can serve this request now (%s). Try again later.", u.Error())
}

// hold reserves the request's worst-case cost at the chosen provider's
// consumer prices; nil without a ledger.
func (g *Gateway) hold(ctx context.Context, c *call, choice scheduler.Choice) (*reservation, *apierr.Error) {
	if g.funds == nil {
		return nil, nil
	}
	cost, err := worstCost(&c.req, choice.PricePrompt, choice.PriceCompletion)
	if err != nil {
		return nil, apierr.Invalid("max_tokens", "This request's worst-case cost does not fit in an amount: %v", err)
	}
	what := fmt.Sprintf("max_tokens %d at %s/Mtok output, prompt at %s/Mtok", c.req.Options.MaxTokens, choice.PriceCompletion, choice.PricePrompt)
	return g.funds.reserve(ctx, c.key.Account, cost, what)
}

// why describes why a request waits: u when the scheduler said, else the
// hub's current state for the model.
func (g *Gateway) why(c *call, u *scheduler.Unplaceable) string {
	if u == nil {
		if u = g.sched.Explain(candidates(g.cfg.Hub.Snapshot()), &c.sched); u == nil {
			return fmt.Sprintf("model %q: every provider was busy a moment ago", c.asked)
		}
	}
	return u.Error()
}

// observe feeds the scheduler the speed of a finished job. With two chunks
// or more the gateway's own clock splits time to first token from
// generation; a buffered answer arrives in one chunk, so the provider's
// reported split is used, bounded by the total the gateway measured (a
// provider can only move time between the two, not shorten it).
func (g *Gateway) observe(c *call, job *protocol.Job, provider keys.PublicKey, d *protocol.Done, firstChunk time.Time, chunks int) {
	now := time.Now()
	var o scheduler.Observation
	tokens := d.Usage.CompletionTokens
	var first, gen time.Duration
	switch {
	case chunks >= 2:
		first, gen = firstChunk.Sub(c.dispatched), now.Sub(firstChunk)
	case d.Timings.FirstTokenUs >= 0 && d.Timings.TotalUs >= d.Timings.FirstTokenUs:
		total := now.Sub(c.dispatched)
		first = min(time.Duration(d.Timings.FirstTokenUs)*time.Microsecond, total)
		gen = total - first
	default:
		return
	}
	o.FirstToken, o.HasFirstToken = first, first >= 0
	if tokens >= 2 && gen > 0 {
		o.TokensPerSecond = float64(tokens-1) / gen.Seconds()
	}
	g.sched.Observe(provider, job.Request.Model, o)
}

func (g *Gateway) knownModel(name string) bool {
	h := g.cfg.Hub
	base, _ := strings.CutSuffix(name, ":latest")
	return h.KnownModel(name) || h.KnownModel(base) || h.KnownModel(base+":latest")
}

// job builds the job and its receipt terms for the chosen provider.
func (g *Gateway) job(c *call, choice scheduler.Choice) *protocol.Job {
	req := c.req
	req.Model = choice.Model.Name // the provider's exact name, e.g. "tiny:latest" for "tiny"
	return &protocol.Job{
		ID:             c.id,
		Request:        req,
		DeadlineUnixMs: c.admitted.Add(g.cfg.JobTimeout).UnixMilli(),
		Terms: protocol.Terms{
			ChainID:                g.cfg.ChainID,
			RequestID:              c.id,
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

func candidates(infos []hub.Info) []scheduler.Candidate {
	out := make([]scheduler.Candidate, len(infos))
	for i, in := range infos {
		out[i] = scheduler.Candidate{Key: in.Key, Models: in.Capabilities.Models, Slots: in.Capabilities.Slots, InFlight: in.InFlight, Paused: in.Paused}
	}
	return out
}
