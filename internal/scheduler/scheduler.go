// Package scheduler chooses which provider serves a request. It filters the
// connected providers (model and digest, not paused, not failing, a free
// slot, price within the consumer's cap, the request's ignore and order
// lists), then
// follows the request's explicit order or sort, then prefix and session
// affinity while the affine provider's load stays within a bound, and
// otherwise scores the candidates (price, recent time to first token and
// tokens/s, load) and picks by power of two choices. When nothing fits it
// says exactly why, with counts, so the consumer gets a useful error.
//
// The package does no I/O and reads no clock: the gateway feeds it
// snapshots of the connected providers and observations of served
// requests, and with a seeded Config.Rand every choice is deterministic.
package scheduler

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// Policy chooses among the providers that pass the filters.
type Policy int

// Policies. The baselines exist to measure the market policy against
// (`idlegrid bench routing`); they apply the same filters but ignore
// order, sort, affinity and speed.
const (
	// PolicyMarket is the default: order, sort, affinity with bounded
	// load, then power of two choices on the score.
	PolicyMarket Policy = iota
	// PolicyRoundRobin takes the eligible providers in turn.
	PolicyRoundRobin
	// PolicyLeastLoaded takes the provider with the lowest share of its
	// slots in use (ties broken at random).
	PolicyLeastLoaded
)

func (p Policy) String() string {
	switch p {
	case PolicyMarket:
		return "market"
	case PolicyRoundRobin:
		return "round-robin"
	case PolicyLeastLoaded:
		return "least-loaded"
	}
	return fmt.Sprintf("policy(%d)", int(p))
}

// Config configures a Scheduler. The zero value is the market policy with
// no fee.
type Config struct {
	Policy Policy
	// FeeBps is the gateway's fee in basis points of the consumer price
	// (see ConsumerPrice); at most MaxFeeBps.
	FeeBps uint32
	// Rand drives power of two choices and tie breaks; nil: a randomly
	// seeded one. The scheduler serializes its use.
	Rand *rand.Rand
	// AffinityEntries bounds the remembered prefixes and sessions
	// (default 65536).
	AffinityEntries int
	// AffinityLoadFactor is the bound on an affine provider's load, as a
	// multiple of its fair share of the in-flight requests (default 1.25,
	// at least 1): past it the request goes elsewhere and the prefix
	// follows it.
	AffinityLoadFactor float64
	// MinAffinityBytes is the shortest prompt prefix worth following
	// (default 512 bytes, about a hundred tokens): shorter shared prefixes,
	// like a one-line system prompt, cost little to recompute and would
	// pile unrelated requests onto one provider.
	MinAffinityBytes int
}

// Scheduler picks providers. It is safe for concurrent use.
type Scheduler struct {
	cfg Config

	mu sync.Mutex
	// allowed says which digests may serve a model; nil allows all.
	allowed func(model, digest string) bool
	rng     *rand.Rand
	rr      uint64
	stats   map[statKey]*Estimate
	aff     *affinityTable
}

// New checks cfg and returns a Scheduler.
func New(cfg Config) (*Scheduler, error) {
	switch {
	case cfg.FeeBps > MaxFeeBps:
		return nil, fmt.Errorf("scheduler: fee %d bps: want less than 10000", cfg.FeeBps)
	case cfg.Policy < PolicyMarket || cfg.Policy > PolicyLeastLoaded:
		return nil, fmt.Errorf("scheduler: unknown %s", cfg.Policy)
	case cfg.AffinityLoadFactor != 0 && (cfg.AffinityLoadFactor < 1 || math.IsInf(cfg.AffinityLoadFactor, 0) || math.IsNaN(cfg.AffinityLoadFactor)):
		return nil, errors.New("scheduler: affinity load factor must be at least 1")
	case cfg.AffinityEntries < 0 || cfg.MinAffinityBytes < 0:
		return nil, errors.New("scheduler: negative affinity size")
	}
	if cfg.AffinityEntries == 0 {
		cfg.AffinityEntries = 1 << 16
	}
	if cfg.AffinityLoadFactor == 0 {
		cfg.AffinityLoadFactor = 1.25
	}
	if cfg.MinAffinityBytes == 0 {
		cfg.MinAffinityBytes = 512
	}
	rng := cfg.Rand
	if rng == nil {
		rng = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	return &Scheduler{cfg: cfg, rng: rng, stats: map[statKey]*Estimate{}, aff: newAffinityTable(cfg.AffinityEntries)}, nil
}

// Candidate is one connected provider as the scheduler sees it.
type Candidate struct {
	Key      keys.PublicKey
	Models   []protocol.Model
	Slots    int
	InFlight int
	Paused   bool
	// Failing: the gateway's circuit breaker for this provider is open
	// (repeated recent failures), or half-open with its one trial request
	// already in flight.
	Failing bool
	// Jailed: the ledger convicted it (verification); it serves nobody.
	Jailed bool
	// Reputation is its ledger reputation in thousandths; 0 when unknown,
	// which counts as the lowest: unknown is not perfect.
	Reputation uint64
}

// Choice is the picked provider, its entry for the model, and the consumer
// prices per million tokens: its floors plus the gateway's fee.
type Choice struct {
	Key                          keys.PublicKey
	Model                        protocol.Model
	PricePrompt, PriceCompletion money.Amount
}

// Request is what the scheduler needs to know about one request; NewRequest
// builds it.
type Request struct {
	// Model as the consumer named it.
	Model string
	Prefs Preferences
	// Affinity of the prompt and session.
	Affinity Affinity
	// PromptTokens and MaxTokens estimate the request's size, to weigh
	// time to first token against generation speed and prompt price
	// against completion price.
	PromptTokens, MaxTokens int
	// Exclude are providers that already failed this request: a retry
	// never goes back to them.
	Exclude []keys.PublicKey
	// Logprobs: the request asks for log-probabilities, so providers whose
	// backend returns none (protocol.Model.NoLogprobs) cannot take it.
	Logprobs bool
	// Needs are the capabilities the model must have (protocol.Request
	// Needs), so providers whose model lacks one cannot take it.
	Needs []string
	// Format: the request asks for structured output, which agents
	// before protocol version 5 ignore (they list no capabilities).
	Format bool
	// NoCompletion: the request generates nothing (embeddings), so only
	// the prompt price and the time to the answer count.
	NoCompletion bool
}

// NewRequest describes req for Pick, with the consumer's preferences and
// explicit session id ("" for none).
func (s *Scheduler) NewRequest(req *protocol.Request, prefs Preferences, session string) Request {
	n := len(req.Prompt) + len(req.System)
	for _, m := range req.Messages {
		n += len(m.Content) + len(m.Role)
	}
	for _, in := range req.Input {
		n += len(in)
	}
	return Request{Model: req.Model, Prefs: prefs, Affinity: s.AffinityOf(req, session), PromptTokens: n / 4, MaxTokens: req.Options.MaxTokens,
		Logprobs: req.Options.Logprobs, Needs: req.Needs(), Format: len(req.Format) > 0, NoCompletion: req.Kind == protocol.KindEmbed}
}

// SetDigestPolicy sets which weights may serve a model (the ledger's
// allowed digests); providers serving others are never chosen. nil allows
// every digest.
func (s *Scheduler) SetDigestPolicy(allowed func(model, digest string) bool) {
	s.mu.Lock()
	s.allowed = allowed
	s.mu.Unlock()
}

// MatchModel reports whether a provider's model name serves a requested
// name: equal, or equal but for Ollama's implicit ":latest" tag.
func MatchModel(offered, requested string) bool {
	return offered == requested || offered == requested+":latest" || offered+":latest" == requested
}

// lacks returns the first capability r needs that m lacks, "" for none.
// Structured output needs a model advertised by an agent of protocol
// version 5 or later, which always lists capabilities.
func lacks(m *protocol.Model, r *Request) string {
	for _, c := range r.Needs {
		if !m.Has(c) {
			return c
		}
	}
	if r.Format && len(m.Capabilities) == 0 {
		return "structured output"
	}
	return ""
}

func excluded(ks []keys.PublicKey, k keys.PublicKey) bool {
	for _, x := range ks {
		if x == k {
			return true
		}
	}
	return false
}

func find(models []protocol.Model, name string) (protocol.Model, bool) {
	for _, m := range models {
		if MatchModel(m.Name, name) {
			return m, true
		}
	}
	return protocol.Model{}, false
}

// entry is a candidate that offers the model, with its consumer prices.
type entry struct {
	key             keys.PublicKey
	model           protocol.Model
	pp, pc          money.Amount
	inflight, slots int
	order           int    // index in Prefs.Order; -1 when not listed
	rep             uint64 // reputation in thousandths, at least 1
}

func (e *entry) load() float64 { return float64(e.inflight) / float64(e.slots) }

// classify splits the candidates offering the model into the eligible ones
// and, for the load bound, the pool of those that would be eligible with a
// free slot; u counts the rest by reason.
func (s *Scheduler) classify(cands []Candidate, r *Request) (elig, pool []entry, u *Unplaceable) {
	p := &r.Prefs
	u = &Unplaceable{Model: r.Model, RequireDigest: p.RequireDigest, MaxPrompt: p.MaxPrompt, MaxCompletion: p.MaxCompletion}
	restrict := p.NoFallbacks && len(p.Order) > 0
	for i := range cands {
		c := &cands[i]
		m, ok := find(c.Models, r.Model)
		if !ok {
			continue
		}
		u.Offering++
		e := entry{key: c.Key, model: m, inflight: c.InFlight, slots: c.Slots, order: listed(p.Order, c.Key),
			pp: ConsumerPrice(m.PricePromptPerMTok, s.cfg.FeeBps), pc: ConsumerPrice(m.PriceCompletionPerMTok, s.cfg.FeeBps), rep: reputation(c.Reputation)}
		switch {
		case s.allowed != nil && !s.allowed(m.Name, m.Digest):
			u.NotAllowed++
		case c.Jailed:
			u.Jailed++
		case lacks(&m, r) != "":
			u.Incapable++
			u.Lacking = lacks(&m, r)
		case r.Logprobs && m.NoLogprobs:
			u.NoLogprobs++
		case matchesAny(p.Ignore, c.Key):
			u.Ignored++
		case p.RequireDigest != "" && !digestMatches(p.RequireDigest, m.Digest):
			u.WrongDigest++
		case restrict && e.order < 0:
			u.NotListed++
		case p.MaxPrompt != nil && e.pp > *p.MaxPrompt || p.MaxCompletion != nil && e.pc > *p.MaxCompletion:
			u.overPrice(e.pp, e.pc)
		case c.Failing || excluded(r.Exclude, c.Key):
			u.Failing++
		case c.Paused:
			u.Paused++
		case c.InFlight >= c.Slots:
			u.Busy++
			pool = append(pool, e)
		default:
			elig = append(elig, e)
			pool = append(pool, e)
		}
	}
	return elig, pool, u
}

// Pick chooses a provider for r among cands, or returns an *Unplaceable.
func (s *Scheduler) Pick(cands []Candidate, r *Request) (Choice, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	elig, pool, u := s.classify(cands, r)
	if len(elig) == 0 {
		return Choice{}, u
	}
	var e *entry
	switch s.cfg.Policy {
	case PolicyRoundRobin:
		e = &elig[s.rr%uint64(len(elig))]
		s.rr++
	case PolicyLeastLoaded:
		e = s.leastLoaded(elig)
	default:
		e = s.market(elig, pool, r)
	}
	return Choice{Key: e.key, Model: e.model, PricePrompt: e.pp, PriceCompletion: e.pc}, nil
}

// Explain says why r cannot be placed on cands now; nil when it can.
func (s *Scheduler) Explain(cands []Candidate, r *Request) *Unplaceable {
	s.mu.Lock()
	defer s.mu.Unlock()
	elig, _, u := s.classify(cands, r)
	if len(elig) > 0 {
		return nil
	}
	return u
}

// Placed records that r was dispatched to key: the provider now holds r's
// prefixes and session.
func (s *Scheduler) Placed(r *Request, key keys.PublicKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range r.Affinity.keys() {
		s.aff.put(k, key)
	}
}

func (s *Scheduler) leastLoaded(elig []entry) *entry {
	best, ties := 0, 1
	for i := 1; i < len(elig); i++ {
		switch li, lb := elig[i].load(), elig[best].load(); {
		case li < lb:
			best, ties = i, 1
		case li == lb:
			// Reservoir sampling: each tied provider is kept with equal
			// probability, so idle providers share the work.
			ties++
			if s.rng.IntN(ties) == 0 {
				best = i
			}
		}
	}
	return &elig[best]
}

// market applies the request's order, then its sort, then affinity, then
// power of two choices on the score.
func (s *Scheduler) market(elig, pool []entry, r *Request) *entry {
	if len(r.Prefs.Order) > 0 {
		best := -1
		for i := range elig {
			if o := elig[i].order; o >= 0 && (best < 0 || o < elig[best].order) {
				best = i
			}
		}
		if best >= 0 {
			return &elig[best]
		}
		// None of the listed providers can take it now: fall back (with
		// NoFallbacks, classify left only listed providers eligible).
	}
	sp := s.speeds(elig)
	set := sortBy(elig, sp, r)
	if i, ok := s.affine(elig, set, pool, r); ok {
		return &elig[i]
	}
	return &elig[s.twoChoices(elig, sp, set, r)]
}

// speed is a candidate's expected time to first token (seconds) and
// delivered rate (tokens/s; 0 unknown).
type speed struct {
	ttft, tps float64
}

// speeds estimates each eligible provider's speed from the gateway's
// observations, else as the mean of the others, so that a provider nobody
// has measured yet is neither favoured nor starved. The rate a provider
// advertises is its own claim and plays no part.
func (s *Scheduler) speeds(elig []entry) []speed {
	out := make([]speed, len(elig))
	hasTTFT := make([]bool, len(elig))
	hasTPS := make([]bool, len(elig))
	var sumTTFT, sumTPS float64
	var nTTFT, nTPS int
	for i := range elig {
		e := &elig[i]
		st := s.stats[statKey{e.key, e.model.Name}]
		if st != nil && st.FirstTokenSamples > 0 {
			out[i].ttft, hasTTFT[i] = st.FirstToken.Seconds(), true
			sumTTFT += out[i].ttft
			nTTFT++
		}
		if st != nil && st.RateSamples > 0 {
			out[i].tps, hasTPS[i] = st.TokensPerSecond, true
			sumTPS += out[i].tps
			nTPS++
		}
	}
	for i := range out {
		if !hasTTFT[i] && nTTFT > 0 {
			out[i].ttft = sumTTFT / float64(nTTFT)
		}
		if !hasTPS[i] && nTPS > 0 {
			out[i].tps = sumTPS / float64(nTPS)
		}
	}
	return out
}

// expectedTokens is the completion length the score assumes: the request's
// limit, capped, since most answers stop well before a large limit (none
// for a request that generates nothing).
func expectedTokens(r *Request) float64 {
	if r.NoCompletion {
		return 0
	}
	if r.MaxTokens <= 0 || r.MaxTokens > 256 {
		return 256
	}
	return float64(r.MaxTokens)
}

// latency is the expected time to serve r idle: the time to first token
// plus the expected tokens at the delivered rate, at least a millisecond so
// that ratios stay finite. The delivered rate already includes the wait for
// the first token, so that wait counts twice, as a streaming consumer feels
// it: a provider that holds its answer back until the end has its first
// token as late as its last and ranks behind one that streams the same
// tokens.
func latency(sp speed, r *Request) float64 {
	l := sp.ttft
	if sp.tps > 0 {
		l += expectedTokens(r) / sp.tps
	}
	return max(l, 0.001)
}

// cost is the consumer's expected cost of r at e's prices, in arbitrary
// but common units (a score, not money).
func cost(e *entry, r *Request) float64 {
	return float64(max(r.PromptTokens, 0))*float64(e.pp) + expectedTokens(r)*float64(e.pc)
}

// sortBy returns the indices of the providers r's sort ranks best: the
// cheapest for price, those within 10% of the best for throughput and
// latency (measurements are noisy); all of them without a sort.
func sortBy(elig []entry, sp []speed, r *Request) []int {
	all := make([]int, len(elig))
	for i := range all {
		all[i] = i
	}
	keep := func(ok func(i int) bool) []int {
		var out []int
		for _, i := range all {
			if ok(i) {
				out = append(out, i)
			}
		}
		return out
	}
	switch r.Prefs.Sort {
	case SortPrice:
		best := math.Inf(1)
		for i := range elig {
			best = min(best, cost(&elig[i], r))
		}
		return keep(func(i int) bool { return cost(&elig[i], r) <= best })
	case SortThroughput:
		best := 0.0
		for i := range sp {
			best = max(best, sp[i].tps)
		}
		return keep(func(i int) bool { return sp[i].tps >= 0.9*best })
	case SortLatency:
		best := math.Inf(1)
		for i := range sp {
			best = min(best, sp[i].ttft)
		}
		return keep(func(i int) bool { return sp[i].ttft <= max(1.1*best, best+0.001) })
	}
	return all
}

// affine returns the provider in set that last took r's longest known
// prefix (or its session), when its load stays within the bound: at most
// AffinityLoadFactor times its share, by slots, of the pool's in-flight
// requests counting this one, rounded up (consistent hashing with bounded
// loads applies the same bound). Past it the request is placed as if new,
// and Placed moves the prefix to its new provider.
func (s *Scheduler) affine(elig []entry, set []int, pool []entry, r *Request) (int, bool) {
	ks := r.Affinity.keys()
	if len(ks) == 0 {
		return 0, false
	}
	var inflight, slots int
	for i := range pool {
		inflight += pool[i].inflight
		slots += pool[i].slots
	}
	for _, k := range ks {
		p, ok := s.aff.get(k)
		if !ok {
			continue
		}
		for _, i := range set {
			e := &elig[i]
			if e.key != p {
				continue
			}
			bound := math.Ceil(s.cfg.AffinityLoadFactor * float64(inflight+1) * float64(e.slots) / float64(slots))
			if float64(e.inflight+1) <= bound {
				return i, true
			}
			break
		}
	}
	return 0, false
}

// twoChoices draws two distinct providers of set and keeps the better by
// score. It spreads load almost as well as scanning for the best, without
// every request herding onto the same momentarily best provider.
func (s *Scheduler) twoChoices(elig []entry, sp []speed, set []int, r *Request) int {
	if len(set) == 1 {
		return set[0]
	}
	i := s.rng.IntN(len(set))
	j := s.rng.IntN(len(set) - 1)
	if j >= i {
		j++
	}
	a, b := set[i], set[j]
	if better(&elig[b], &elig[a], sp[b], sp[a], r) {
		return b
	}
	return a
}

// reputation is a candidate's reputation for scoring: unknown (0) counts
// as the lowest, and nobody counts as zero (it would divide the score).
func reputation(milli uint64) uint64 {
	switch {
	case milli > 1000:
		return 1000
	case milli < 10:
		return 10
	}
	return milli
}

// better reports whether a scores strictly better than b. Each criterion
// counts relative to the better of the two: expected latency under load
// (latency × (1 + share of slots in use)), expected cost and the ledger's
// reputation (the share of audits passed). Being twice as fast weighs as
// much as being twice as cheap or twice as reputable.
func better(a, b *entry, sa, sb speed, r *Request) bool {
	la := latency(sa, r) * (1 + a.load())
	lb := latency(sb, r) * (1 + b.load())
	d := (la - lb) / min(la, lb)
	d += (float64(b.rep) - float64(a.rep)) / float64(min(a.rep, b.rep))
	ca, cb := cost(a, r), cost(b, r)
	if m := min(ca, cb); m > 0 {
		d += (ca - cb) / m
	} else if ca != cb {
		d += (ca - cb) / max(ca, cb) // free against paid counts as twice as cheap
	}
	return d < 0
}
