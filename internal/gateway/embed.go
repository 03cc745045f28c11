package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/idlegrid/idlegrid/internal/gateway/api/ollama"
	"github.com/idlegrid/idlegrid/internal/gateway/api/openai"
	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/hub"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/receipt"
	"github.com/idlegrid/idlegrid/internal/scheduler"
	"github.com/idlegrid/idlegrid/internal/store"
)

// Embeddings. An embed request is one job (protocol.KindEmbed) on one
// provider, which answers every vector before done; nothing reaches the
// consumer until the gateway holds the receipt, so a provider that fails
// is simply replaced (up to MaxAttempts) and a failed job costs nothing.
// The receipt bills prompt tokens only, over the response hash of the
// vectors as relayed (protocol.EmbeddingHasher), and the usage bound of
// meter.go caps the prompt tokens a provider may claim.

// handleOpenAIEmbeddings serves POST /v1/embeddings.
func (g *Gateway) handleOpenAIEmbeddings(w http.ResponseWriter, r *http.Request) {
	key, body, ok := g.admit(w, r, apierr.WriteOpenAI)
	if !ok {
		return
	}
	p, e := openai.ParseEmbeddings(body)
	if e != nil {
		apierr.WriteOpenAI(w, e)
		return
	}
	prefs, e := keyPreferences(key, p.Provider, p.ProviderObject)
	if e != nil {
		apierr.WriteOpenAI(w, e)
		return
	}
	session := r.Header.Get(SessionHeader)
	if session == "" {
		session = p.User
	}
	g.serve(w, r, placement{key: key, body: body, req: &p.Request, prefs: prefs, format: apierr.WriteOpenAI}, func() {
		ans, e := g.embed(r.Context(), key, p.Request, receipt.Sum(body), route{prefs: prefs, session: session})
		if e != nil {
			apierr.WriteOpenAI(w, e)
			return
		}
		w.Header().Set("X-Request-Id", ans.id)
		openai.WriteEmbeddings(g.consumerWriter(w), openai.NewEmbeddingsResponse(p, p.Request.Model, ans.vectors, ans.promptTokens))
	})
}

// handleOllamaEmbed serves POST /api/embed and, legacy, /api/embeddings.
func (g *Gateway) handleOllamaEmbed(legacy bool) http.HandlerFunc {
	parse := ollama.ParseEmbed
	if legacy {
		parse = ollama.ParseEmbeddings
	}
	return func(w http.ResponseWriter, r *http.Request) {
		key, body, ok := g.admit(w, r, apierr.WriteOllama)
		if !ok {
			return
		}
		p, e := parse(body)
		if e != nil {
			apierr.WriteOllama(w, e)
			return
		}
		if len(p.Request.Input) == 0 {
			// Nothing to embed, as Ollama answers it, for a model that exists.
			if !g.servesModel(r.Context(), p.Request.Model) {
				apierr.WriteOllama(w, apierr.ModelNotFound(p.Request.Model))
				return
			}
			writeOllamaEmbed(g.consumerWriter(w), p, legacy, embedAnswer{}, 0)
			return
		}
		prefs, e := keyPreferences(key, scheduler.Preferences{}, nil) // Ollama's API has no "provider" member
		if e != nil {
			apierr.WriteOllama(w, e)
			return
		}
		g.serve(w, r, placement{key: key, body: body, req: &p.Request, prefs: prefs, format: apierr.WriteOllama}, func() {
			start := time.Now()
			ans, e := g.embed(r.Context(), key, p.Request, receipt.Sum(body), route{prefs: prefs, session: r.Header.Get(SessionHeader)})
			if e != nil {
				apierr.WriteOllama(w, e)
				return
			}
			w.Header().Set("X-Request-Id", ans.id)
			writeOllamaEmbed(g.consumerWriter(w), p, legacy, ans, time.Since(start))
		})
	}
}

// writeOllamaEmbed writes an embed answer in /api/embed's shape, or in
// the legacy /api/embeddings one (the first vector alone).
func writeOllamaEmbed(w http.ResponseWriter, p ollama.EmbedParams, legacy bool, ans embedAnswer, took time.Duration) {
	if legacy {
		var v []float32
		if len(ans.vectors) > 0 {
			v = ans.vectors[0]
		}
		ollama.WriteLegacyEmbedding(w, v)
		return
	}
	ollama.WriteEmbed(w, p.Request.Model, ans.vectors, ans.promptTokens, took)
}

// embedAnswer is what an embed request got: one vector per input, in
// order, and the prompt tokens its receipt billed, under the receipt's
// request id (the X-Request-Id header of the answer).
type embedAnswer struct {
	id           string
	vectors      [][]float32
	promptTokens uint64
}

// runnable drops from infos the providers that cannot run req's kind of
// job: agents older than protocol.EmbedSince take an embed job for a
// protocol error.
func runnable(req *protocol.Request, infos []hub.Info) []hub.Info {
	if req.Kind != protocol.KindEmbed {
		return infos
	}
	return slices.DeleteFunc(slices.Clone(infos), func(in hub.Info) bool { return in.ProtocolVersion < protocol.EmbedSince })
}

// embed places an embed request and returns its vectors once their
// receipt is stored.
func (g *Gateway) embed(ctx context.Context, key store.APIKey, req protocol.Request, reqHash receipt.Hash, rt route) (embedAnswer, *apierr.Error) {
	c := &call{id: requestID("emb-"), asked: req.Model, key: key, req: req, reqHash: reqHash, admitted: time.Now()}
	if e := g.embeddable(c); e != nil {
		return embedAnswer{}, e
	}
	c.sched = g.sched.NewRequest(&c.req, rt.prefs, rt.session)
	c.seg, c.segID = c.req, c.id
	dctx, cancel := context.WithDeadline(ctx, c.admitted.Add(g.cfg.JobTimeout))
	defer cancel()
	var failure *apierr.Error
	for attempt := 1; ; attempt++ {
		stream, job, hold, e := g.place(dctx, c)
		if e != nil {
			if failure != nil {
				e = noTakeover(failure, e)
			}
			return embedAnswer{}, e
		}
		ans, e, retry := g.embedJob(ctx, dctx, c, stream, job, hold)
		hold.release()
		if e == nil {
			return ans, nil
		}
		if !retry || attempt >= g.cfg.MaxAttempts || dctx.Err() != nil {
			return embedAnswer{}, e
		}
		failure = e
		c.sched.Exclude = append(c.sched.Exclude, stream.Provider().Key)
		g.log.Info("provider failed an embed job; moving the request", "request_id", c.id, "provider", stream.Provider().Key.String(), "attempt", attempt, "err", e.Message)
	}
}

// embeddable refuses up front an embed request for a model whose
// connected providers all run agents too old for embeddings.
func (g *Gateway) embeddable(c *call) *apierr.Error {
	old := 0
	for _, in := range g.cfg.Hub.Snapshot() {
		if !slices.ContainsFunc(in.Capabilities.Models, func(m protocol.Model) bool { return scheduler.MatchModel(m.Name, c.req.Model) }) {
			continue
		}
		if in.ProtocolVersion >= protocol.EmbedSince {
			return nil
		}
		old++
	}
	if old == 0 {
		return nil // nobody offers it: placement says why
	}
	return apierr.Unavailable("no_provider", "No provider of %q can compute embeddings: the %d that serve it run agents older than protocol version %d. Try again later.", c.asked, old, protocol.EmbedSince)
}

// embedJob collects one embed job's vectors and receipt. It returns the
// consumer's error and whether another provider may take over.
func (g *Gateway) embedJob(ctx, dctx context.Context, c *call, stream *hub.Stream, job *protocol.Job, hold *reservation) (embedAnswer, *apierr.Error, bool) {
	provider := stream.Provider().Key
	log := g.log.With("request_id", c.id, "provider", provider.String(), "model", job.Request.Model)
	hash := protocol.NewEmbeddingHasher()
	var vectors [][]float32
	for {
		ev, err := stream.Next(dctx)
		if err != nil {
			stream.Cancel()
			if ctx.Err() != nil {
				g.health.abandoned(provider)
				return embedAnswer{}, apierr.Unavailable("cancelled", "The request was cancelled."), false
			}
			g.health.abandoned(provider)
			log.Warn("embed job deadline passed; job cancelled", "vectors", len(vectors))
			return embedAnswer{}, timeoutError(g.cfg.JobTimeout), false
		}
		switch {
		case ev.Chunk != nil:
			if err := checkVector(&job.Request, ev.Chunk, vectors); err != nil {
				stream.Cancel()
				g.health.failure(provider)
				log.Warn("provider sent a bad embedding; job cancelled", "err", err)
				return embedAnswer{}, apierr.Upstream("The provider sent a malformed embedding (%v).", err), true
			}
			hash.Add(ev.Chunk.Embedding)
			vectors = append(vectors, ev.Chunk.Embedding)
		case ev.Done != nil:
			if e := g.finishEmbed(ctx, c, job, provider, hold, ev.Done, hash.Sum(), vectors, log); e != nil {
				return embedAnswer{}, e, false
			}
			return embedAnswer{id: job.ID, vectors: vectors, promptTokens: ev.Done.Usage.PromptTokens}, nil, false
		default:
			e, retry, failed := embedFailure(ev.Err)
			if failed {
				g.health.failure(provider)
			} else {
				g.health.abandoned(provider)
			}
			log.Warn("embed job failed", "err", ev.Err, "retry", retry)
			return embedAnswer{}, e, retry
		}
	}
}

// checkVector reports why ch cannot be the next vector of req after got.
func checkVector(req *protocol.Request, ch *protocol.Chunk, got [][]float32) error {
	n := len(ch.Embedding)
	switch {
	case ch.Seq != uint64(len(got)) || len(got) >= len(req.Input):
		return fmt.Errorf("vector %d of %d inputs", ch.Seq, len(req.Input))
	case n == 0:
		return errors.New("an empty vector")
	case req.Dimensions > 0 && n != req.Dimensions:
		return fmt.Errorf("%d dimensions, %d asked", n, req.Dimensions)
	case len(got) > 0 && n != len(got[0]):
		return fmt.Errorf("%d dimensions after vectors of %d", n, len(got[0]))
	}
	return nil
}

// embedFailure maps an embed job's failure to the consumer's error. A
// provider whose backend cannot embed is replaced without counting against
// it; the rest as jobFailure, where nothing was delivered yet.
func embedFailure(err error) (e *apierr.Error, retry, failed bool) {
	var je *hub.JobError
	if errors.As(err, &je) && je.Code == protocol.CodeUnsupported {
		return apierr.Unavailable("no_provider", "The provider cannot compute embeddings for this model: %s.", je.Message), true, false
	}
	return jobFailure(err, 0)
}

// finishEmbed verifies the provider's receipt for the vectors relayed
// (of response hash responseHash), countersigns and stores it, and offers
// it to the sample feed.
func (g *Gateway) finishEmbed(ctx context.Context, c *call, job *protocol.Job, provider keys.PublicKey, hold *reservation, d *protocol.Done,
	responseHash receipt.Hash, vectors [][]float32, log *slog.Logger) *apierr.Error {
	now := time.Now()
	n := len(vectors)
	r, err := job.Terms.Receipt(provider, d.Usage, responseHash, d.EndUnixMs)
	switch {
	case err != nil:
	case n != len(job.Request.Input) || d.Chunks != uint64(n):
		err = fmt.Errorf("done after %d vectors (%d claimed) for %d inputs", n, d.Chunks, len(job.Request.Input))
	default:
		err = checkProviderReceipt(job, &r, d.ReceiptSignature, d.Usage, 0, now)
	}
	if err != nil {
		g.health.failure(provider)
		log.Warn("provider receipt rejected", "err", err)
		return apierr.Upstream("The provider returned an invalid receipt for this request, so it is not billed; please retry.")
	}
	g.health.success(provider)
	signed, err := g.record(ctx, r, d.ReceiptSignature, hold)
	if err != nil {
		log.Error("could not store receipt", "err", err)
		return apierr.Internal("The gateway could not record the receipt for this request; it is not billed. Please retry.")
	}
	g.samples.offerEmbed(&job.Request, signed, vectors)
	total := now.Sub(c.admitted)
	g.cfg.Metrics.Served(c.asked, -1, total, d.Usage.PromptTokens, 0)
	log.Info("embed request served", "inputs", n, "prompt_tokens", d.Usage.PromptTokens, "amount", r.Amount.String(), "total_ms", total.Milliseconds())
	return nil
}
