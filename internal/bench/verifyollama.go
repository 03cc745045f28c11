package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/backend/ollama"
	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/gateway"
	"github.com/idlegrid/idlegrid/internal/gateway/client"
	"github.com/idlegrid/idlegrid/internal/hub"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/node"
	"github.com/idlegrid/idlegrid/internal/verifier"
)

// VerifyOllamaConfig sizes `idlegrid bench verify --ollama`: verification
// on a real Ollama, on a network started as `idlegrid up --backend
// ollama` starts it (node.DevUpConfig: its verifier's canary interval,
// sample share and probation), with one provider that serves Model
// honestly and one that joins later and serves CheatModel while claiming
// Model and its identity digest, through an unmodified provider agent in
// front of a SwapProxy.
type VerifyOllamaConfig struct {
	OllamaURL         string
	Model, CheatModel string
	// Clients send consumer requests back to back, MaxTokens each,
	// greedy (temperature 0) and at the default temperature in turn.
	Clients, MaxTokens int
	// HonestAudits is how many of the honest provider's responses the
	// verifier must have judged (canaries and sampled responses) before
	// the run ends; traffic goes on after the conviction until then.
	HonestAudits int
	// SampleShare, when positive, replaces up's share of responses the
	// gateway samples for the verifier: more judged responses per minute
	// (the honest audits come sooner), at a verifier compute that is no
	// longer up's, so the compute target is not judged then.
	SampleShare float64
	// VerifyBudget, when not 0, replaces the dev verifier's budget
	// (negative: none), so that more responses are judged per minute;
	// the compute target is then not judged either.
	VerifyBudget float64
	// Caps on the phases: the honest provider's probation, the cheater's
	// conviction after it joins, and the honest-only traffic after it.
	ProbationTimeout, ConvictTimeout, HonestTimeout time.Duration
	Out                                             io.Writer
	Logger                                          *slog.Logger
}

// DefaultVerifyOllama is what `idlegrid bench verify --ollama URL` runs.
func DefaultVerifyOllama() VerifyOllamaConfig {
	return VerifyOllamaConfig{Model: "tiny", CheatModel: "tiny-q4sim", Clients: 4, MaxTokens: 32, HonestAudits: 1000,
		ProbationTimeout: 5 * time.Minute, ConvictTimeout: 6 * time.Minute, HonestTimeout: 90 * time.Minute}
}

// Targets of issue 19 §5.
const (
	targetConvictTime     = 3 * time.Minute
	targetCheaterRequests = 100
	targetCheaterShare    = 0.10
	targetVerifyShare     = 0.05
)

// PhaseResult is the consumer traffic of one phase of the run.
type PhaseResult struct {
	Name     string
	Duration time.Duration
	// Answers counts consumer requests answered (Errors the others);
	// Cheater those that reached the cheater; Tokens the answers'
	// completion tokens.
	Answers, Errors, Cheater int
	Tokens                   uint64
}

// Honest is the consumer requests the honest provider answered.
func (p PhaseResult) Honest() int { return max(p.Answers-p.Cheater, 0) }

// VerifyOllamaResult is what the run measured.
type VerifyOllamaResult struct {
	Config   VerifyOllamaConfig
	Identity string // the identity digest both providers claim
	Phases   []PhaseResult
	// Convicted: the cheater was jailed on the ledger, ConvictedAfter
	// its joining; FirstFail is its first failed verdict.
	Convicted                 bool
	ConvictedAfter, FirstFail time.Duration
	// CheaterServed counts consumer requests that reached the cheater
	// before its conviction, AfterConviction those between the conviction
	// and the gateway dropping it (Disconnected after its joining; 0:
	// never), AfterDropped those after that. LastServed is when the last
	// one reached it, after its joining.
	CheaterServed, AfterConviction, AfterDropped int
	LastServed, Disconnected                     time.Duration
	// CheaterShare is its share of consumer requests between joining and
	// conviction.
	CheaterShare float64
	// The honest provider: responses the verifier judged (in canary cases
	// and as samples), failed verdicts, and its standing on the ledger.
	HonestCanaries, HonestSamples, HonestFailedVerdicts int
	HonestFailures                                      uint64
	HonestJailed                                        bool
	// Costs are the verifier's after the conviction (no provider on
	// probation), against the consumer completion tokens served then.
	Costs        verifier.Costs
	ServedTokens uint64
	// Budget is the verifier's (verifier.Config.Budget); Judged and
	// Skipped count the samples it judged and those its budget skipped
	// after the conviction, Postponed its canaries that waited;
	// BudgetSpent and BudgetServed are what it charged to its budget and
	// the tokens the gateway reported serving then (the rest of Costs is
	// probation's, which the budget does not throttle).
	Budget                    float64
	Judged, Skipped           uint64
	Postponed                 int
	BudgetSpent, BudgetServed uint64
}

// HonestAudited counts the honest provider's responses the verifier
// judged.
func (r *VerifyOllamaResult) HonestAudited() int { return r.HonestCanaries + r.HonestSamples }

// VerifyShare is the verifier's compute once probation ended: the tokens
// it had providers generate for canaries and the reference decode for
// replays, per completion token served to consumers.
func (r *VerifyOllamaResult) VerifyShare() float64 {
	if r.ServedTokens == 0 {
		return 0
	}
	return float64(r.Costs.CanaryTokens+r.Costs.RefDecoded) / float64(r.ServedTokens)
}

// PacedShare is the verifier's compute on providers off probation (what
// it charged to its budget) per completion token the gateway reported
// serving: verification once probation has ended, the target's measure.
// VerifyShare also counts probation's tail after the conviction (the
// cheater's queued samples, other weights still on probation).
func (r *VerifyOllamaResult) PacedShare() float64 {
	if r.BudgetServed == 0 {
		return 0
	}
	return float64(r.BudgetSpent) / float64(r.BudgetServed)
}

// computeJudged reports whether the run used up's sample share and
// budget, so that its compute is up's.
func (r *VerifyOllamaResult) computeJudged() bool {
	return r.Config.SampleShare == 0 && r.Config.VerifyBudget == 0
}

// HonestConvictions is 1 when the honest provider was jailed or failed a
// case on the ledger.
func (r *VerifyOllamaResult) HonestConvictions() int {
	if r.HonestJailed || r.HonestFailures > 0 {
		return 1
	}
	return 0
}

// Met reports whether every target holds.
func (r *VerifyOllamaResult) Met() bool {
	return r.Convicted && r.ConvictedAfter <= targetConvictTime && r.CheaterServed <= targetCheaterRequests &&
		r.CheaterShare <= targetCheaterShare && r.Disconnected > 0 && r.AfterDropped == 0 && r.HonestConvictions() == 0 &&
		r.HonestAudited() >= r.Config.HonestAudits && r.ServedTokens > 0 && (!r.computeJudged() || r.BudgetServed > 0 && r.PacedShare() <= targetVerifyShare)
}

// Summary is the one-line outcome.
func (r *VerifyOllamaResult) Summary() string {
	conv := "not convicted"
	if r.Convicted {
		conv = "convicted in " + r.ConvictedAfter.Round(time.Second).String()
	}
	verdict := "PASS"
	if !r.Met() {
		verdict = "FAIL"
	}
	compute := fmt.Sprintf("verifier compute %.1f%% off probation (%.1f%% with probation's tail)", 100*r.PacedShare(), 100*r.VerifyShare())
	if !r.computeJudged() {
		compute += " (not judged: sample share or budget changed)"
	}
	return fmt.Sprintf("verify-ollama: %s, %d requests, share %.1f%%, honest false convictions %d/%d audited, %s → %s",
		conv, r.CheaterServed, 100*r.CheaterShare, r.HonestConvictions(), r.HonestAudited(), compute, verdict)
}

// trafficMarker marks the bench's consumer requests apart from canaries.
const trafficMarker = "verify-ollama traffic"

// VerifyOllama runs the measurement.
func VerifyOllama(ctx context.Context, cfg VerifyOllamaConfig) (*VerifyOllamaResult, error) {
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clients <= 0 || cfg.MaxTokens <= 0 {
		return nil, errors.New("bench verify --ollama: clients and max tokens must be positive")
	}
	if cfg.SampleShare < 0 || cfg.SampleShare > 1 {
		return nil, fmt.Errorf("bench verify --ollama: sample share %g: want a fraction of responses, at most 1", cfg.SampleShare)
	}
	upstream, err := url.Parse(cfg.OllamaURL)
	if err != nil || upstream.Host == "" {
		return nil, fmt.Errorf("bench verify --ollama: bad Ollama URL %q", cfg.OllamaURL)
	}
	claimed, err := checkModels(ctx, cfg)
	if err != nil {
		return nil, err
	}
	res := &VerifyOllamaResult{Config: cfg, Identity: claimed.Digest}
	dir, err := os.MkdirTemp("", "idlegrid-verify-ollama-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	// The cheater's machine: its Ollama behind the swapping proxy.
	swap := &SwapProxy{Upstream: upstream, Claimed: cfg.Model, Actual: cfg.CheatModel, Marker: trafficMarker}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: swap, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	cheaterKeyFile := filepath.Join(dir, "cheater.key")
	cheaterKey, _, err := keys.LoadOrCreate(cheaterKeyFile)
	if err != nil {
		return nil, err
	}

	// The network as `up --backend ollama` starts it, with the cheater
	// registered and staked at genesis like the dev provider.
	up := node.DevUpConfig()
	up.Addr, up.DataDir, up.Backend, up.OllamaURL, up.Logger = "127.0.0.1:0", filepath.Join(dir, "up"), node.BackendOllama, cfg.OllamaURL, cfg.Logger
	up.DevAPIKey = "ig-bench-" + randomHex()
	defaults := "up's defaults"
	if cfg.SampleShare > 0 {
		up.Gateway.Samples.Share = cfg.SampleShare
		defaults = "up's defaults but the sample share"
	}
	if cfg.VerifyBudget != 0 {
		up.VerifyBudget = cfg.VerifyBudget
		defaults = "up's defaults but the sample share or the verifier's budget"
	}
	up.EditGenesis = func(g *ledger.Genesis) {
		for _, a := range g.Accounts {
			if slices.Contains(a.Roles, "provider") {
				g.Accounts = append(g.Accounts, ledger.GenesisAccount{Address: cheaterKey.Public().Address(), PubKey: cheaterKey.Public(),
					Stake: a.Stake, Roles: a.Roles, Info: "cheater"})
				break
			}
		}
	}
	n, err := node.StartUp(ctx, up)
	if err != nil {
		return nil, err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		n.Shutdown(sctx)
	}()
	led := chainrpc.StateReader{Client: n.Validator.Node.Client()}
	honest := n.Provider.Key
	fmt.Fprintf(cfg.Out, "verify-ollama: Ollama at %s; honest provider serves %s, the cheater %s as %s (identity %s); %s: a canary every %s, %.0f%% of responses sampled, probation %d cases and %.0f%% of traffic\n",
		cfg.OllamaURL, cfg.Model, cfg.CheatModel, cfg.Model, claimed.Digest, defaults, up.VerifyEvery, 100*up.Gateway.Samples.Share, gateway.DefaultProbationCases, 100*gateway.DefaultProbationShare)

	traffic := &consumers{url: n.Gateway.URL(), key: up.DevAPIKey, model: cfg.Model, maxTokens: cfg.MaxTokens}
	tctx, stopTraffic := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stopTraffic(); wg.Wait() }()
	for w := range cfg.Clients {
		wg.Go(func() { traffic.run(tctx, w) })
	}
	phase := func(name string, start time.Time, from trafficCounts, cheaterFrom int) PhaseResult {
		now := traffic.counts()
		return PhaseResult{Name: name, Duration: time.Since(start), Answers: now.answers - from.answers, Errors: now.errors - from.errors,
			Tokens: now.tokens - from.tokens, Cheater: swap.Counts().Marked - cheaterFrom}
	}

	// 1. The honest provider alone, through its probation.
	start := time.Now()
	passed := func() bool {
		n, err := led.PassedWith(ctx, honest.Address(), claimed.Digest)
		return err == nil && n >= gateway.DefaultProbationCases
	}
	if !poll(ctx, cfg.ProbationTimeout, passed) {
		return nil, fmt.Errorf("bench verify --ollama: the honest provider did not pass its probation within %s", cfg.ProbationTimeout)
	}
	res.Phases = append(res.Phases, phase("honest alone, on probation", start, trafficCounts{}, 0))

	// 2. The cheater joins through an unmodified agent.
	before := traffic.counts()
	cb, err := node.OpenBackend(ctx, node.BackendOllama, "http://"+ln.Addr().String(), cfg.Logger)
	if err != nil {
		return nil, err
	}
	cheater, err := node.StartProvider(node.ProviderConfig{Gateway: n.Gateway.URL(), KeyFile: cheaterKeyFile, Backend: cb, Slots: up.Slots,
		Logger: cfg.Logger.With("role", "cheater")})
	if err != nil {
		return nil, err
	}
	defer cheater.Stop()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = cheater.WaitConnected(wctx)
	cancel()
	if err != nil {
		return nil, err
	}
	joined := time.Now()
	res.Convicted = poll(ctx, cfg.ConvictTimeout, func() bool {
		if res.FirstFail == 0 && slices.ContainsFunc(n.Verifier.Verdicts(), func(p verifier.Posted) bool { return p.Provider == cheaterKey.Public() && !p.Verdict.Pass }) {
			res.FirstFail = time.Since(joined)
		}
		p, err := led.Provider(ctx, cheaterKey.Public().Address())
		return err == nil && p.Jailed
	})
	res.ConvictedAfter = time.Since(joined)
	ph := phase("cheater joined → jailed", joined, before, 0)
	res.Phases = append(res.Phases, ph)
	res.CheaterServed = ph.Cheater
	res.CheaterShare = float64(ph.Cheater) / float64(max(ph.Answers, 1))
	if !res.Convicted {
		res.Phases[len(res.Phases)-1].Name = "cheater joined, not jailed"
		res.print(cfg.Out)
		return res, nil
	}

	// 3. Honest traffic until the verifier has judged enough of the
	// honest provider's responses; the verifier's costs count from here.
	convicted := time.Now()
	before, costs0 := traffic.counts(), n.Verifier.Costs()
	feed0, budget0 := n.Verifier.Feed(), n.Verifier.Budget()
	atDrop := 0
	poll(ctx, cfg.HonestTimeout, func() bool {
		if res.Disconnected == 0 && !slices.ContainsFunc(n.Gateway.Hub.Snapshot(), func(in hub.Info) bool { return in.Key == cheaterKey.Public() }) {
			res.Disconnected, atDrop = time.Since(joined), swap.Counts().Marked
			res.AfterConviction = atDrop - res.CheaterServed
		}
		res.countHonest(n.Verifier.Verdicts(), honest)
		return res.HonestAudited() >= cfg.HonestAudits
	})
	stopTraffic()
	wg.Wait()
	ph = phase("after conviction, honest only", convicted, before, res.CheaterServed)
	res.Phases = append(res.Phases, ph)
	if res.Disconnected > 0 {
		res.AfterDropped = swap.Counts().Marked - atDrop
	}
	res.ServedTokens = ph.Tokens
	res.Costs = n.Verifier.Costs().Sub(costs0)
	feed, budget := n.Verifier.Feed(), n.Verifier.Budget()
	res.Budget, res.Judged, res.Skipped = budget.Budget, feed.Judged-feed0.Judged, feed.Skipped-feed0.Skipped
	res.Postponed = budget.Postponed - budget0.Postponed
	res.BudgetSpent, res.BudgetServed = budget.Spent-budget0.Spent, budget.Served-budget0.Served
	if last := swap.Counts().LastMarked; !last.IsZero() {
		res.LastServed = last.Sub(joined)
	}
	res.countHonest(n.Verifier.Verdicts(), honest)
	// Interrupted (Ctrl-C) or not, report what was measured.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if p, err := led.Provider(rctx, honest.Address()); err == nil {
		res.HonestJailed, res.HonestFailures = p.Jailed, p.Failures
	} else {
		return nil, fmt.Errorf("bench verify --ollama: the honest provider's standing: %w", err)
	}
	res.print(cfg.Out)
	return res, nil
}

// countHonest counts the honest provider's judged responses and failed
// verdicts.
func (r *VerifyOllamaResult) countHonest(verdicts []verifier.Posted, honest keys.PublicKey) {
	r.HonestCanaries, r.HonestSamples, r.HonestFailedVerdicts = 0, 0, 0
	for _, p := range verdicts {
		if p.Provider != honest {
			continue
		}
		switch p.Source {
		case "sample":
			r.HonestSamples += p.Responses
		default:
			r.HonestCanaries += p.Responses
		}
		if !p.Verdict.Pass {
			r.HonestFailedVerdicts++
		}
	}
}

// checkModels makes sure the Ollama serves both models and returns the
// claimed one.
func checkModels(ctx context.Context, cfg VerifyOllamaConfig) (backend.Model, error) {
	ms, err := ollama.New(cfg.OllamaURL, nil).Models(ctx)
	if err != nil {
		return backend.Model{}, fmt.Errorf("bench verify --ollama: %w", err)
	}
	find := func(name string) (backend.Model, bool) {
		i := slices.IndexFunc(ms, func(m backend.Model) bool { return sameModel(m.Name, name) })
		if i < 0 {
			return backend.Model{}, false
		}
		return ms[i], true
	}
	m, ok := find(cfg.Model)
	c, cok := find(cfg.CheatModel)
	switch {
	case !ok || !cok:
		return backend.Model{}, fmt.Errorf("bench verify --ollama: the Ollama at %s needs the models %s and %s", cfg.OllamaURL, cfg.Model, cfg.CheatModel)
	case m.Digest == c.Digest:
		return backend.Model{}, fmt.Errorf("bench verify --ollama: %s and %s are the same weights", cfg.Model, cfg.CheatModel)
	}
	return m, nil
}

// poll calls cond every 250 ms until it holds (true) or d passes.
func poll(ctx context.Context, d time.Duration, cond func() bool) bool {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	deadline := time.After(d)
	for {
		if cond() {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-deadline:
			return cond()
		case <-t.C:
		}
	}
}

func randomHex() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// consumers send the bench's consumer traffic and count its answers.
type consumers struct {
	url, key, model string
	maxTokens       int
	answers, errors atomic.Int64
	tokens          atomic.Uint64
}

type trafficCounts struct {
	answers, errors int
	tokens          uint64
}

func (c *consumers) counts() trafficCounts {
	return trafficCounts{answers: int(c.answers.Load()), errors: int(c.errors.Load()), tokens: c.tokens.Load()}
}

// run sends requests back to back until ctx ends: greedy and at the
// default temperature in turn.
func (c *consumers) run(ctx context.Context, w int) {
	api := client.New(c.url, c.key, client.WithMaxBody(1<<20))
	for k := 0; ctx.Err() == nil; k++ {
		body := map[string]any{"model": c.model, "max_tokens": c.maxTokens,
			"prompt": fmt.Sprintf("%d-%d %s: tell me about the sea", w, k, trafficMarker)}
		if k%2 == 0 {
			body["temperature"] = 0
		}
		out, err := api.Complete(ctx, body)
		switch {
		case ctx.Err() != nil:
		case err != nil:
			c.errors.Add(1)
			time.Sleep(100 * time.Millisecond)
		default:
			c.answers.Add(1)
			if u := out.Usage.Counts; u != nil {
				c.tokens.Add(u.CompletionTokens)
			}
		}
	}
}

// print writes the table.
func (r *VerifyOllamaResult) print(out io.Writer) {
	fmt.Fprintf(out, "\n%-32s %9s %8s %7s %8s %8s %7s\n", "phase", "time", "answers", "honest", "cheater", "share", "errors")
	for _, p := range r.Phases {
		fmt.Fprintf(out, "%-32s %9s %8d %7d %8d %7.1f%% %7d\n", p.Name, p.Duration.Round(time.Second), p.Answers, p.Honest(), p.Cheater,
			100*float64(p.Cheater)/float64(max(p.Answers, 1)), p.Errors)
	}
	fmt.Fprintln(out)
	if r.Convicted {
		fmt.Fprintf(out, "cheater: first failed verdict %s after joining, jailed %s after joining (target ≤ %s), %d consumer requests before (target ≤ %d), share %.1f%% (target ≤ %.0f%%)\n",
			r.FirstFail.Round(time.Second), r.ConvictedAfter.Round(time.Second), targetConvictTime, r.CheaterServed, targetCheaterRequests, 100*r.CheaterShare, 100*targetCheaterShare)
		fmt.Fprintf(out, "cheater: the gateway dropped it %s after joining (%d consumer requests reached it between its conviction and then, %d after); the last reached it %s after joining\n",
			r.Disconnected.Round(time.Second), r.AfterConviction, r.AfterDropped, r.LastServed.Round(time.Second))
	} else {
		fmt.Fprintf(out, "cheater: not jailed within %s of joining, %d consumer requests served (share %.1f%%)\n", r.Config.ConvictTimeout, r.CheaterServed, 100*r.CheaterShare)
		return
	}
	fmt.Fprintf(out, "honest: %d responses judged (%d canaries in cases, %d sampled responses; target ≥ %d), %d failed verdicts, %d failed cases on the ledger, jailed %v\n",
		r.HonestAudited(), r.HonestCanaries, r.HonestSamples, r.Config.HonestAudits, r.HonestFailedVerdicts, r.HonestFailures, r.HonestJailed)
	fmt.Fprintf(out, "verifier after probation: %d canaries (%d tokens) and %d reference replays (%d tokens decoded, %d prefilled; greedy samples %d replays, %d decoded; per-token checks of sampled responses %d, %d decoded) for %d completion tokens served to consumers: %.2f%%\n",
		r.Costs.Canaries, r.Costs.CanaryTokens, r.Costs.Replays, r.Costs.RefDecoded, r.Costs.RefPrompt, r.Costs.Greedy, r.Costs.GreedyDecoded, r.Costs.Checks, r.Costs.CheckDecoded, r.ServedTokens, 100*r.VerifyShare())
	budget := "no budget"
	if r.Budget >= 0 {
		budget = fmt.Sprintf("budget %g%% of the tokens the gateway served", 100*r.Budget)
	}
	fmt.Fprintf(out, "verifier budget after probation: %s; %d samples judged, %d skipped by the budget; %d canaries postponed; charged to the budget (providers off probation) %d tokens for %d served: %.2f%% (target ≤ %.0f%%), the rest is probation's\n",
		budget, r.Judged, r.Skipped, r.Postponed, r.BudgetSpent, r.BudgetServed, 100*r.PacedShare(), 100*targetVerifyShare)
}
