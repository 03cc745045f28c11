package gateway

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"hash"
	"log/slog"
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

// call is one admitted request on its way through the relay. It may take
// several jobs: a provider that fails is replaced (see failover.go), and
// each job is one segment of the answer.
type call struct {
	id         string
	asked      string // model name as the consumer wrote it
	key        store.APIKey
	req        protocol.Request // as the consumer sent it
	sched      scheduler.Request
	reqHash    receipt.Hash
	admitted   time.Time
	dispatched time.Time // when the current job was sent to its provider

	// seg is the current segment's request: req itself, or req continued
	// after the text already delivered; segID is its job and receipt id.
	seg   protocol.Request
	segID string
}

// relay places the request, under id (requestID), on a provider and streams the result into snk,
// replacing a provider that fails before the first token and continuing on
// another one after a failure mid-answer, within the job timeout.
func (g *Gateway) relay(ctx context.Context, key store.APIKey, req protocol.Request, reqHash receipt.Hash, id string, rt route, snk sink.Sink) {
	c := &call{id: id, asked: req.Model, key: key, req: req, reqHash: reqHash, admitted: time.Now()}
	if c.req.Options.MaxTokens <= 0 {
		c.req.Options.MaxTokens = g.cfg.DefaultMaxTokens
	}
	c.sched = g.sched.NewRequest(&c.req, rt.prefs, rt.session)
	out := &answer{snk: snk, meta: sink.Meta{RequestID: c.id, Model: c.asked, Created: c.admitted}}
	// One deadline for the whole request, across every provider it takes.
	dctx, cancel := context.WithDeadline(ctx, c.admitted.Add(g.cfg.JobTimeout))
	defer cancel()
	var failure *apierr.Error // the last provider failure, when retrying
	for attempt := 1; ; attempt++ {
		if out.tokens >= c.req.Options.MaxTokens {
			// The failed job had delivered the whole allowance.
			out.complete(c)
			return
		}
		c.seg, c.segID = out.segment(c)
		stream, job, hold, e := g.place(dctx, c)
		if e != nil {
			if failure != nil {
				e = noTakeover(failure, e)
			}
			snk.Fail(e)
			return
		}
		r := g.attempt(ctx, dctx, c, stream, job, hold, out)
		hold.release() // a job that ends without a receipt costs nothing
		if r.err == nil {
			return
		}
		if !r.retry || attempt >= g.cfg.MaxAttempts || dctx.Err() != nil || !out.continuable(c) {
			snk.Fail(r.err)
			return
		}
		failure = r.err
		c.sched.Exclude = append(c.sched.Exclude, stream.Provider().Key)
		g.log.Info("provider failed; moving the request", "request_id", c.id, "provider", stream.Provider().Key.String(),
			"delivered_tokens", out.tokens, "attempt", attempt, "err", r.err.Message)
	}
}

// outcome is how one job ended: served or abandoned (err nil), or failed
// with the consumer's error and whether another provider may take over.
type outcome struct {
	err   *apierr.Error
	retry bool
}

// attempt relays one job into out. ctx is the consumer's, dctx adds the
// request's deadline.
func (g *Gateway) attempt(ctx, dctx context.Context, c *call, stream *hub.Stream, job *protocol.Job, hold *reservation, out *answer) outcome {
	provider := stream.Provider().Key
	log := g.log.With("request_id", c.id, "job", job.ID, "provider", provider.String(), "model", job.Request.Model)
	seg := segment{text: sha256.New()}
	// A job that ends mid-answer without done is billed by its latest
	// checkpoint, if it sent one (checkpoint.go).
	partial := func() { g.recordCheckpoint(ctx, job, provider, hold, &seg, log) }
	// A streamed job must show its first token within FirstTokenTimeout
	// and each later one within TokenTimeout; a buffered one arrives in one
	// piece at the end, so only the job deadline bounds it.
	streamed := !job.Request.Buffered
	for {
		wait := dctx
		var stop context.CancelFunc = func() {}
		switch {
		case streamed && seg.chunks == 0 && g.cfg.FirstTokenTimeout > 0:
			wait, stop = context.WithDeadline(dctx, c.dispatched.Add(g.cfg.FirstTokenTimeout))
		case streamed && seg.chunks > 0 && g.cfg.TokenTimeout > 0:
			wait, stop = context.WithTimeout(dctx, g.cfg.TokenTimeout)
		}
		ev, err := stream.Next(wait)
		stop()
		if err != nil {
			stream.Cancel()
			switch {
			case ctx.Err() != nil:
				g.health.abandoned(provider)
				log.Info("consumer went away; job cancelled", "chunks", seg.chunks)
				partial()
				return outcome{}
			case dctx.Err() != nil:
				g.health.abandoned(provider)
				log.Warn("job deadline passed; job cancelled", "chunks", seg.chunks)
				partial()
				return outcome{err: timeoutError(g.cfg.JobTimeout)}
			}
			g.health.failure(provider)
			if seg.chunks > 0 {
				// Stalled mid-answer: what it sent stays delivered, billed
				// as far as its last checkpoint, and another provider
				// continues.
				partial()
				out.abandon()
				log.Warn("no token in time mid-answer; job cancelled", "timeout", g.cfg.TokenTimeout, "chunks", seg.chunks)
				return outcome{err: apierr.Upstream("The provider stopped sending tokens for %s.", g.cfg.TokenTimeout), retry: true}
			}
			log.Warn("no first token in time; job cancelled", "timeout", g.cfg.FirstTokenTimeout)
			return outcome{err: apierr.Upstream("The provider sent no token within %s.", g.cfg.FirstTokenTimeout), retry: true}
		}
		switch {
		case ev.Chunk != nil && len(ev.Chunk.ToolCalls) > 0 && !job.Request.SendsTools():
			// Calls of tools the consumer never offered: nothing it could
			// run, and billed tokens it did not ask for.
			stream.Cancel()
			partial()
			out.abandon()
			g.health.failure(provider)
			log.Warn("provider sent tool calls for a request without tools; job cancelled", "chunks", seg.chunks)
			return outcome{err: apierr.Upstream("The provider sent tool calls for a request that offered no tools."), retry: true}
		case ev.Chunk != nil:
			seg.arrive(ev.Chunk, c.dispatched)
			seg.add(ev.Chunk)
			if err := out.delta(c, ev.Chunk); err != nil {
				stream.Cancel()
				g.health.abandoned(provider)
				log.Info("consumer went away; job cancelled", "chunks", seg.chunks, "err", err)
				partial() // this chunk's own checkpoint was not recorded: it did not reach the consumer
				return outcome{}
			}
			seg.keep(ev.Chunk)
		case ev.Done != nil:
			return g.finish(ctx, c, job, provider, hold, ev.Done, &seg, out, log)
		default:
			partial()
			out.abandon()
			e, retry, failed := jobFailure(ev.Err, seg.chunks)
			if failed {
				g.health.failure(provider)
			} else {
				g.health.abandoned(provider)
			}
			log.Warn("job failed", "err", ev.Err, "chunks", seg.chunks, "retry", retry)
			return outcome{err: e, retry: retry}
		}
	}
}

// auditable reports whether an answer may be offered to verifiers as a
// sample: not when tools were offered or called, nor for structured
// output. Verifiers judge a sample by scoring its text under the
// reference model or replaying it as text; a tool call is parsed out of
// what the model generated and a format constrains its sampling, so
// neither would be judged fairly (docs/verification.md).
func auditable(req *protocol.Request, out *answer) bool {
	return out.toolCalls == 0 && !req.SendsTools() && len(req.Format) == 0
}

// segment is what one job delivered.
type segment struct {
	// firstToken is when the first chunk with text or a tool call
	// arrived; arrived sums each chunk's bytes (chunkBytes) times its
	// arrival, in seconds since dispatch (bytes the gateway counts, not
	// tokens the provider claims).
	firstToken time.Time
	arrived    float64
	chunks     int
	relayed    int // bytes of text and tool calls (chunkBytes)
	tokens     int
	text       hash.Hash
	last       checkpoint // the latest checkpoint relayed, unverified
}

// arrive notes when ch arrived, for the speed measurement (observe).
func (s *segment) arrive(ch *protocol.Chunk, dispatched time.Time) {
	now := time.Now()
	n := chunkBytes(ch) // text and tool calls, as relayed counts them
	if s.firstToken.IsZero() && n > 0 {
		s.firstToken = now
	}
	s.arrived += float64(n) * now.Sub(dispatched).Seconds()
}

func (s *segment) add(ch *protocol.Chunk) {
	s.chunks++
	s.relayed += chunkBytes(ch)
	s.tokens += chunkTokens(ch)
	protocol.HashChunk(s.text, ch)
}

// toolCallMarkup is the text a model generates around each tool call
// besides its name and arguments (tags, keys, quotes), which the backend
// parses away: the completion tokens a call may count beyond its bytes.
const toolCallMarkup = 32

// chunkBytes is the generated text a chunk stands for, for the meter: its
// delta, and each tool call's name and arguments plus toolCallMarkup.
func chunkBytes(ch *protocol.Chunk) int {
	n := len(ch.Delta)
	for _, tc := range ch.ToolCalls {
		n += len(tc.Name) + len(tc.Arguments) + toolCallMarkup
	}
	return n
}

// finish verifies the provider's receipt, countersigns and stores it, and
// only then ends the consumer's stream: a consumer never sees a complete
// answer without a stored receipt.
func (g *Gateway) finish(ctx context.Context, c *call, job *protocol.Job, provider keys.PublicKey, hold *reservation, d *protocol.Done,
	seg *segment, out *answer, log *slog.Logger) outcome {
	var responseHash receipt.Hash
	seg.text.Sum(responseHash[:0])
	now := time.Now()
	r, err := job.Terms.Receipt(provider, d.Usage, responseHash, d.EndUnixMs)
	if err == nil {
		err = checkProviderReceipt(job, &r, d.ReceiptSignature, d.Usage, seg.relayed, now)
	}
	if err != nil {
		g.health.failure(provider)
		log.Warn("provider receipt rejected", "err", err)
		return outcome{err: apierr.Upstream("The provider returned an invalid receipt for this request, so it is not billed; please retry.")}
	}
	g.health.success(provider)
	g.observe(c, job, provider, d.Usage, seg, now)
	signed, err := g.record(ctx, r, d.ReceiptSignature, hold)
	stored := time.Now()
	if err != nil {
		log.Error("could not store receipt", "err", err)
		return outcome{err: apierr.Internal("The gateway could not record the receipt for this request; it is not billed. Please retry.")}
	}
	g.samples.count(d.Usage.CompletionTokens)
	if auditable(&job.Request, out) {
		g.samples.offer(&job.Request, signed, d.FinishReason, out.text.String(), seg.relayed)
	}
	total := now.Sub(c.admitted)
	usage := protocol.Usage{PromptTokens: d.Usage.PromptTokens, CompletionTokens: uint64(out.earlier) + d.Usage.CompletionTokens}
	final := sink.Final{FinishReason: d.FinishReason, Usage: usage, Total: total, FirstToken: out.firstToken, Eval: total - out.firstToken, Context: d.Context}
	err = out.begin()
	if err == nil {
		err = out.snk.End(final)
	}
	if g.cfg.OnStages != nil {
		g.cfg.OnStages(stagesOf(c, now, stored, time.Duration(d.Timings.TotalUs)*time.Microsecond))
	}
	if err != nil {
		log.Info("consumer went away before the end of the answer; the receipt stands for the tokens relayed", "err", err)
	}
	log.Info("request served", "prompt_tokens", d.Usage.PromptTokens, "completion_tokens", d.Usage.CompletionTokens,
		"earlier_tokens", out.earlier, "amount", r.Amount.String(), "ttft_ms", out.firstToken.Milliseconds(), "total_ms", total.Milliseconds())
	return outcome{}
}

// observe feeds the scheduler the speed of a finished job, measured on
// the gateway's clock alone from dispatch. The provider's reported timings
// play no part. It runs only for a receipt the gateway accepted, so the
// token count is one its meter allows.
//
// The delivered rate is completion tokens over the time to done. A
// streamed job also gives the time to its first chunk with text, and when
// its text arrived later on average than if spread evenly between the
// first token and done, that lag is added to its time: the consumer waited
// for it. So an answer held back and sent in one burst never measures faster
// than the same tokens streamed: held back whole, its first token is as
// late as its last; held back after the first token, it is slower by up
// to half its time. A buffered job (the consumer reads the answer in one
// piece, which the backend may generate in one piece) gives the rate alone.
func (g *Gateway) observe(c *call, job *protocol.Job, provider keys.PublicKey, usage protocol.Usage, seg *segment, done time.Time) {
	total := done.Sub(c.dispatched)
	if total <= 0 {
		return // a clock step
	}
	o := scheduler.Observation{Tokens: usage.CompletionTokens, Took: total}
	first := time.Duration(-1)
	if !job.Request.Buffered {
		first = total
		if !seg.firstToken.IsZero() {
			first = min(max(seg.firstToken.Sub(c.dispatched), 0), total)
		}
		o.FirstToken, o.HasFirstToken = first, true
		o.Took += heldBack(seg, first, total)
	}
	g.sched.Observe(provider, job.Request.Model, o)
	g.cfg.Metrics.Served(c.asked, first, total-max(first, 0), usage.PromptTokens, usage.CompletionTokens)
}

// heldBack is how much later seg's text arrived on average, byte by byte,
// than if it had come evenly between the first token and done (0 if not
// later).
func heldBack(seg *segment, first, total time.Duration) time.Duration {
	if seg.relayed == 0 {
		return 0
	}
	mean := seg.arrived / float64(seg.relayed)
	even := (first + total).Seconds() / 2
	return max(time.Duration((mean-even)*float64(time.Second)), 0)
}
