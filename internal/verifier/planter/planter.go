// Package planter plants known samples into a gateway's sample feed to
// test the verifiers: a verification role that the gateway's process runs
// beside settlement, talking to the gateway through Gateway.
package planter

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	mathrand "math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/gateway"

	"github.com/idlegrid/idlegrid/internal/gateway/samplefeed"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/receipt"
	"github.com/idlegrid/idlegrid/internal/verify"
)

// Planted samples test the verifiers. Now and then the planter makes a
// sample whose right verdict it knows — the honest reference's own answer
// (known-good) or made-up text in the model's words (known-bad), each
// checked with the reference's judge before it is used —, settles its
// receipt (a case names settled receipts only; the gateway's stake pays
// it, as for a consumer who cannot), commits H(evidence ‖ verdict ‖ salt)
// on the ledger, and only once that commitment is in a block puts the
// sample into the feed, where it looks like any other. Halfway between
// the case's opening and its maturity the planter reveals the verdict and
// salt; at maturity the ledger slashes every verifier that judged it
// wrongly, and the case never counts against the provider it names. A
// plant no verifier judged is revealed (retired) before the ledger's
// plant_reveal_blocks run out: an unrevealed commitment costs stake.
//
// A planted receipt needs a provider's signature: the planter signs with
// a provider key of the gateway's operator (registered on the ledger),
// ideally one that also serves real traffic, so that its samples do not
// stand out by their provider.

// Config configures a Planter.
type Config struct {
	// Every is the pause between planted samples.
	Every time.Duration
	// BadShare is the share of known-bad samples (default 0.5).
	BadShare float64
	// Reference is the honest model, Scorer its log-probabilities.
	Reference backend.Backend
	Scorer    verify.Scorer
	// Judge labels the samples (default verify.DefaultJudge): a sample is
	// planted only when the judge agrees with the label it was made for.
	Judge verify.Judge
	// Provider signs planted receipts: a provider key registered on the
	// ledger (the case of a planted sample names it).
	Provider keys.PrivateKey
	// Ledger takes the plant and reveal transactions (signed with the
	// gateway's key) and answers where the cases stand.
	Ledger Chain
	// Logger gets the planter's log (default: none).
	Logger *slog.Logger

	// Seed picks the prompts; MaxTokens caps the answers (default 64);
	// Expire drops a plant no verifier judged (default 30 min).
	Seed      uint64
	MaxTokens int
	Expire    time.Duration
}

// Chain is the ledger as the planter uses it.
type Chain interface {
	Send(ctx context.Context, tx ledger.Tx) (*chainrpc.TxResult, error)

	Case(ctx context.Context, evidence receipt.Hash) (ledger.Case, error)
	Params(ctx context.Context) (ledger.Params, error)
	// EpochState tells the chain's height.
	EpochState(ctx context.Context) (chainrpc.EpochInfo, error)
}

// Gateway is the gateway whose feed the planter plants into: its
// providers' offers, its identity and countersignature for a planted
// receipt, and the feed's insertion.
type Gateway interface {
	Offers() []gateway.Offer
	ChainID() string
	Key() keys.PublicKey
	Countersign(r *receipt.Receipt) keys.Signature
	SharesSampleText() bool
	AddSample(s samplefeed.Sample) (uint64, error)
}

var _ Gateway = (*gateway.Gateway)(nil)

// Planter plants known samples into a gateway's feed and reveals them.
type Planter struct {
	g        Gateway
	cfg      Config
	log      *slog.Logger
	consumer keys.Address // the account planted receipts bill

	mu      sync.Mutex
	n       int
	pending []plant
}

// plant is a planted sample awaiting its reveal.
type plant struct {
	evidence  receipt.Hash
	pass      bool
	salt      receipt.Hash
	at        time.Time
	committed uint64 // the height of the commitment
}

// Planted is one planted sample.
type Planted struct {
	Seq      uint64
	Evidence receipt.Hash
	Pass     bool
}

// New returns a planter for g's feed, which must share texts (verifiers
// cannot judge a sample without them).
func New(g Gateway, cfg Config) (*Planter, error) {
	switch {
	case !g.SharesSampleText():
		return nil, errors.New("planter: planted samples need a sample feed that shares texts")
	case cfg.Reference == nil || cfg.Scorer == nil:
		return nil, errors.New("planter: a reference backend with log-probabilities is required to label samples")
	case cfg.Provider.IsZero() || cfg.Ledger == nil:
		return nil, errors.New("planter: a provider key and a ledger are required")
	}
	if cfg.BadShare <= 0 || cfg.BadShare > 1 {
		cfg.BadShare = 0.5
	}
	if cfg.Judge == (verify.Judge{}) {
		cfg.Judge = verify.DefaultJudge()
	}
	if cfg.MaxTokens <= 0 {
		cfg.MaxTokens = 64
	}
	if cfg.Expire <= 0 {
		cfg.Expire = 30 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	consumer, err := keys.Generate()
	if err != nil {
		return nil, err
	}
	return &Planter{g: g, cfg: cfg, log: cfg.Logger.With("role", "planter"), consumer: consumer.Public().Address()}, nil
}

// Run plants a sample every cfg.Every and reveals decided cases until ctx
// ends.
func (p *Planter) Run(ctx context.Context) {
	every := p.cfg.Every
	if every <= 0 {
		every = 10 * time.Minute
	}
	plantT, revealT := time.NewTicker(every), time.NewTicker(250*time.Millisecond)
	defer plantT.Stop()
	defer revealT.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-plantT.C:
			if s, err := p.Plant(ctx, mathrand.Float64() >= p.cfg.BadShare); err != nil && ctx.Err() == nil {
				p.log.Warn("could not plant a sample", "err", err)
			} else if err == nil {
				p.log.Info("planted a sample", "seq", s.Seq, "evidence", s.Evidence.String())
			}
		case <-revealT.C:
			if _, err := p.Reveal(ctx); err != nil && ctx.Err() == nil {
				p.log.Warn("could not reveal planted samples", "err", err)
			}
		}
	}
}

// Plant makes one sample that the reference's judge passes (pass) or
// fails, commits to it on the ledger and puts it into the feed.
func (p *Planter) Plant(ctx context.Context, pass bool) (Planted, error) {
	p.mu.Lock()
	i := p.n
	p.n++
	p.mu.Unlock()
	models, err := p.cfg.Reference.Models(ctx)
	if err != nil {
		return Planted{}, fmt.Errorf("planter: reference models: %w", err)
	}
	ref, served, ok := p.servedModel(models, i)
	if !ok {
		return Planted{}, errors.New("planter: no connected provider serves a model of the reference")
	}
	mix := verify.DefaultPromptMix(ref.Name)
	mix.Seed = p.cfg.Seed + 7
	req := mix.Traffic(i)
	if req.Options.MaxTokens <= 0 || req.Options.MaxTokens > p.cfg.MaxTokens {
		req.Options.MaxTokens = p.cfg.MaxTokens
	}
	var src backend.Backend = p.cfg.Reference
	if !pass {
		good, err := verify.Collect(ctx, p.cfg.Reference, req)
		if err != nil {
			return Planted{}, fmt.Errorf("planter: reference: %w", err)
		}
		src = &verify.Fabricate{Claims: models, Words: strings.Fields(good.Text), MinWords: 8, MaxWords: 40, Seed: p.cfg.Seed + uint64(i)}
	}
	resp, err := verify.Collect(ctx, src, req)
	if err != nil {
		return Planted{}, fmt.Errorf("planter: answer: %w", err)
	}
	sc, err := p.cfg.Scorer.Score(ctx, req, resp.Text)
	if err != nil {
		return Planted{}, fmt.Errorf("planter: scoring: %w", err)
	}
	v, err := p.cfg.Judge.Rescore(req, resp, sc)
	if err != nil {
		return Planted{}, fmt.Errorf("planter: judging: %w", err)
	}
	if v.Pass != pass {
		return Planted{}, fmt.Errorf("planter: a sample made to pass=%v was judged pass=%v (%s); not planted", pass, v.Pass, v.Reason)
	}
	req.Model = served.Model.Name
	signed, err := p.receipt(req, resp, served)
	if err != nil {
		return Planted{}, err
	}
	rs := []ledger.BatchReceipt{ledger.NewBatchReceipt(&signed)}
	res, err := p.cfg.Ledger.Send(ctx, ledger.Tx{Kind: ledger.KindSettleBatch, Receipts: rs, Root: ledger.BatchRoot(rs)})
	if err == nil {
		err = res.Err()
	}
	if err == nil && settleRejected(res) {
		err = errors.New("the ledger rejected the receipt")
	}
	if err != nil {
		return Planted{}, fmt.Errorf("planter: settling the planted receipt: %w", err)
	}
	evidence := samplefeed.Evidence(&signed.Receipt)
	var salt receipt.Hash
	rand.Read(salt[:])
	res, err = p.cfg.Ledger.Send(ctx, ledger.Tx{Kind: ledger.KindPlant, Evidence: ledger.PlantCommitment(evidence, pass, salt)})
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		return Planted{}, fmt.Errorf("planter: commitment: %w", err)
	}
	// The commitment is in a block: only now may a verdict open the case.
	text := resp.Text
	seq, err := p.g.AddSample(samplefeed.Sample{Receipt: signed, FinishReason: resp.FinishReason, Request: &req, Text: &text})
	if err != nil {
		return Planted{}, fmt.Errorf("planter: %w", err)
	}
	p.mu.Lock()
	p.pending = append(p.pending, plant{evidence: evidence, pass: pass, salt: salt, at: time.Now(), committed: uint64(res.Height)})
	p.mu.Unlock()
	return Planted{Seq: seq, Evidence: evidence, Pass: pass}, nil
}

// servedModel picks, round robin, a reference model whose digest a
// connected provider serves, with that provider's offer (the planter's own
// provider's when it is connected).
func (p *Planter) servedModel(models []backend.Model, i int) (backend.Model, gateway.Offer, bool) {
	offers := p.g.Offers()
	for k := range models {
		m := models[(i+k)%len(models)]
		var found *gateway.Offer
		for j := range offers {
			o := &offers[j]
			if o.Model.Digest != m.Digest {
				continue
			}
			if found == nil || o.Provider == p.cfg.Provider.Public() {
				found = o
			}
		}
		if found != nil {
			return m, *found, true
		}
	}
	return backend.Model{}, gateway.Offer{}, false
}

// plantedIDPrefix is the request id prefix of a planted sample of kind:
// consumers reach chat through /v1/chat/completions ("chatcmpl-") and
// /v1/responses ("resp_"), so chat plants take either, at random; a prefix
// never planted would tell verifiers which samples they may skip.
func plantedIDPrefix(kind protocol.Kind) string {
	switch {
	case kind == protocol.KindGenerate:
		return "cmpl-"
	case mathrand.IntN(2) == 0:
		return "resp_"
	}
	return "chatcmpl-"
}

// receipt makes the planted sample's receipt at o's prices, signed by the
// planter's provider key and countersigned by the gateway.
func (p *Planter) receipt(req protocol.Request, resp verify.Response, o gateway.Offer) (receipt.Signed, error) {
	body, _ := json.Marshal(req)
	now := time.Now()
	r := receipt.Receipt{
		Version: receipt.Version, ChainID: p.g.ChainID(), RequestID: gateway.NewRequestID(plantedIDPrefix(req.Kind)),
		Gateway: p.g.Key(), Provider: p.cfg.Provider.Public(), Consumer: p.consumer,
		Model: o.Model.Name, ModelDigest: o.Model.Digest,
		PromptTokens: resp.Usage.PromptTokens, CompletionTokens: resp.Usage.CompletionTokens,
		PricePromptPerMTok:     o.PricePrompt,
		PriceCompletionPerMTok: o.PriceCompletion,
		RequestHash:            receipt.Sum(body), ResponseHash: receipt.Sum([]byte(resp.Text)),
		StartUnixMs: now.Add(-time.Second).UnixMilli(), EndUnixMs: now.UnixMilli(),
	}
	var err error
	if r.Amount, err = receipt.ComputeAmount(r.PromptTokens, r.CompletionTokens, r.PricePromptPerMTok, r.PriceCompletionPerMTok); err != nil {
		return receipt.Signed{}, fmt.Errorf("planter: amount: %w", err)
	}
	if err := r.Validate(); err != nil {
		return receipt.Signed{}, fmt.Errorf("planter: receipt: %w", err)
	}
	return receipt.Signed{Receipt: r, ProviderSignature: receipt.SignProvider(p.cfg.Provider, &r), GatewaySignature: p.g.Countersign(&r)}, nil
}

// Reveal opens the commitments whose cases are halfway to maturity, and
// retires those no verifier judged before their reveal is due and those
// whose case matured first (an unrevealed commitment costs stake); it
// returns how many it revealed.
func (p *Planter) Reveal(ctx context.Context) (int, error) {
	p.mu.Lock()
	todo := append([]plant(nil), p.pending...)
	p.mu.Unlock()
	if len(todo) == 0 {
		return 0, nil
	}
	params, err := p.cfg.Ledger.Params(ctx)
	if err != nil {
		return 0, err
	}
	st, err := p.cfg.Ledger.EpochState(ctx)
	if err != nil {
		return 0, err
	}
	height := uint64(max(st.Height, 0))
	var errs []error
	done := map[receipt.Hash]bool{}
	revealed := 0
	for _, pl := range todo {
		c, err := p.cfg.Ledger.Case(ctx, pl.evidence)
		switch {
		case errors.Is(err, chainrpc.ErrNotFound):
			// Nobody judged it: retire the commitment before it is due,
			// or once the planter stops waiting.
			if height < pl.committed+params.PlantRevealBlocks/2 && time.Since(pl.at) < p.cfg.Expire {
				continue
			}
		case err != nil:
			errs = append(errs, err)
			continue
		case c.Planted || c.Equivocated:
			done[pl.evidence] = true
			continue
		case c.Matured:
			// Missed: the reveal only retires the commitment.
		case height < c.Opened+params.VerdictDelayBlocks/2:
			continue // verifiers are still judging it
		}
		res, err := p.cfg.Ledger.Send(ctx, ledger.Tx{Kind: ledger.KindReveal, Evidence: pl.evidence, Pass: pl.pass, Salt: pl.salt})
		if err == nil {
			err = res.Err()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("reveal %s: %w", pl.evidence, err))
			continue
		}
		done[pl.evidence] = true
		revealed++
		p.log.Info("revealed a planted sample", "evidence", pl.evidence.String(), "pass", pl.pass, "votes", len(c.Votes))
	}
	p.mu.Lock()
	kept := p.pending[:0]
	for _, pl := range p.pending {
		if !done[pl.evidence] {
			kept = append(kept, pl)
		}
	}
	p.pending = kept
	p.mu.Unlock()
	return revealed, errors.Join(errs...)
}

// settleRejected reports whether a settle-batch result rejected a receipt.
func settleRejected(res *chainrpc.TxResult) bool {
	for _, e := range res.Events {
		if e.Type == "receipt_rejected" {
			return true
		}
	}
	return false
}

// Pending is how many planted samples await their reveal.
func (p *Planter) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pending)
}
