package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/ledger"
)

// BenchConfig sizes `idlegrid bench verify`.
type BenchConfig struct {
	// Trials independent audit streams of Horizon audited requests each,
	// per cheater and mode (different prompts per stream, a fresh cheater
	// per stream).
	Trials  int
	Horizon int
	// HonestAudits audited requests per honest control and mode, in one
	// stream (the conviction window covers them all when BlocksPerAudit
	// ≤ ConvictWindowBlocks / HonestAudits).
	HonestAudits int
	// CanaryBatch canaries make one canary case (one verdict).
	CanaryBatch int
	// RescoreShare and CanaryShare are the shares of a provider's served
	// requests that are re-scored and that are canaries.
	RescoreShare, CanaryShare float64
	// PrefillSpeedup is how many prompt tokens a backend processes in the
	// time of one decoded token (prefill runs all positions in parallel).
	PrefillSpeedup float64
	// BlocksPerAudit spaces audits on the chain for the conviction rule.
	BlocksPerAudit uint64
	// Sweep adds a tolerance sweep: the perturbed model at the
	// SweepHonest noise levels audited as an honest control and at the
	// SweepCheat levels as a cheater, to show where the rules stop
	// passing honest noise and start convicting a quantization.
	Sweep                   bool
	SweepHonest, SweepCheat []float64
	Params                  ledger.Params
	Judge                   Judge
	Canary                  Canary
	Mix                     PromptMix
	Out                     io.Writer
}

// DefaultBench is what `idlegrid bench verify` runs, in about a minute on
// one core.
func DefaultBench() BenchConfig {
	return BenchConfig{
		Trials: 100, Horizon: 200, HonestAudits: 10_000, CanaryBatch: 8,
		RescoreShare: 0.035, CanaryShare: 0.01, PrefillSpeedup: 8, BlocksPerAudit: 1,
		SweepHonest: []float64{0.02, 0.03, 0.05}, SweepCheat: []float64{0.03, 0.05, 0.07, 0.15},
		Params: ledger.DefaultParams(), Judge: DefaultJudge(), Canary: DefaultCanary(),
		Mix: DefaultPromptMix(benchModel),
	}
}

const benchModel = "sim"

// Mode is how a verifier audits.
type Mode string

// Audit modes.
const (
	// ModeRescore: a served request's response re-scored by the reference
	// (teacher forcing, log-probabilities); one case per request.
	ModeRescore Mode = "rescore"
	// ModeCanary: greedy canaries replayed by a reference without
	// log-probabilities; one case per CanaryBatch canaries.
	ModeCanary Mode = "canary"
)

// BenchRow is one provider variant audited in one mode.
type BenchRow struct {
	Variant string
	Honest  bool
	Mode    Mode
	// Requests audited, Cases judged and Failed.
	Requests, Cases, Failed int
	// Rules counts failed cases by the rule that failed them.
	Rules map[Rule]int
	// Cheaters: Trials streams, Convicted of them within Horizon
	// requests, and the requests until conviction of those convicted.
	Trials, Convicted int
	ToConviction      []int
	// Binomial is the probability of conviction within Horizon requests
	// if cases fail independently at the measured rate.
	Binomial float64
	// Differed counts greedy cases whose text was not the reference's
	// greedy text (some token not its best choice): what the tolerance
	// is for.
	Differed int
	// Honest controls: convictions in the stream.
	Convictions int
	// ProviderCost and VerifierCost add up compute in decoded-token
	// equivalents over the audited requests.
	ProviderCost, VerifierCost float64
}

// Detection is the share of cases that failed.
func (r *BenchRow) Detection() float64 { return ratio(float64(r.Failed), float64(r.Cases)) }

// ConvictedShare is the share of trials convicted within the horizon.
func (r *BenchRow) ConvictedShare() float64 { return ratio(float64(r.Convicted), float64(r.Trials)) }

// CostRatio is verifier compute per audited request over provider compute
// per served request.
func (r *BenchRow) CostRatio() float64 { return ratio(r.VerifierCost, r.ProviderCost) }

// BenchResult is the benchmark's outcome.
type BenchResult struct {
	Config BenchConfig
	Rows   []BenchRow
	// Sweep holds the tolerance sweep's rows, when asked for.
	Sweep []BenchRow
	// VerifyShare is verifier compute as a share of served compute at the
	// configured audit shares (honest providers, PrefillSpeedup cost
	// model); VerifyShareFlat counts every processed token alike.
	VerifyShare, VerifyShareFlat float64
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// variant builds one provider, fresh for each stream.
type variant struct {
	name   string
	honest bool
	make   func() backend.Backend
}

func benchVariants(ref *sim.Sim, other *sim.Sim, words []string) []variant {
	noisy := func(noise float64, seed uint64) func() backend.Backend {
		return func() backend.Backend { return &sim.Perturbed{Sim: ref, Noise: noise, Seed: seed} }
	}
	return []variant{
		{"quantized", false, noisy(0.1, 21)},
		{"other-model", false, func() backend.Backend { return other }},
		{"fabricated", false, func() backend.Backend { return &Fabricate{Words: words, MinWords: 8, MaxWords: 60} }},
		{"inflated", false, func() backend.Backend { return &Inflate{Backend: ref, Factor: 1.25} }},
		{"replayed", false, func() backend.Backend { return &Replay{Backend: ref} }},
		{"truncated", false, func() backend.Backend { return &Truncate{Backend: ref, Cap: 16} }},
		{"honest-threads", true, noisy(0.0005, 11)},
		{"honest-batch", true, noisy(0.002, 12)},
		{"honest-hardware", true, noisy(0.01, 13)},
		{"honest-seed", true, func() backend.Backend { return &Reseed{Backend: ref} }},
	}
}

// NewBenchReference is the reference model of the benchmark and the
// tests: the default simulator model, without pacing.
func NewBenchReference() (*sim.Sim, error) { return benchSim(1) }

func benchSim(weights uint64) (*sim.Sim, error) {
	cfg := sim.DefaultConfig()
	m := &cfg.Models[0]
	m.Name, m.Weights, m.FirstToken, m.TokensPerSecond = benchModel, weights, 0, 0
	return sim.New(cfg)
}

// Bench measures detection, conviction and cost for every variant in both
// modes, printing a table to cfg.Out.
func Bench(ctx context.Context, cfg BenchConfig) (*BenchResult, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	out := cfg.Out
	if out == nil {
		out = io.Discard
	}
	ref, err := NewBenchReference()
	if err != nil {
		return nil, err
	}
	other, err := benchSim(2)
	if err != nil {
		return nil, err
	}
	words, err := harvestWords(ctx, ref, cfg.Mix, 64)
	if err != nil {
		return nil, err
	}
	a := &auditor{cfg: cfg, ref: ref}
	res := &BenchResult{Config: cfg}
	fmt.Fprintf(out, "verification benchmark: %d cheater streams of %d audited requests per mode, %d audited requests per honest control and mode\n",
		cfg.Trials, cfg.Horizon, cfg.HonestAudits)
	fmt.Fprintf(out, "conviction: %d failed cases within %d blocks (ledger defaults), one audited request per %d block(s); canary case = %d canaries\n\n",
		cfg.Params.ConvictFailures, cfg.Params.ConvictWindowBlocks, cfg.BlocksPerAudit, cfg.CanaryBatch)
	printHeader(out)
	for vi, v := range benchVariants(ref, other, words) {
		for _, mode := range []Mode{ModeRescore, ModeCanary} {
			row, err := a.run(ctx, vi, v, mode)
			if err != nil {
				return nil, fmt.Errorf("verify: bench %s/%s: %w", v.name, mode, err)
			}
			printRow(out, &row)
			res.Rows = append(res.Rows, row)
		}
	}
	res.VerifyShare, res.VerifyShareFlat = a.verifyShare()
	fmt.Fprintf(out, "\ncost model: a backend prefills %.0f prompt tokens in the time of one decoded token; serving = prompt/%.0f + completion,\n",
		cfg.PrefillSpeedup, cfg.PrefillSpeedup)
	fmt.Fprintf(out, "re-scoring = (prompt + completion)/%.0f (one teacher-forced prefill), canary = each replay's (prompt + prefix)/%.0f + decoded tokens\n",
		cfg.PrefillSpeedup, cfg.PrefillSpeedup)
	fmt.Fprintf(out, "audit shares: %.1f%% of requests re-scored, %.1f%% canaries: %d audited requests = %.0f served requests\n",
		100*cfg.RescoreShare, 100*cfg.CanaryShare, cfg.Horizon, float64(cfg.Horizon)/(cfg.RescoreShare+cfg.CanaryShare))
	fmt.Fprintf(out, "verifier compute = %.2f%% of served compute (%.2f%% counting every token alike)\n\n", 100*res.VerifyShare, 100*res.VerifyShareFlat)
	if cfg.Sweep {
		if res.Sweep, err = a.sweep(ctx, out); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// sweep audits the perturbed model at the sweep's noise levels.
func (a *auditor) sweep(ctx context.Context, out io.Writer) ([]BenchRow, error) {
	fmt.Fprintf(out, "tolerance sweep: the model with logit noise σ (honest-hardware is 0.01, quantized 0.1), audited as honest and as a cheater\n")
	printHeader(out)
	type level struct {
		noise  float64
		honest bool
	}
	var levels []level
	for _, n := range a.cfg.SweepHonest {
		levels = append(levels, level{n, true})
	}
	for _, n := range a.cfg.SweepCheat {
		levels = append(levels, level{n, false})
	}
	var rows []BenchRow
	for i, l := range levels {
		name := fmt.Sprintf("σ=%.3f cheater", l.noise)
		if l.honest {
			name = fmt.Sprintf("σ=%.3f honest", l.noise)
		}
		v := variant{name, l.honest, func() backend.Backend {
			return &sim.Perturbed{Sim: a.ref, Noise: l.noise, Seed: 31 + uint64(i)}
		}}
		for _, mode := range []Mode{ModeRescore, ModeCanary} {
			row, err := a.run(ctx, 100+i, v, mode)
			if err != nil {
				return nil, fmt.Errorf("verify: sweep %s/%s: %w", v.name, mode, err)
			}
			printRow(out, &row)
			rows = append(rows, row)
		}
	}
	return rows, nil
}

func (cfg *BenchConfig) check() error {
	switch {
	case cfg.Trials < 1 || cfg.Horizon < 1 || cfg.HonestAudits < 1 || cfg.CanaryBatch < 1:
		return errors.New("verify: bench: trials, horizon, honest audits and canary batch must be positive")
	case cfg.RescoreShare < 0 || cfg.CanaryShare < 0 || cfg.RescoreShare+cfg.CanaryShare <= 0 || cfg.RescoreShare+cfg.CanaryShare > 1:
		return errors.New("verify: bench: audit shares must be non-negative and add up to at most 1")
	case !(cfg.PrefillSpeedup >= 1) || math.IsInf(cfg.PrefillSpeedup, 0):
		return errors.New("verify: bench: prefill speedup must be at least 1")
	case cfg.Params.ConvictFailures == 0:
		return errors.New("verify: bench: the ledger params convict nobody (convict_failures 0)")
	}
	return nil
}

// auditor runs audits and accounts for their cost.
type auditor struct {
	cfg BenchConfig
	ref *sim.Sim
	// Honest traffic, for the cost share: provider cost per served
	// request and verifier cost per audit, by mode.
	served, servedFlat   costSum
	rescore, rescoreFlat costSum
	canary, canaryFlat   costSum
}

type costSum struct {
	total float64
	n     int
}

func (c *costSum) add(x float64) { c.total += x; c.n++ }
func (c *costSum) mean() float64 { return ratio(c.total, float64(c.n)) }

// run audits one variant in one mode.
func (a *auditor) run(ctx context.Context, vi int, v variant, mode Mode) (BenchRow, error) {
	row := BenchRow{Variant: v.name, Honest: v.honest, Mode: mode, Rules: map[Rule]int{}}
	perCase := 1
	if mode == ModeCanary {
		perCase = a.cfg.CanaryBatch
	}
	blocks := a.cfg.BlocksPerAudit * uint64(perCase)
	streams, length := a.cfg.Trials, a.cfg.Horizon
	if v.honest {
		streams, length = 1, a.cfg.HonestAudits
	}
	cases := max(length/perCase, 1)
	for s := range streams {
		b := v.make()
		base := (vi*1000+s)*100_000 + 7
		if mode == ModeCanary {
			base += 50_000
		}
		var fails []bool
		for c := range cases {
			if err := ctx.Err(); err != nil {
				return row, err
			}
			verdict, differed, err := a.audit(ctx, b, mode, base+c*perCase, perCase, &row, v.honest)
			if err != nil {
				return row, err
			}
			if differed {
				row.Differed++
			}
			row.Requests += perCase
			row.Cases++
			fails = append(fails, !verdict.Pass)
			if !verdict.Pass {
				row.Failed++
				row.Rules[verdict.Rule]++
			}
		}
		conv := Convictions(a.cfg.Params, fails, blocks)
		if v.honest {
			row.Convictions += len(conv)
			continue
		}
		row.Trials++
		if len(conv) > 0 {
			row.Convicted++
			row.ToConviction = append(row.ToConviction, conv[0]*perCase)
		}
	}
	if !v.honest {
		row.Binomial = binomialTail(max(a.cfg.Horizon/perCase, 1), row.Detection(), int(a.cfg.Params.ConvictFailures))
	}
	return row, nil
}

// audit judges one case: a re-scored request, or a batch of canaries. It
// also reports whether a greedy answer in the case differed from the
// reference's.
func (a *auditor) audit(ctx context.Context, b backend.Backend, mode Mode, first, n int, row *BenchRow, honest bool) (Verdict, bool, error) {
	k := a.cfg.PrefillSpeedup
	if mode == ModeRescore {
		req := a.cfg.Mix.Traffic(first)
		resp, err := Collect(ctx, b, req)
		if err != nil {
			return Verdict{}, false, err
		}
		sc, err := SimScorer{Sim: a.ref}.Score(ctx, req, resp.Text)
		if err != nil {
			return Verdict{}, false, err
		}
		prompt, completion := float64(sc.PromptTokens), float64(len(sc.Tokens))
		row.ProviderCost += prompt/k + completion
		row.VerifierCost += (prompt + completion) / k
		if honest {
			a.served.add(prompt/k + completion)
			a.servedFlat.add(prompt + completion)
			a.rescore.add((prompt + completion) / k)
			a.rescoreFlat.add(prompt + completion)
		}
		v, err := a.cfg.Judge.Rescore(req, resp, sc)
		greedy := req.Options.Temperature == nil || !(*req.Options.Temperature > 0)
		return v, greedy && v.MaxDeficit > 0, err
	}
	rs := make([]Replayed, 0, n)
	differed := false
	for i := range n {
		req := a.cfg.Mix.Canary(first + i)
		resp, err := Collect(ctx, b, req)
		if err != nil {
			return Verdict{}, false, err
		}
		r, err := a.cfg.Canary.Replay(ctx, a.ref, req, resp)
		if err != nil {
			return Verdict{}, false, err
		}
		rs = append(rs, r)
		differed = differed || r.Divergences > 0 || r.EarlyStop
		sc, err := a.ref.Score(req, "")
		if err != nil {
			return Verdict{}, false, err
		}
		prompt := float64(sc.PromptTokens)
		completion := float64(r.Tokens)
		verifier := float64(r.RefPrompt)/k + float64(r.RefDecoded)
		row.ProviderCost += prompt/k + completion
		row.VerifierCost += verifier
		if honest {
			a.canary.add(verifier)
			a.canaryFlat.add(float64(r.RefPrompt + r.RefDecoded))
		}
	}
	return a.cfg.Canary.Decide(rs), differed, nil
}

// verifyShare is verifier compute over served compute for the honest
// providers at the configured audit shares, with the prefill speedup and
// counting every token alike.
func (a *auditor) verifyShare() (float64, float64) {
	share := func(served, rescore, canary costSum) float64 {
		return ratio(a.cfg.RescoreShare*rescore.mean()+a.cfg.CanaryShare*canary.mean(), served.mean())
	}
	return share(a.served, a.rescore, a.canary), share(a.servedFlat, a.rescoreFlat, a.canaryFlat)
}

// harvestWords collects distinct words the reference uses in its answers:
// the fabricating cheater's vocabulary.
func harvestWords(ctx context.Context, ref *sim.Sim, mix PromptMix, answers int) ([]string, error) {
	seen := map[string]bool{}
	var words []string
	for i := range answers {
		resp, err := Collect(ctx, ref, mix.Canary(-1-i))
		if err != nil {
			return nil, err
		}
		for _, t := range splitTokens(resp.Text) {
			if strings.HasPrefix(t, " ") && !seen[t] {
				seen[t] = true
				words = append(words, t)
			}
		}
	}
	return words, nil
}
