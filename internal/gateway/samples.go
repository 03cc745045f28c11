package gateway

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/gateway/samplefeed"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// The sample feed. A share of the responses the gateway serves, picked at
// random once each receipt is stored, goes into a bounded in-memory feed
// that registered verifiers read (GET samplefeed.Path) to re-score them.
// By default a sample is its receipt and finish reason only: hashes and
// counts, no text. With SampleConfig.ShareText the gateway also hands out
// the request as the provider received it and the answer's text; that is
// the operator's choice to make for its consumers (SECURITY.md). Planted
// samples (internal/verifier/planter) enter the same feed and look the same.

// SampleConfig configures the sample feed.
type SampleConfig struct {
	// Share is the fraction of served responses sampled (0: no feed).
	Share float64
	// ShareText adds each sample's request and response text.
	ShareText bool
	// Capacity and MaxBytes bound the feed (default 4096 samples and
	// 64 MiB of shared text); the oldest samples go first.
	Capacity int
	MaxBytes int
	// MaxReplay bounds the read signatures remembered against replay, all
	// verifiers together (default 100,000); past it, reads get 429 until
	// signatures expire.
	MaxReplay int
	// Verifiers decides who may read the feed: accounts registered as
	// verifiers on the ledger, not jailed, staked at least the ledger's
	// minimum. Without it the feed refuses everyone.
	Verifiers VerifierRegistry
}

// VerifierRegistry is the ledger as the sample feed reads it.
type VerifierRegistry interface {
	Account(ctx context.Context, addr keys.Address) (chainrpc.AccountInfo, error)
	Params(ctx context.Context) (ledger.Params, error)
}

var _ VerifierRegistry = chainrpc.StateReader{}

const (
	// verifierTTL is how long the ledger's answer about a reader is kept.
	verifierTTL = 30 * time.Second
	// defaultMaxReplay bounds the signatures remembered against replay
	// (only signatures of verifiers in good standing are remembered), and
	// maxSeenPerVerifier those of one verifier within their window: a
	// verifier reading faster is refused, alone. maxVerifiers bounds the
	// cached standings of readers allowed and, apart, of those refused,
	// so that refused keys cannot push the allowed out.
	defaultMaxReplay   = 100_000
	maxSeenPerVerifier = 2_000
	maxVerifiers       = 10_000
)

// sampleFeed is the bounded feed; nil when sampling is off.
type sampleFeed struct {
	share float64
	// onProbation, when set, tells the providers on probation: every
	// response of theirs is sampled (probation.go).
	onProbation func(keys.PublicKey, string) bool

	text     bool
	capacity int
	maxBytes int
	maxSeen  int
	reg      VerifierRegistry
	chainID  string
	gateway  keys.PublicKey
	now      func() time.Time

	// served counts the completion tokens served to consumers since the
	// start (samplefeed.Page.ServedTokens): verifiers pace their audits
	// by it.
	served atomic.Uint64

	mu        sync.Mutex
	ring      []samplefeed.Sample // oldest first
	bytes     int                 // shared text in ring
	seq       uint64              // the last Seq given out
	seen      map[keys.Signature]seenSig
	seenBy    map[keys.Address]int            // signatures in seen, per verifier
	sweptAt   time.Time                       // when seen was last swept of expired signatures
	verifiers map[keys.Address]readerStanding // allowed readers
	refused   map[keys.Address]readerStanding // refused readers
}

// seenSig is a remembered signature: who signed it, and until when it
// could be replayed.
type seenSig struct {
	by    keys.Address
	until time.Time
}

// readerStanding is the ledger's cached answer about a feed reader.
type readerStanding struct {
	refused string // "" when allowed
	until   time.Time
}

func newSampleFeed(cfg SampleConfig, chainID string, gateway keys.PublicKey, now func() time.Time) (*sampleFeed, error) {
	if cfg.Share < 0 || cfg.Share > 1 || cfg.Share != cfg.Share {
		return nil, fmt.Errorf("gateway: sample share %v: want a fraction between 0 and 1", cfg.Share)
	}
	if cfg.Share == 0 {
		return nil, nil
	}
	if cfg.Capacity <= 0 {
		cfg.Capacity = 4096
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 64 << 20
	}
	if cfg.MaxReplay <= 0 {
		cfg.MaxReplay = defaultMaxReplay
	}
	return &sampleFeed{share: cfg.Share, text: cfg.ShareText, capacity: cfg.Capacity, maxBytes: cfg.MaxBytes, maxSeen: cfg.MaxReplay, reg: cfg.Verifiers, chainID: chainID, gateway: gateway, now: now,
		seen: map[keys.Signature]seenSig{}, seenBy: map[keys.Address]int{}, verifiers: map[keys.Address]readerStanding{}, refused: map[keys.Address]readerStanding{}}, nil
}

// count adds a served request's completion tokens to the count the feed
// reports.
func (f *sampleFeed) count(completionTokens uint64) {
	if f != nil {
		f.served.Add(completionTokens)
	}
}

// offer samples a served job's response with the feed's share: req is the
// request as the provider received it, signed its stored receipt, finish
// its finish reason; the job's text is the last relayed bytes of all.
func (f *sampleFeed) offer(req *protocol.Request, signed receipt.Signed, finish, all string, relayed int) {
	if f == nil || rand.Float64() >= f.share && (f.onProbation == nil || !f.onProbation(signed.Receipt.Provider, signed.Receipt.ModelDigest)) {
		return
	}
	s := samplefeed.Sample{Receipt: signed, FinishReason: finish}
	if f.text && relayed >= 0 && relayed <= len(all) {
		r, text := *req, all[len(all)-relayed:]
		s.Request, s.Text = &r, &text
	}
	f.add(s)
}

// offerEmbed samples a served embed job like offer: req as the provider
// received it and the vectors it answered, when texts are shared.
func (f *sampleFeed) offerEmbed(req *protocol.Request, signed receipt.Signed, vectors [][]float32) {
	if f == nil || rand.Float64() >= f.share && (f.onProbation == nil || !f.onProbation(signed.Receipt.Provider, signed.Receipt.ModelDigest)) {
		return
	}
	s := samplefeed.Sample{Receipt: signed, FinishReason: "stop"}
	if f.text {
		r := *req
		s.Request, s.Embeddings = &r, vectors
	}
	f.add(s)
}

// add appends s with the next sequence number and returns it.
func (f *sampleFeed) add(s samplefeed.Sample) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	s.Seq = f.seq
	size := sampleBytes(&s)
	drop := 0
	for drop < len(f.ring) && (len(f.ring)-drop >= f.capacity || f.bytes+size > f.maxBytes) {
		f.bytes -= sampleBytes(&f.ring[drop])
		drop++
	}
	if drop > 0 {
		f.ring = f.ring[:copy(f.ring, f.ring[drop:])]
	}
	f.ring = append(f.ring, s)
	f.bytes += size
	return s.Seq
}

// sampleBytes is the shared text a sample holds.
func sampleBytes(s *samplefeed.Sample) int {
	if !s.Shared() {
		return 0
	}
	n := len(s.Request.Prompt) + len(s.Request.System)
	if s.Text != nil {
		n += len(*s.Text)
	}
	for _, m := range s.Request.Messages {
		n += len(m.Content)
	}
	for _, in := range s.Request.Input {
		n += len(in)
	}
	for _, v := range s.Embeddings {
		n += 4 * len(v)
	}
	return n
}

// page returns up to limit samples after seq.
//
// Shared samples of embed requests carry their vectors only for a reader
// that asks for them (samplefeed.QueryEmbeddings): a verifier older than
// embeddings would refuse the whole page, so it gets them as hashes only.
func (f *sampleFeed) page(after uint64, limit int, embeddings bool) samplefeed.Page {
	f.mu.Lock()
	defer f.mu.Unlock()
	served := f.served.Load()
	p := samplefeed.Page{Samples: []samplefeed.Sample{}, Next: after, ServedTokens: &served, Share: f.share}
	if len(f.ring) == 0 {
		return p
	}
	if oldest := f.ring[0].Seq; oldest > after+1 {
		p.Missed = oldest - after - 1
	}
	for _, s := range f.ring {
		if s.Seq <= after {
			continue
		}
		if len(p.Samples) == limit {
			break
		}
		if !embeddings && s.Embeddings != nil {
			s.Request, s.Embeddings = nil, nil
		}
		p.Samples = append(p.Samples, s)
		p.Next = s.Seq
	}
	return p
}

// handleSamples serves the feed to registered verifiers.
func (g *Gateway) handleSamples(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(samplefeed.HeaderGateway, g.cfg.Key.Public().String())
	w.Header().Set(samplefeed.HeaderChain, g.cfg.ChainID)
	f := g.samples
	if f == nil {
		apierr.WriteOpenAI(w, apierr.NotFound("This gateway samples no responses for verifiers."))
		return
	}
	reader, e := f.authorize(r)
	if e != nil {
		apierr.WriteOpenAI(w, e)
		return
	}
	q := r.URL.Query()
	var after uint64
	if s := q.Get("after"); s != "" {
		var err error
		if after, err = strconv.ParseUint(s, 10, 64); err != nil {
			apierr.WriteOpenAI(w, apierr.Invalid("after", "after=%q is not a sequence number", s))
			return
		}
	}
	limit := 100
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > samplefeed.MaxPage {
			apierr.WriteOpenAI(w, apierr.Invalid("limit", "limit=%q: want 1 to %d", s, samplefeed.MaxPage))
			return
		}
		limit = n
	}
	p := f.page(after, limit, q.Get(samplefeed.QueryEmbeddings) == "1")
	g.log.Debug("samples read", "verifier", string(reader), "after", after, "samples", len(p.Samples))
	writeJSON(w, http.StatusOK, p)
}

// authorize checks a feed request's signature, that the ledger knows its
// key as a verifier in good standing, and only then that it is not a
// replay: a key that is not a verifier leaves nothing behind but a cached
// refusal.
func (f *sampleFeed) authorize(r *http.Request) (keys.Address, *apierr.Error) {
	a, err := samplefeed.ParseAuth(r.Header)
	if errors.Is(err, samplefeed.ErrUnsigned) {
		return "", apierr.Unauthorized(fmt.Sprintf("The sample feed is for registered verifiers: sign the request with your ledger key (headers %s, %s, %s).",
			samplefeed.HeaderVerifier, samplefeed.HeaderTime, samplefeed.HeaderSignature))
	}
	if err != nil {
		return "", apierr.Unauthorized("Bad verifier signature headers: " + err.Error())
	}
	now := f.now()
	if err := a.Check(f.chainID, f.gateway, r.Method, r.URL.RequestURI(), now); err != nil {
		return "", apierr.Unauthorized(err.Error())
	}
	addr := a.Key.Address()
	if why := f.standing(r.Context(), addr, now); why != "" {
		return "", &apierr.Error{Status: http.StatusForbidden, Type: "permission_error", Code: "not_a_verifier", Message: why}
	}
	if e := f.fresh(a.Signature, addr, now); e != nil {
		return "", e
	}
	return addr, nil
}

// fresh records sig, signed by the verifier at addr, or says why the
// request is refused: a replay, or more signatures of addr (or of all
// verifiers) within their window than the feed remembers. Signatures
// expire with the time window they are valid in.
func (f *sampleFeed) fresh(sig keys.Signature, addr keys.Address, now time.Time) *apierr.Error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, used := f.seen[sig]; used {
		return apierr.Unauthorized("This signed request was already used; sign each request anew.")
	}
	if (len(f.seen) >= f.maxSeen || f.seenBy[addr] >= maxSeenPerVerifier) && now.Sub(f.sweptAt) >= time.Second {
		f.sweptAt = now // at most once a second: a sweep walks every signature
		for s, e := range f.seen {
			if now.After(e.until) {
				delete(f.seen, s)
				if f.seenBy[e.by]--; f.seenBy[e.by] <= 0 {
					delete(f.seenBy, e.by)
				}
			}
		}
	}
	switch {
	case f.seenBy[addr] >= maxSeenPerVerifier:
		return &apierr.Error{Status: http.StatusTooManyRequests, Type: "rate_limit_error", Code: "rate_limited",
			Message: fmt.Sprintf("This verifier signed more than %d feed requests within %s; read less often.", maxSeenPerVerifier, 2*samplefeed.MaxSkew)}
	case len(f.seen) >= f.maxSeen:
		return &apierr.Error{Status: http.StatusTooManyRequests, Type: "rate_limit_error", Code: "rate_limited",
			Message: "The sample feed is read too often right now; retry later."} // refuse rather than forget
	}
	f.seen[sig] = seenSig{by: addr, until: now.Add(2 * samplefeed.MaxSkew)}
	f.seenBy[addr]++
	return nil
}

// standing says why addr may not read the feed ("" when it may), from
// the ledger, cached for verifierTTL.
func (f *sampleFeed) standing(ctx context.Context, addr keys.Address, now time.Time) string {
	f.mu.Lock()
	st, ok := f.verifiers[addr]
	if !ok {
		st, ok = f.refused[addr]
	}
	f.mu.Unlock()
	if ok && now.Before(st.until) {
		return st.refused
	}
	if f.reg == nil {
		return "This gateway has no ledger to check verifiers against."
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	why := ""
	a, err := f.reg.Account(ctx, addr)
	var p ledger.Params
	if err == nil {
		p, err = f.reg.Params(ctx)
	}
	switch {
	case errors.Is(err, chainrpc.ErrNotFound):
		why = fmt.Sprintf("%s has no account on the ledger.", addr)
	case err != nil:
		return "Could not check the verifier on the ledger; try again."
	case !a.Has(ledger.RoleVerifier):
		why = fmt.Sprintf("%s is not registered as a verifier on the ledger.", addr)
	case a.Jailed:
		why = fmt.Sprintf("%s is jailed.", addr)
	case a.Stake == 0 || a.Stake < p.MinVerifierStake:
		why = fmt.Sprintf("%s stakes %s, below the verifiers' minimum %s.", addr, a.Stake, p.MinVerifierStake)
	}
	f.mu.Lock()
	cache, other := f.verifiers, f.refused
	if why != "" {
		cache, other = f.refused, f.verifiers
	}
	delete(other, addr)
	if len(cache) >= maxVerifiers {
		clear(cache)
	}
	cache[addr] = readerStanding{refused: why, until: now.Add(verifierTTL)}
	f.mu.Unlock()
	return why
}
