package verifier

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/gateway/samplefeed"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/receipt"
	"github.com/idlegrid/idlegrid/internal/verify"
)

// replayed hides the simulator's type, so that the verifier judges
// samples by replaying them (decoding reference tokens, what the budget
// counts) as it does on Ollama, not by re-scoring them for free.
type replayed struct{ backend.Backend }

// fakeFeed is a gateway's sample feed as a verifier reads it: signed
// receipts of honest answers, and the served_tokens the test sets.
type fakeFeed struct {
	t     *testing.T
	gw    keys.PrivateKey
	ref   *sim.Sim
	model backend.Model
	srv   *httptest.Server

	mu      sync.Mutex
	samples []samplefeed.Sample
	served  *uint64 // nil: the feed predates served_tokens
}

func newFakeFeed(t *testing.T) *fakeFeed {
	t.Helper()
	cfg := sim.DefaultConfig()
	for i := range cfg.Models {
		cfg.Models[i].FirstToken, cfg.Models[i].TokensPerSecond = 0, 0
	}
	ref, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := ref.Models(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	gw, err := keys.Generate()
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeFeed{t: t, gw: gw, ref: ref, model: ms[0], served: new(uint64)}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeFeed) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(samplefeed.HeaderGateway, f.gw.Public().String())
	w.Header().Set(samplefeed.HeaderChain, "test-chain")
	if r.Header.Get(samplefeed.HeaderSignature) == "" {
		http.Error(w, `{"error":{"message":"sign"}}`, http.StatusUnauthorized)
		return
	}
	after, _ := strconv.ParseUint(r.URL.Query().Get("after"), 10, 64)
	f.mu.Lock()
	p := samplefeed.Page{Samples: []samplefeed.Sample{}, Next: after, Share: 0.01}
	if f.served != nil {
		n := *f.served
		p.ServedTokens = &n
	}
	for _, s := range f.samples {
		if s.Seq > after && len(p.Samples) < samplefeed.MaxPage {
			p.Samples = append(p.Samples, s)
			p.Next = s.Seq
		}
	}
	f.mu.Unlock()
	json.NewEncoder(w).Encode(p)
}

// serve adds tokens to what the gateway says it served.
func (f *fakeFeed) serveTokens(tokens uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	*f.served += tokens
}

// add puts an honest greedy answer of prov, about tokens long, in the
// feed.
func (f *fakeFeed) add(prov keys.PrivateKey, tokens int) {
	f.t.Helper()
	mix := verify.DefaultPromptMix(f.model.Name)
	req := mix.Canary(tokens)
	req.System = ""
	req.Options.MaxTokens = tokens
	zero := 0.0
	req.Options.Temperature = &zero
	resp, err := verify.Collect(context.Background(), f.ref, req)
	if err != nil {
		f.t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	seq := uint64(len(f.samples) + 1)
	r := receipt.Receipt{Version: receipt.Version, ChainID: "test-chain", RequestID: fmt.Sprintf("req-%d", seq), Gateway: f.gw.Public(),
		Provider: prov.Public(), Consumer: prov.Public().Address(), Model: f.model.Name, ModelDigest: f.model.Digest,
		PromptTokens: resp.Usage.PromptTokens, CompletionTokens: resp.Usage.CompletionTokens,
		ResponseHash: receipt.Sum([]byte(resp.Text)), StartUnixMs: 1, EndUnixMs: 2}
	signed := receipt.Signed{Receipt: r, ProviderSignature: receipt.SignProvider(prov, &r), GatewaySignature: receipt.SignGateway(f.gw, &r)}
	text := resp.Text
	f.samples = append(f.samples, samplefeed.Sample{Seq: seq, Receipt: signed, FinishReason: resp.FinishReason, Request: &req, Text: &text})
}

// verifier reads f with a fresh key.
func (f *fakeFeed) verifier(edit func(*Config)) *Verifier {
	f.t.Helper()
	key, err := keys.Generate()
	if err != nil {
		f.t.Fatal(err)
	}
	zero := 0.0
	cfg := Config{Gateway: f.srv.URL, APIKey: "k", Reference: replayed{f.ref}, Key: key, DefaultTemperature: &zero, ProbationCases: -1}
	if edit != nil {
		edit(&cfg)
	}
	v, err := New(cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	return v
}

func newKey(t *testing.T) keys.PrivateKey {
	t.Helper()
	k, err := keys.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// judgedBy counts the verifier's sample verdicts per provider.
func judgedBy(v *Verifier) map[keys.PublicKey]int {
	n := map[keys.PublicKey]int{}
	for _, p := range v.Verdicts() {
		if p.Source == "sample" {
			n[p.Provider]++
		}
	}
	return n
}

// TestBudgetPacesSamples: off probation, the verifier spends on samples at
// most Budget × the tokens the feed says the gateway served, plus the
// allowance and one sample; what does not fit is skipped. A gateway that
// claims to serve more only raises what the verifier spends to Budget ×
// the claim: here, everything.
func TestBudgetPacesSamples(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		perRound uint64 // tokens served between two reads
		skips    bool
	}{
		{"slow traffic", 1_000, true},
		{"a gateway inflating served_tokens", 1 << 40, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeFeed(t)
			f.serveTokens(123_456) // served before the verifier's first read: not its budget
			v := f.verifier(nil)
			prov := newKey(t)
			// A sample of up to 96 tokens costs its replay, about as many
			// decoded tokens for an honest answer: the last one judged may
			// pass the line by that much.
			const most = 2 * 96
			for round := range 40 {
				for range 20 {
					f.add(prov, 96)
				}
				if round > 0 {
					f.serveTokens(tc.perRound)
				}
				if _, err := v.PullSamples(ctx); err != nil {
					t.Fatal(err)
				}
				b := v.Budget()
				limit := DefaultBudget*float64(b.Served) + v.allowance() + most
				if !b.Paced || b.Spent != v.Costs().RefDecoded || float64(b.Spent) > limit {
					t.Fatalf("round %d: %+v, %d decoded: spent more than %.0f", round, b, v.Costs().RefDecoded, limit)
				}
			}
			fs, b := v.Feed(), v.Budget()
			t.Logf("%+v, %+v", fs, b)
			if fs.Judged+fs.Skipped != fs.Read {
				t.Fatalf("%+v: a sample neither judged nor skipped", fs)
			}
			if tc.skips && (fs.Skipped == 0 || fs.Judged == 0) || !tc.skips && fs.Skipped != 0 {
				t.Fatalf("%+v: skipped %d", fs, fs.Skipped)
			}
			if tc.skips && float64(b.Spent) < 0.5*DefaultBudget*float64(b.Served) {
				t.Fatalf("%+v: the budget went mostly unspent", b)
			}
		})
	}
}

// TestBudgetSkipsIndependentlyOfProvider (attack): a cheater cannot make
// its own samples more likely to be skipped than others' by sending long
// answers that drain the budget, nor by coming last in every page: both
// providers' samples are judged in the same proportion.
func TestBudgetSkipsIndependentlyOfProvider(t *testing.T) {
	ctx := context.Background()
	f := newFakeFeed(t)
	v := f.verifier(nil)
	honest, cheater := newKey(t), newKey(t)
	const rounds, each = 60, 15
	for range rounds {
		for range each {
			f.add(honest, 8)
		}
		for range each {
			f.add(cheater, 96)
		}
		f.serveTokens(10_000)
		if _, err := v.PullSamples(ctx); err != nil {
			t.Fatal(err)
		}
	}
	n := judgedBy(v)
	fh, fc := float64(n[honest.Public()])/(rounds*each), float64(n[cheater.Public()])/(rounds*each)
	t.Logf("judged: honest %.3f, cheater %.3f; %+v %+v", fh, fc, v.Feed(), v.Budget())
	if v.Feed().Skipped == 0 || fh == 0 || fc == 0 {
		t.Fatalf("%+v: want some samples of each judged and some skipped", v.Feed())
	}
	// Binomial over 900 samples each: the difference's standard deviation
	// is under 0.02.
	if math.Abs(fh-fc) > 0.08 {
		t.Fatalf("the cheater's samples were judged %.3f of the time, the honest provider's %.3f", fc, fh)
	}
}

// TestBudgetSparesProbation (attack): a pair on probation is judged in
// full however little the gateway serves (its audits come before its
// probation ends) and its canaries are never postponed, while a periodic
// canary waits for the budget.
func TestBudgetSparesProbation(t *testing.T) {
	ctx := context.Background()
	f := newFakeFeed(t)
	v := f.verifier(func(c *Config) { c.ProbationCases = 1_000 })
	cheater := newKey(t)
	for range 100 {
		f.add(cheater, 64)
	}
	if _, err := v.PullSamples(ctx); err != nil {
		t.Fatal(err)
	}
	if fs := v.Feed(); fs.Judged != 100 || fs.Skipped != 0 {
		t.Fatalf("%+v: want every sample of the pair on probation judged", fs)
	}
	if b := v.Budget(); b.Spent != 0 || !b.Paced {
		t.Fatalf("%+v: probation charged to the budget", b)
	}

	// Spend the budget: a periodic canary is postponed without asking
	// the gateway; a pinned one of probation still goes out.
	v.mu.Lock()
	v.bud.credit = -1
	v.mu.Unlock()
	if _, err := v.Step(ctx); err == nil {
		t.Fatal("the probation canary did not go to the gateway (a fake without an API)")
	}
	v.mu.Lock()
	for _, p := range v.pairs {
		p.passed = v.cfg.ProbationCases // off probation
	}
	v.mu.Unlock()
	if p, err := v.Step(ctx); p != nil || err != nil || v.Budget().Postponed != 1 {
		t.Fatalf("periodic canary with the budget spent: %v, %v, %+v", p, err, v.Budget())
	}
}

// TestCanaryFloor: a gateway that never reports serving anything cannot
// stop the periodic canaries of providers off probation: with the budget
// spent, one still goes out once CanaryFloor has passed since the last.
func TestCanaryFloor(t *testing.T) {
	ctx := context.Background()
	f := newFakeFeed(t)
	v := f.verifier(func(c *Config) { c.ProbationCases = -1 })
	if _, err := v.PullSamples(ctx); err != nil {
		t.Fatal(err)
	}
	v.mu.Lock()
	v.bud.credit, v.bud.lastCanary = -1, time.Now()
	v.mu.Unlock()
	if p, err := v.Step(ctx); p != nil || err != nil || v.Budget().Postponed != 1 {
		t.Fatalf("periodic canary with the budget spent, the last just now: %v, %v, %+v", p, err, v.Budget())
	}
	v.mu.Lock()
	v.bud.lastCanary = time.Now().Add(-v.cfg.CanaryFloor - time.Second)
	v.mu.Unlock()
	if _, err := v.Step(ctx); err == nil || v.Budget().Postponed != 1 {
		t.Fatalf("the canary did not go to the gateway (a fake without an API) once the floor passed: %v, %+v", err, v.Budget())
	}
}

// TestNoServedTokensNoBudget: a feed without served_tokens (a gateway
// that predates it) leaves the verifier without a budget: every sample
// judged, canaries never postponed.
func TestNoServedTokensNoBudget(t *testing.T) {
	ctx := context.Background()
	f := newFakeFeed(t)
	f.served = nil
	v := f.verifier(nil)
	prov := newKey(t)
	for range 120 {
		f.add(prov, 64)
	}
	if _, err := v.PullSamples(ctx); err != nil {
		t.Fatal(err)
	}
	if fs, b := v.Feed(), v.Budget(); fs.Judged != 120 || fs.Skipped != 0 || b.Paced {
		t.Fatalf("%+v %+v: want every sample judged, no budget", fs, b)
	}
}

// TestBudgetDoesNotBank: credit the verifier had no use for (traffic
// served while there was nothing to audit off probation) is not spent
// later in one burst: past one allowance it is dropped at the next read.
func TestBudgetDoesNotBank(t *testing.T) {
	ctx := context.Background()
	f := newFakeFeed(t)
	v := f.verifier(nil)
	if _, err := v.PullSamples(ctx); err != nil {
		t.Fatal(err)
	}
	f.serveTokens(1_000_000) // a budget of 40,000 tokens, nothing to audit
	if _, err := v.PullSamples(ctx); err != nil {
		t.Fatal(err)
	}
	prov := newKey(t)
	for range 200 {
		f.add(prov, 96)
	}
	if _, err := v.PullSamples(ctx); err != nil {
		t.Fatal(err)
	}
	fs, b := v.Feed(), v.Budget()
	if fs.Skipped == 0 || float64(b.Spent) > v.allowance()+2*96 {
		t.Fatalf("%+v %+v: spent what it banked", fs, b)
	}
}

// TestNewGreedySamplesDoNotStarveSampledOnes: a page read while the
// verifier judges queues behind what waits, so sampled (temperature > 0)
// samples already queued are judged before newer greedy ones; only
// greedy-first within one page. Before, each read re-sorted the whole
// queue and a steady stream of greedy samples kept sampled ones waiting
// for ever.
func TestNewGreedySamplesDoNotStarveSampledOnes(t *testing.T) {
	f := newFakeFeed(t)
	v := f.verifier(func(c *Config) { c.ProbationCases = -1 })
	p := newKey(t)
	hot := 0.8
	sample := func(seq uint64, temp *float64) samplefeed.Sample {
		req := protocol.Request{Model: "sim"}
		req.Options.Temperature = temp
		r := receipt.Receipt{Provider: p.Public()}
		return samplefeed.Sample{Seq: seq, Receipt: receipt.Signed{Receipt: r}, Request: &req}
	}
	zero := 0.0
	queue := v.order([]samplefeed.Sample{sample(2, &hot), sample(1, &zero)}) // page 1
	queue = v.enqueue(queue, []samplefeed.Sample{sample(3, &zero)})          // page 2
	var seqs []uint64
	for _, s := range queue {
		seqs = append(seqs, s.Seq)
	}
	if !slices.Equal(seqs, []uint64{1, 2, 3}) {
		t.Fatalf("judging order %v, want the waiting sampled sample (2) before the newer greedy one (3)", seqs)
	}
}
