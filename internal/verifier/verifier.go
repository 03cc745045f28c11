// Package verifier is the verifier role (`idlegrid verify`): it sends
// canary requests through a gateway's public API like any consumer,
// learns from each answer's signed receipt which provider served it with
// which weights (digest), replays the answers against its own reference
// model, and once it holds a case's worth of canaries for a provider,
// judges them (internal/verify) and posts the verdict on the ledger with
// the canaries' settled receipts and texts, which open the case there (its
// id is ledger.CaseEvidence of the receipts); it keeps the full evidence
// on disk under that id. With its ledger key it
// also reads the gateway's sample feed and re-scores the sampled responses
// (samples.go).
//
// Canaries go out at Interval, the models taking turns, except for
// probation: a (provider, digest) pair the verifier has seen (in a
// canary's receipt or a sample) and judged in fewer than ProbationCases
// cases (a case of canaries, or a sample: each opens a case on the
// ledger, and the gateway's probation counts both) gets canaries back to
// back, pinned to it with the request's
// routing preferences (provider.order with no fallbacks), the pair with
// the fewest cases first, until it has its cases. Outside probation a
// provider audited less than the others of a model is targeted the same
// way, so new providers meet more canaries than old ones.
package verifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/gateway/api/apitypes"
	"github.com/idlegrid/idlegrid/internal/gateway/client"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/receipt"
	"github.com/idlegrid/idlegrid/internal/verify"
)

// Config configures a verifier.
type Config struct {
	// Gateway is the gateway's base URL; APIKey an ordinary consumer key
	// whose account pays for the canaries.
	Gateway string
	APIKey  string
	// Reference runs the models the verifier checks; Models are their
	// names as the gateway serves them (default: every reference model).
	Reference backend.Backend
	Models    []string
	// Post sends a verdict transaction; nil keeps verdicts local (a dry
	// run).
	Post func(ctx context.Context, tx ledger.Tx) error
	// Dir keeps the evidence of every verdict, by its hash.
	Dir string
	// CaseSize is how many canaries of one provider make a case
	// (default 8, what verify.DefaultCanary's statistics are set for);
	// Interval the pause between canaries (default 10 s).
	CaseSize int
	Interval time.Duration
	// ProbationCases is how many cases of each (provider, digest) pair the
	// verifier judges back to back when it first sees the pair (default
	// 3, the gateway's default probation; negative: none).
	ProbationCases int
	// MaxTokens caps a canary's answer (default 128): long answers cost
	// the verifier replays and add little evidence.
	MaxTokens int
	// Seed picks the canaries from the prompt mix.
	Seed   uint64
	Canary verify.Canary
	// Key, when set, is the verifier's ledger key: it signs the verifier's
	// reads of the gateway's sample feed (samples.go), every
	// SampleInterval (default 5 s).
	Key            keys.PrivateKey
	SampleInterval time.Duration
	// NoFeed keeps a verifier with a Key off the sample feed.
	NoFeed bool
	// Scorer is the reference's log-probabilities, which re-scoring
	// sampled responses needs (default: verify.SimScorer when Reference
	// is the simulator itself; nil otherwise — Ollama returns none, and
	// samples then only tell which providers serve which models). Judge
	// decides re-scored samples (default verify.DefaultJudge).
	Scorer verify.Scorer
	Judge  verify.Judge
	// DefaultTemperature is the temperature a sampled request without one
	// was generated at, which tells greedy samples from sampled ones on a
	// reference without a Scorer (default 0 for the simulator, 0.8 —
	// Ollama's default — otherwise).
	DefaultTemperature *float64
	// SampledChecks is how many tokens of a sampled (temperature > 0)
	// sample are checked, one reference call each (default 8).
	SampledChecks int
	// Budget is the share of the completion tokens the gateway serves
	// that the verifier spends on audits outside probation (budget.go;
	// default DefaultBudget, negative: no budget). It applies only while
	// the sample feed reports what the gateway served.
	Budget float64
	// CanaryFloor is the longest a periodic canary waits for the budget
	// (default DefaultCanaryFloor): the budget follows what the gateway
	// says it served, so a gateway that under-reports could otherwise
	// stop the audits of its providers off probation altogether.
	CanaryFloor time.Duration
	// Cases, when set with a Key, lists the ledger's open cases: every
	// CaseInterval (default 5 s) the verifier replays the canary cases
	// other verifiers opened and votes in them (cases.go).
	Cases        func(ctx context.Context) ([]OpenCase, error)
	CaseInterval time.Duration
	// SettleWait is how long a verdict waits for the receipts it names to
	// settle on the ledger (a case names settled receipts only); default
	// 1 minute.
	SettleWait time.Duration
	// OnVerdict, when set, is called with every verdict reached.
	OnVerdict func(Posted)
	HTTP      *http.Client
	Logger    *slog.Logger
}

// ollamaDefaultTemperature is Ollama's temperature for a request that
// sets none.
const ollamaDefaultTemperature = 0.8

// Verifier audits the providers behind one gateway.
type Verifier struct {
	cfg Config
	log *slog.Logger
	// api sends canaries and fetches their receipts.
	api *client.Client

	mu      sync.Mutex
	next    int                         // canary index in the prompt mix
	pending map[string][]canaryRecord   // provider key → canaries awaiting a case
	audited map[keys.PublicKey]int      // cases (canary cases and samples) judged per provider
	known   map[string][]keys.PublicKey // model → providers seen serving it
	pairs   map[string]*pair            // provider key + digest → its audit
	wake    chan struct{}               // a new pair: probation starts now
	verdict []Posted
	feed    feedState
	costs   Costs
	bud     budget
	// noLogprobs: the reference answered a replay without the
	// log-probabilities asked for (said once in the log).
	noLogprobs bool
	// judgedCases are the open cases of others the verifier judged.
	judgedCases map[receipt.Hash]bool
}

// Posted is a verdict the verifier reached.
type Posted struct {
	// Source is "canary" (a case of the verifier's own canaries),
	// "sample" (a response the gateway sampled) or "case" (a canary case
	// another verifier opened, replayed from the ledger).
	Source   string         `json:"source"`
	Provider keys.PublicKey `json:"provider"`
	Model    string         `json:"model"`
	Digest   string         `json:"digest"`
	Evidence receipt.Hash   `json:"evidence"`
	Verdict  verify.Verdict `json:"verdict"`
	// Responses counts the provider's answers the verdict judged (a
	// case's canaries, or one sample).
	Responses int `json:"responses"`
	// Err is why posting failed ("" when it was posted or not meant to).
	Err string `json:"error,omitempty"`
}

// canaryRecord is one canary and what came back.
type canaryRecord struct {
	Request protocol.Request `json:"request"`
	// Body is the request body as sent: its SHA-256 is the receipt's
	// request hash, and it goes on the ledger with the case.
	Body     []byte          `json:"body"`
	Response verify.Response `json:"response"`
	Receipt  receipt.Signed  `json:"receipt"`
	Replayed verify.Replayed `json:"replayed"`
}

// New checks cfg and returns a Verifier.
func New(cfg Config) (*Verifier, error) {
	if cfg.Gateway == "" || cfg.APIKey == "" || cfg.Reference == nil {
		return nil, errors.New("verifier: a gateway, an API key and a reference backend are required")
	}
	if cfg.ProbationCases == 0 {
		cfg.ProbationCases = 3
	}
	if cfg.CaseSize <= 0 {
		cfg.CaseSize = 8
	}
	if cfg.MaxTokens <= 0 {
		cfg.MaxTokens = 128
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 10 * time.Second
	}
	if cfg.Canary == (verify.Canary{}) {
		cfg.Canary = verify.DefaultCanary()
	}
	if cfg.SampleInterval <= 0 {
		cfg.SampleInterval = 5 * time.Second
	}
	if cfg.SettleWait <= 0 {
		cfg.SettleWait = time.Minute
	}
	if cfg.CaseInterval <= 0 {
		cfg.CaseInterval = 5 * time.Second
	}
	if s, ok := cfg.Reference.(*sim.Sim); ok && cfg.Scorer == nil {
		cfg.Scorer = verify.SimScorer{Sim: s}
	}
	if cfg.CanaryFloor <= 0 {
		cfg.CanaryFloor = DefaultCanaryFloor
	}
	if cfg.SampledChecks <= 0 {
		cfg.SampledChecks = 8
	}
	if cfg.Budget != cfg.Budget || math.IsInf(cfg.Budget, 0) {
		return nil, fmt.Errorf("verifier: budget %v: want a share of the served tokens (negative: none)", cfg.Budget)
	}
	if cfg.Budget == 0 {
		cfg.Budget = DefaultBudget
	}
	if cfg.DefaultTemperature == nil {
		t := ollamaDefaultTemperature
		if _, ok := cfg.Reference.(*sim.Sim); ok {
			t = 0
		}
		cfg.DefaultTemperature = &t
	}
	if cfg.Judge.EmbeddingMinCosine == 0 {
		cfg.Judge.EmbeddingMinCosine = verify.DefaultEmbeddingMinCosine
	}
	if cfg.Judge == (verify.Judge{EmbeddingMinCosine: cfg.Judge.EmbeddingMinCosine}) {
		cfg.Judge = verify.DefaultJudge()
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: 5 * time.Minute}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Dir != "" {
		if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("verifier: evidence directory: %w", err)
		}
	}
	return &Verifier{cfg: cfg, log: cfg.Logger, api: client.New(cfg.Gateway, cfg.APIKey, client.WithHTTPClient(cfg.HTTP)), pending: map[string][]canaryRecord{}, audited: map[keys.PublicKey]int{}, known: map[string][]keys.PublicKey{},
		pairs: map[string]*pair{}, wake: make(chan struct{}, 1),
		judgedCases: map[receipt.Hash]bool{}, bud: budget{lastCanary: time.Now()}}, nil
}

// Run sends canaries and, with a Key, reads the sample feed, until ctx
// ends.
func (v *Verifier) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if !v.cfg.Key.IsZero() {
		if !v.cfg.NoFeed {
			wg.Go(func() { v.runSamples(ctx) })
		}
		if v.cfg.Cases != nil {
			wg.Go(func() { v.runCases(ctx) })
		}
	}
	defer wg.Wait()
	t := time.NewTicker(v.cfg.Interval)
	defer t.Stop()
	for {
		if _, err := v.Step(ctx); err != nil && ctx.Err() == nil {
			v.log.Warn("canary failed", "err", err)
		} else if _, _, ok := v.probation(); ok && err == nil {
			// A pair on probation: its next canary at once.
			if ctx.Err() != nil {
				return nil
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-v.wake:
		}
	}
}

// Verdicts returns the verdicts reached so far.
func (v *Verifier) Verdicts() []Posted {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.verdict)
}

// models is what the verifier checks.
func (v *Verifier) models(ctx context.Context) ([]string, error) {
	if len(v.cfg.Models) > 0 {
		return v.cfg.Models, nil
	}
	ms, err := v.cfg.Reference.Models(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return out, nil
}

// Step sends one canary, replays it, and posts a verdict when it completes
// a case; it returns that verdict, or nil.
func (v *Verifier) Step(ctx context.Context) (*Posted, error) {
	models, err := v.models(ctx)
	if err != nil {
		return nil, fmt.Errorf("reference models: %w", err)
	}
	if len(models) == 0 {
		return nil, errors.New("the reference serves no model")
	}
	model, target, ok := v.probation()
	ok = ok && slices.Contains(models, model)
	v.mu.Lock()
	if !ok && !v.budgetAllows() && time.Since(v.bud.lastCanary) < v.cfg.CanaryFloor {
		// A periodic canary: it waits for the traffic to refill the
		// budget (budget.go), but no longer than CanaryFloor since the
		// last one; probation never waits.
		v.bud.postponed++
		credit := v.bud.credit
		v.mu.Unlock()
		v.log.Debug("canary postponed: the budget is spent", "credit", credit)
		return nil, nil
	}
	i := v.next
	v.next++
	if !ok {
		v.bud.lastCanary = time.Now()
	}
	v.mu.Unlock()
	if !ok {
		model = models[i%len(models)]
		v.mu.Lock()
		target = v.leastAudited(model)
		v.mu.Unlock()
	}

	mix := verify.DefaultPromptMix(model)
	mix.Seed = v.cfg.Seed + 1
	req := mix.Canary(i)
	if req.Options.MaxTokens <= 0 || req.Options.MaxTokens > v.cfg.MaxTokens {
		req.Options.MaxTokens = v.cfg.MaxTokens
	}
	// OpenAI's completions API has no system prompt: the canary is what
	// the public API can carry, and the reference replays exactly that.
	req.System = ""
	resp, body, signed, err := v.ask(ctx, req, target)
	if err != nil {
		if ok {
			v.missed(*target)
		}
		return nil, err
	}
	v.mu.Lock()
	v.costs.Canaries++
	v.costs.CanaryTokens += resp.Usage.CompletionTokens
	if !ok {
		v.charge(resp.Usage.CompletionTokens)
	}
	v.mu.Unlock()
	replayed, err := v.replay(ctx, v.cfg.Canary, v.cfg.Reference, req, resp, !ok)
	if err != nil {
		return nil, fmt.Errorf("reference replay: %w", err)
	}
	prov := signed.Receipt.Provider
	rec := canaryRecord{Request: req, Body: body, Response: resp, Receipt: signed, Replayed: replayed}
	v.mu.Lock()
	pr := v.see(model, prov, signed.Receipt.ModelDigest)
	k := pairKey(prov, signed.Receipt.ModelDigest)
	v.pending[k] = append(v.pending[k], rec)
	pr.pending = len(v.pending[k])
	var batch []canaryRecord
	if len(v.pending[k]) >= v.cfg.CaseSize {
		batch, v.pending[k] = v.pending[k], nil
		v.audited[prov]++
		pr.cases++
		pr.pending = 0
	}
	pr.misses = 0
	v.mu.Unlock()
	if batch == nil {
		return nil, nil
	}
	p := v.judge(ctx, model, prov, signed.Receipt.ModelDigest, batch)
	v.decided(prov, signed.Receipt.ModelDigest, p.Verdict.Pass)
	return &p, nil
}

// pair is one (provider, digest) pair the verifier has seen serving a
// model, and how far its audit has come.
type pair struct {
	model    string
	provider keys.PublicKey
	digest   string
	cases    int // cases judged: canary cases and samples
	// passed and failed count the verdicts of those cases.
	passed, failed int
	pending        int // canaries toward the next case
	// misses counts canaries pinned to it that failed in a row; after
	// maxMisses it leaves probation (it is gone, or serves nothing now).
	misses int
}

const maxMisses = 3

// missed counts a failed canary pinned to prov on probation.
func (v *Verifier) missed(prov keys.PublicKey) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, p := range v.pairs {
		if p.provider == prov && v.onProbation(p) {
			p.misses++
		}
	}
}

func pairKey(prov keys.PublicKey, digest string) string { return prov.String() + "\x00" + digest }

// onProbation reports whether p is on the verifier's probation, as the
// gateway's probation puts a provider: fewer than ProbationCases passed
// cases, or a failed one (until it is convicted, when its pinned canaries
// miss). v.mu is held.
func (v *Verifier) onProbation(p *pair) bool {
	return v.cfg.ProbationCases > 0 && (p.passed < v.cfg.ProbationCases || p.failed > 0)
}

// decided counts a verdict on prov's digest toward its pair's probation.
func (v *Verifier) decided(prov keys.PublicKey, digest string, pass bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if p := v.pairs[pairKey(prov, digest)]; p != nil {
		if pass {
			p.passed++
		} else {
			p.failed++
		}
	}
}

// see records that prov serves model with digest and returns its pair;
// v.mu is held.
func (v *Verifier) see(model string, prov keys.PublicKey, digest string) *pair {
	if !slices.Contains(v.known[model], prov) {
		v.known[model] = append(v.known[model], prov)
	}
	k := pairKey(prov, digest)
	p := v.pairs[k]
	if p == nil {
		p = &pair{model: model, provider: prov, digest: digest}
		v.pairs[k] = p
		if v.cfg.ProbationCases > 0 {
			select {
			case v.wake <- struct{}{}:
			default:
			}
			v.log.Info("new provider weights: auditing them back to back", "provider", prov.String(), "model", model, "digest", digest, "cases", v.cfg.ProbationCases)
		}
	}
	return p
}

// probation is the model and provider of the pair on probation
// (onProbation) that the next canary goes to: the one
// whose provider has the fewest cases in all (a new provider before an
// audited provider's other weights: the gateway caps providers, not
// pairs), then the one with the fewest cases, and among those the one
// nearest to completing its next case, so that one case completes before
// the next begins.
func (v *Verifier) probation() (string, *keys.PublicKey, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	var best *pair
	for _, p := range v.pairs {
		if !v.onProbation(p) || p.misses >= maxMisses {
			continue
		}
		if best == nil {
			best = p
			continue
		}
		pa, ba := v.audited[p.provider], v.audited[best.provider]
		if pa < ba || pa == ba && (p.cases < best.cases || p.cases == best.cases && (p.pending > best.pending ||
			p.pending == best.pending && pairKey(p.provider, p.digest) < pairKey(best.provider, best.digest))) {
			best = p
		}
	}
	if best == nil {
		return "", nil, false
	}
	prov := best.provider
	return best.model, &prov, true
}

// leastAudited is the provider of model with the fewest cases, when one
// has fewer than the others; nil lets the gateway route as for anyone.
func (v *Verifier) leastAudited(model string) *keys.PublicKey {
	ps := v.known[model]
	if len(ps) < 2 {
		return nil
	}
	best := ps[0]
	for _, p := range ps[1:] {
		if v.audited[p] < v.audited[best] {
			best = p
		}
	}
	for _, p := range ps {
		if v.audited[p] > v.audited[best] {
			return &best
		}
	}
	return nil
}

// judge decides a case, keeps its evidence and posts the verdict with
// the canaries' receipts and texts, which open the case on the ledger.
func (v *Verifier) judge(ctx context.Context, model string, prov keys.PublicKey, digest string, batch []canaryRecord) Posted {
	rs := make([]verify.Replayed, len(batch))
	var open opening
	for i, c := range batch {
		rs[i] = c.Replayed
		open.receipts = append(open.receipts, ledger.NewBatchReceipt(&c.Receipt))
		open.texts = append(open.texts, ledger.CaseText{Request: c.Body, Response: c.Response.Text})
	}
	verdict := v.cfg.Canary.Decide(rs)
	evidence := struct {
		Provider keys.PublicKey `json:"provider"`
		Model    string         `json:"model"`
		Digest   string         `json:"digest"`
		Canaries []canaryRecord `json:"canaries"`
		Verdict  verify.Verdict `json:"verdict"`
	}{prov, model, digest, batch, verdict}
	raw, _ := json.MarshalIndent(evidence, "", " ")
	hash := ledger.CaseEvidence(open.receipts, true)
	return v.record(ctx, Posted{Source: "canary", Provider: prov, Model: model, Digest: digest, Evidence: hash, Verdict: verdict, Responses: len(batch)}, raw, open)
}

// opening is what a verdict carries to open its case on the ledger: the
// settled receipts it judges and, for canaries, their texts.
type opening struct {
	receipts []ledger.BatchReceipt
	texts    []ledger.CaseText
}

// record keeps a verdict's evidence (raw) under its case's hash, posts the
// verdict and remembers it.
func (v *Verifier) record(ctx context.Context, p Posted, raw []byte, open opening) Posted {
	prov, hash, verdict := p.Provider, p.Evidence, p.Verdict
	if v.cfg.Dir != "" {
		if err := os.WriteFile(filepath.Join(v.cfg.Dir, hash.String()+".json"), raw, 0o600); err != nil {
			p.Err = "keep evidence: " + err.Error()
		}
	}
	if v.cfg.Post != nil && p.Err == "" {
		tx := ledger.Tx{Kind: ledger.KindVerdict, Subject: prov.Address(), Digest: p.Digest, Evidence: hash, Pass: verdict.Pass,
			CaseReceipts: open.receipts, CaseTexts: open.texts}
		if err := v.post(ctx, tx); err != nil {
			p.Err = err.Error()
		}
	}
	v.log.Info("verdict", "source", p.Source, "provider", prov.String(), "model", p.Model, "pass", verdict.Pass, "rule", verdict.Rule, "reason", verdict.Reason,
		"evidence", hash.String(), "error", p.Err)
	v.mu.Lock()
	v.verdict = append(v.verdict, p)
	v.mu.Unlock()
	if v.cfg.OnVerdict != nil {
		v.cfg.OnVerdict(p)
	}
	return p
}

// post sends a verdict, again while the receipts it names are not settled
// yet (the gateway settles in batches), for up to SettleWait.
func (v *Verifier) post(ctx context.Context, tx ledger.Tx) error {
	deadline := time.Now().Add(v.cfg.SettleWait)
	for {
		err := v.cfg.Post(ctx, tx)
		if err == nil || !strings.Contains(err.Error(), ledger.ReasonNotSettled) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// ask sends req through the gateway's OpenAI API (chat or completions),
// pinned to target when set, and fetches the answer's signed receipt; it
// returns the request body as sent.
func (v *Verifier) ask(ctx context.Context, req protocol.Request, target *keys.PublicKey) (verify.Response, []byte, receipt.Signed, error) {
	body := map[string]any{"model": req.Model, "max_tokens": req.Options.MaxTokens, "temperature": 0}
	if req.Kind == protocol.KindGenerate {
		body["prompt"] = req.Prompt
	} else {
		body["messages"] = req.Messages
	}
	if target != nil {
		body["provider"] = map[string]any{"order": []string{target.String()}, "allow_fallbacks": false}
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return verify.Response{}, nil, receipt.Signed{}, err
	}
	var resp verify.Response
	var id string
	var n int
	if req.Kind == protocol.KindGenerate {
		out, err := v.api.Complete(ctx, json.RawMessage(raw))
		if err != nil {
			return verify.Response{}, nil, receipt.Signed{}, err
		}
		if id, n = out.ID, len(out.Choices); n == 1 {
			resp = verify.Response{Text: out.Choices[0].Text, FinishReason: deref(out.Choices[0].FinishReason), Usage: usage(out.Usage.Counts)}
		}
	} else {
		out, err := v.api.Chat(ctx, json.RawMessage(raw))
		if err != nil {
			return verify.Response{}, nil, receipt.Signed{}, err
		}
		if id, n = out.ID, len(out.Choices); n == 1 {
			resp = verify.Response{Text: out.Choices[0].Message.Text(), FinishReason: out.Choices[0].FinishReason, Usage: usage(out.Usage)}
		}
	}
	if n != 1 || id == "" {
		return verify.Response{}, nil, receipt.Signed{}, fmt.Errorf("canary: %d choices, id %q", n, id)
	}
	signed, err := v.api.Receipt(ctx, id)
	if err == nil {
		err = signed.Verify()
	}
	if err != nil {
		return verify.Response{}, nil, receipt.Signed{}, fmt.Errorf("receipt of %s: %w", id, err)
	}
	if signed.Receipt.ResponseHash != receipt.Sum([]byte(resp.Text)) {
		return verify.Response{}, nil, receipt.Signed{}, fmt.Errorf("receipt of %s is for another answer than the one received", id)
	}
	return resp, raw, signed, nil
}

// usage is the protocol's usage of an answer's; none without one.
func usage(u *apitypes.Usage) protocol.Usage {
	if u == nil {
		return protocol.Usage{}
	}
	return protocol.Usage{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
