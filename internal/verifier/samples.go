package verifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/gateway/samplefeed"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/verify"
)

// Judging sampled traffic. With a Key, the verifier reads the gateway's
// sample feed, proving its ledger key by signing each read. A sample that
// carries its request and text (the gateway shares them) is judged under
// the reference model of the digest its receipt names, and its verdict
// posted under samplefeed.Evidence, the hash every verifier of the sample
// uses, so that their verdicts meet in one case:
//
//   - with a Scorer (the simulator), re-scored teacher-forced and judged
//     with the re-scoring rules (verify.Judge.Rescore);
//   - otherwise (a real model server) replayed on the reference as
//     canaries are (verify.Canary.Replay, continuing from the provider's
//     prefix). A greedy sample is judged by its divergences
//     (verify.Canary.Decide) and, where the reference returns
//     log-probabilities, by the deficits of the provider's tokens at them
//     (verify.Judge.Divergences). A sampled one (temperature > 0) is
//     judged by those deficits alone, so only with log-probabilities, token
//     by token: its first Config.SampledChecks tokens cost one reference
//     call each, decoding one token from the provider's prefix (the
//     reference's prefix cache holds most of it); the tokens after them
//     are not checked.
//
// A sample of an embed request carries its vectors instead of a text: the
// reference recomputes them and each must lie within
// verify.DefaultEmbeddingMinCosine of the reference's
// (verify.Judge.Embeddings).
//
// A sample with hashes only cannot be judged; it still tells the verifier
// which providers serve which models, so canaries reach providers that it
// has not met yet.

// feedState is where the verifier stands in the feed.
type feedState struct {
	after   uint64
	gateway keys.PublicKey // learned from the gateway's answers
	chainID string
	// Read, Judged and Missed count the samples read, judged and dropped
	// by the gateway before the verifier read them; Skipped those the
	// budget left unjudged (budget.go).
	read, judged, missed, skipped uint64
}

// FeedStats is what the verifier read from the sample feed so far.
type FeedStats struct {
	Read, Judged, Missed, Skipped uint64
}

// Feed reports the verifier's sample feed counters.
func (v *Verifier) Feed() FeedStats {
	v.mu.Lock()
	defer v.mu.Unlock()
	return FeedStats{Read: v.feed.read, Judged: v.feed.judged, Missed: v.feed.missed, Skipped: v.feed.skipped}
}

// sampleRecord is the evidence the verifier keeps for a judged sample.
type sampleRecord struct {
	Sample   samplefeed.Sample `json:"sample"`
	Scores   *verify.Scores    `json:"scores,omitempty"`
	Replayed *verify.Replayed  `json:"replayed,omitempty"`
	Embedded *verify.Embedded  `json:"embedded,omitempty"`
	Verdict  verify.Verdict    `json:"verdict"`
}

func (v *Verifier) runSamples(ctx context.Context) {
	t := time.NewTicker(v.cfg.SampleInterval)
	defer t.Stop()
	for {
		if _, err := v.PullSamples(ctx); err != nil && ctx.Err() == nil {
			v.log.Warn("sample feed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// PullSamples reads the samples the gateway added since the last read,
// judges those it can and returns their verdicts. It reads the feed again
// every SampleInterval while it judges, so that a provider that joins
// while a backlog is judged is met (and its canaries start) at once, and
// its samples go ahead of the backlog.
func (v *Verifier) PullSamples(ctx context.Context) ([]Posted, error) {
	if v.cfg.Key.IsZero() {
		return nil, errors.New("verifier: reading the sample feed needs the verifier's key")
	}
	refs, err := v.cfg.Reference.Models(ctx)
	if err != nil {
		return nil, fmt.Errorf("reference models: %w", err)
	}
	queue, err := v.readFeed(ctx, refs)
	if err != nil {
		return nil, err
	}
	read := time.Now()
	var out []Posted
	for len(queue) > 0 && ctx.Err() == nil {
		if time.Since(read) >= v.cfg.SampleInterval {
			more, rerr := v.readFeed(ctx, refs)
			if rerr != nil {
				err = rerr // judge what is queued; say so after
			}
			queue = v.enqueue(queue, more)
			read = time.Now()
		}
		s := queue[0]
		queue = queue[1:]
		v.mu.Lock()
		budgeted := v.takeSelected(s.Seq)
		v.mu.Unlock()
		if p, ok := v.judgeSample(ctx, &s, refs, budgeted); ok {
			out = append(out, p)
		}
	}
	return out, err
}

// readFeed reads every page the gateway holds after the last read, meets
// their providers (a new one's canaries start at once) and returns the
// samples the budget keeps (budget.go) in the order to judge them.
func (v *Verifier) readFeed(ctx context.Context, refs []backend.Model) ([]samplefeed.Sample, error) {
	var all []samplefeed.Sample
	for {
		v.mu.Lock()
		after := v.feed.after
		v.mu.Unlock()
		page, err := v.fetchSamples(ctx, after)
		if err != nil {
			return v.order(all), err
		}
		v.meet(page.Samples, refs)
		v.mu.Lock()
		v.feed.after = max(v.feed.after, page.Next)
		v.feed.read += uint64(len(page.Samples))
		v.feed.missed += page.Missed
		v.observeServed(&page)
		all = append(all, v.selectSamples(page.Samples)...)
		v.mu.Unlock()
		if len(page.Samples) < samplefeed.MaxPage {
			return v.order(all), nil
		}
	}
}

// order sorts a page of samples for judging: those of providers on
// probation before the others, and greedy samples before sampled ones:
// they are cheap to judge and catch most; sampled ones cost a reference
// call per token checked. The sort is stable, so older samples go first.
// Pages read later queue behind (PullSamples).
func (v *Verifier) order(samples []samplefeed.Sample) []samplefeed.Sample {
	v.mu.Lock()
	defer v.mu.Unlock()
	later := func(s *samplefeed.Sample) int {
		k := 0
		if v.audited[s.Receipt.Receipt.Provider] >= v.cfg.ProbationCases {
			k += 2
		}
		if v.sampled(s) {
			k++
		}
		return k
	}
	slices.SortStableFunc(samples, func(a, b samplefeed.Sample) int { return later(&a) - later(&b) })
	return samples
}

// enqueue puts a newly read page behind the queue, in its own order:
// only probation moves ahead of older samples, so a stream of new greedy
// samples cannot starve the sampled ones already waiting.
func (v *Verifier) enqueue(queue, page []samplefeed.Sample) []samplefeed.Sample {
	return v.probationFirst(append(queue, v.order(page)...))
}

// probationFirst moves the samples of providers on probation ahead of
// the others, keeping each group's order.
func (v *Verifier) probationFirst(samples []samplefeed.Sample) []samplefeed.Sample {
	v.mu.Lock()
	defer v.mu.Unlock()
	later := func(s *samplefeed.Sample) int {
		if v.audited[s.Receipt.Receipt.Provider] >= v.cfg.ProbationCases {
			return 1
		}
		return 0
	}
	slices.SortStableFunc(samples, func(a, b samplefeed.Sample) int { return later(&a) - later(&b) })
	return samples
}

// judgeSample re-scores one sample when it can: shared text, a reference
// model for its digest, log-probabilities. A budgeted sample (one the
// budget's coin selected) is judged only while the budget allows, and
// what it costs is charged to it.
func (v *Verifier) judgeSample(ctx context.Context, s *samplefeed.Sample, refs []backend.Model, budgeted bool) (Posted, bool) {
	r := &s.Receipt.Receipt
	i := slices.IndexFunc(refs, func(m backend.Model) bool { return m.Digest == r.ModelDigest })
	if i < 0 {
		return Posted{}, false // weights this verifier does not vouch for
	}
	model := refs[i].Name
	v.mu.Lock()
	if r.Gateway != v.feed.gateway {
		v.mu.Unlock()
		v.log.Warn("the feed holds a receipt another gateway signed; ignored", "request_id", r.RequestID)
		return Posted{}, false
	}
	v.see(model, r.Provider, r.ModelDigest)
	if budgeted && !v.budgetAllows() {
		v.feed.skipped++
		v.mu.Unlock()
		return Posted{}, false
	}
	v.mu.Unlock()
	if !s.Shared() {
		return Posted{}, false
	}
	var cost uint64 // reference tokens decoded to judge it
	if budgeted {
		defer func() {
			v.mu.Lock()
			v.sampleJudged(cost)
			v.mu.Unlock()
		}()
	}
	req := *s.Request
	req.Model = model
	resp := verify.Response{FinishReason: s.FinishReason, Usage: protocol.Usage{PromptTokens: r.PromptTokens, CompletionTokens: r.CompletionTokens}}
	if s.Text != nil {
		resp.Text = *s.Text
	}
	rec := sampleRecord{Sample: *s}
	if req.Kind == protocol.KindEmbed {
		e, verdict, ok := v.judgeEmbeddings(ctx, req, s.Embeddings, resp.Usage)
		if !ok {
			return Posted{}, false
		}
		rec.Embedded, rec.Verdict = &e, verdict
	} else if v.cfg.Scorer != nil {
		sc, err := v.cfg.Scorer.Score(ctx, req, resp.Text)
		if err != nil {
			v.log.Warn("could not re-score a sample; abstaining", "request_id", r.RequestID, "err", err)
			return Posted{}, false
		}
		if rec.Verdict, err = v.cfg.Judge.Rescore(req, resp, sc); err != nil {
			v.log.Warn("could not judge a sample; abstaining", "request_id", r.RequestID, "err", err)
			return Posted{}, false
		}
		rec.Scores = &sc
	} else {
		rp, verdict, ok := v.replaySample(ctx, req, resp, budgeted)
		cost = uint64(rp.RefDecoded)
		if !ok {
			return Posted{}, false
		}
		rec.Replayed, rec.Verdict = &rp, verdict
	}
	verdict := rec.Verdict
	raw, _ := json.MarshalIndent(rec, "", " ")
	open := opening{receipts: []ledger.BatchReceipt{ledger.NewBatchReceipt(&s.Receipt)}}
	p := v.record(ctx, Posted{Source: "sample", Provider: r.Provider, Model: model, Digest: r.ModelDigest, Evidence: samplefeed.Evidence(r), Verdict: verdict, Responses: 1}, raw, open)
	v.mu.Lock()
	v.feed.judged++
	// A sample's verdict opens a case on the ledger like a canary case
	// does, and the gateway's probation counts both: the provider's pair
	// moves through probation with it.
	v.audited[r.Provider]++
	if pr := v.pairs[pairKey(r.Provider, r.ModelDigest)]; pr != nil {
		pr.cases++
	}
	v.mu.Unlock()
	v.decided(r.Provider, r.ModelDigest, verdict.Pass)
	return p, true
}

// judgeEmbeddings judges the vectors got that a provider answered to the
// embed request req by recomputing them on the reference (verify.Embed,
// Judge.Embeddings); ok is false when it cannot (a reference that does
// not embed, a recomputation that failed): the verifier abstains.
func (v *Verifier) judgeEmbeddings(ctx context.Context, req protocol.Request, got [][]float32, usage protocol.Usage) (verify.Embedded, verify.Verdict, bool) {
	ref, ok := v.cfg.Reference.(backend.Embedder)
	if !ok {
		v.log.Warn("the reference cannot compute embeddings; embed samples are not judged")
		return verify.Embedded{}, verify.Verdict{}, false
	}
	e, err := verify.Embed(ctx, ref, req, got)
	if err != nil {
		v.log.Warn("could not recompute a sample's embeddings; abstaining", "err", err)
		return verify.Embedded{}, verify.Verdict{}, false
	}
	return e, v.cfg.Judge.Embeddings(len(got), usage, e), true
}

// sampled reports whether s was generated at a temperature above 0.
func (v *Verifier) sampled(s *samplefeed.Sample) bool {
	if s.Request == nil {
		return false
	}
	if t := s.Request.Options.Temperature; t != nil {
		return *t > 0
	}
	return *v.cfg.DefaultTemperature > 0
}

// meet records which providers serve which of the reference's models
// with which weights, from the receipts of samples.
func (v *Verifier) meet(samples []samplefeed.Sample, refs []backend.Model) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for i := range samples {
		r := &samples[i].Receipt.Receipt
		if j := slices.IndexFunc(refs, func(m backend.Model) bool { return m.Digest == r.ModelDigest }); j >= 0 && r.Gateway == v.feed.gateway {
			v.see(refs[j].Name, r.Provider, r.ModelDigest)
		}
	}
}

// replaySample judges a sample on a reference without a Scorer; ok is
// false when it cannot (a sampled answer without log-probabilities, a
// replay that failed): the verifier abstains. The replay it returns
// counts what it cost either way.
func (v *Verifier) replaySample(ctx context.Context, req protocol.Request, resp verify.Response, budgeted bool) (verify.Replayed, verify.Verdict, bool) {
	temp := *v.cfg.DefaultTemperature
	if t := req.Options.Temperature; t != nil {
		temp = *t
	}
	greedy := !(temp > 0)
	v.mu.Lock()
	noLogprobs := v.noLogprobs
	v.mu.Unlock()
	if !greedy && noLogprobs {
		return verify.Replayed{}, verify.Verdict{}, false
	}
	c := v.cfg.Canary
	if !greedy {
		// Token by token: SampledChecks calls of one token each.
		c.Step, c.MaxReplays = 1, v.cfg.SampledChecks
	}
	rp, err := v.replay(ctx, c, v.cfg.Reference, req, resp, budgeted)
	v.mu.Lock()
	if greedy {
		v.costs.Greedy += rp.Replays
		v.costs.GreedyDecoded += uint64(rp.RefDecoded)
	} else {
		v.costs.Checks += rp.Replays
		v.costs.CheckDecoded += uint64(rp.RefDecoded)
	}
	v.mu.Unlock()
	if err != nil {
		v.log.Warn("could not replay a sample; abstaining", "err", err)
		return rp, verify.Verdict{}, false
	}
	if !rp.Logprobs && v.cfg.Canary.TopLogprobs > 0 && rp.Replays > 0 {
		v.mu.Lock()
		first := !v.noLogprobs
		v.noLogprobs = true
		v.mu.Unlock()
		if first {
			v.log.Warn("the reference returns no log-probabilities: greedy samples are judged by replay alone, sampled ones (temperature > 0) not at all")
		}
	}
	j := v.cfg.Judge
	j.DefaultTemperature = *v.cfg.DefaultTemperature
	if !greedy {
		if !rp.Logprobs {
			return rp, verify.Verdict{}, false
		}
		return rp, j.Divergences(req, rp), true
	}
	verdict := v.cfg.Canary.Decide([]verify.Replayed{rp})
	if verdict.Pass && rp.Logprobs {
		verdict = j.Divergences(req, rp)
	}
	return rp, verdict, true
}

// fetchSamples reads one page after seq, signing the request; the first
// read learns the gateway's key and chain from its refusal.
func (v *Verifier) fetchSamples(ctx context.Context, after uint64) (samplefeed.Page, error) {
	target := samplefeed.Path + "?after=" + strconv.FormatUint(after, 10) + "&limit=" + strconv.Itoa(samplefeed.MaxPage) + "&" + samplefeed.QueryEmbeddings + "=1"
	for attempt := 0; ; attempt++ {
		v.mu.Lock()
		gw, chainID := v.feed.gateway, v.feed.chainID
		v.mu.Unlock()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(v.cfg.Gateway, "/")+target, nil)
		if err != nil {
			return samplefeed.Page{}, err
		}
		if !gw.IsZero() {
			samplefeed.Sign(req.Header, v.cfg.Key, chainID, gw, http.MethodGet, target, time.Now())
		}
		resp, err := v.cfg.HTTP.Do(req)
		if err != nil {
			return samplefeed.Page{}, err
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		resp.Body.Close()
		if err != nil {
			return samplefeed.Page{}, err
		}
		if resp.StatusCode == http.StatusOK && !gw.IsZero() {
			return samplefeed.ParsePage(b)
		}
		learned, lerr := keys.ParsePublicKey(resp.Header.Get(samplefeed.HeaderGateway))
		newChain := resp.Header.Get(samplefeed.HeaderChain)
		if attempt == 0 && lerr == nil && newChain != "" && (learned != gw || newChain != chainID) {
			// The first read, or the gateway's key or chain changed: sign
			// for what it says and try again.
			v.mu.Lock()
			v.feed.gateway, v.feed.chainID = learned, newChain
			v.mu.Unlock()
			continue
		}
		return samplefeed.Page{}, fmt.Errorf("sample feed: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
}

// Known lists the providers the verifier has seen serving model, in its
// canaries' receipts or in samples.
func (v *Verifier) Known(model string) []keys.PublicKey {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.known[model])
}
