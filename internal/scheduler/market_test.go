package scheduler

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// priced is an idle provider of "sim" with 4 slots and the given floors.
func priced(n byte, pp, pc money.Amount) Candidate {
	c := offering(n, 4, 0, false, "sim")
	c.Models[0].PricePromptPerMTok, c.Models[0].PriceCompletionPerMTok = pp, pc
	return c
}

func withDigest(c Candidate, d string) Candidate {
	c.Models[0].Digest = d
	return c
}

func busy(c Candidate) Candidate {
	c.InFlight = c.Slots
	return c
}

func paused(c Candidate) Candidate {
	c.Paused = true
	return c
}

func ref(t *testing.T, s string) ProviderRef {
	t.Helper()
	r, err := ParseProviderRef(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func amount(a money.Amount) *money.Amount { return &a }

func TestPreferences(t *testing.T) {
	digestA, digestB := strings.Repeat("a", 64), strings.Repeat("b", 64)
	tests := []struct {
		name  string
		cands []Candidate
		prefs Preferences
		fee   uint32
		// want is the only acceptable provider, with its consumer prices;
		// 0 when Pick must fail with msg.
		want       byte
		wantPrices [2]money.Amount
		msg        string
		onlyBusy   bool
	}{
		{name: "max_price.prompt leaves the cheaper",
			cands: []Candidate{priced(1, 350_000, 600_000), priced(2, 200_000, 600_000)},
			prefs: Preferences{MaxPrompt: amount(200_000)}, want: 2, wantPrices: [2]money.Amount{200_000, 600_000}},
		{name: "max_price.completion leaves the cheaper",
			cands: []Candidate{priced(1, 100_000, 900_000), priced(2, 200_000, 600_000)},
			prefs: Preferences{MaxCompletion: amount(600_000)}, want: 2, wantPrices: [2]money.Amount{200_000, 600_000}},
		{name: "all above max_price.prompt",
			cands: []Candidate{priced(1, 350_000, 600_000), priced(2, 500_000, 600_000), priced(3, 300_000, 900_000)},
			prefs: Preferences{MaxPrompt: amount(200_000)},
			msg:   `model "sim": 3 providers online, all above max_price prompt 0.20/Mtok (cheapest 0.30)`},
		{name: "above one cap or the other",
			cands: []Candidate{priced(1, 350_000, 600_000), priced(2, 100_000, 900_000)},
			prefs: Preferences{MaxPrompt: amount(200_000), MaxCompletion: amount(700_000)},
			msg:   `model "sim": 2 providers online, all above max_price prompt 0.20/Mtok (cheapest 0.35), completion 0.70/Mtok (cheapest 0.90)`},
		{name: "the fee is in the consumer price",
			cands: []Candidate{priced(1, 200_000, 600_000)}, fee: 600,
			want: 1, wantPrices: [2]money.Amount{212_766, 638_298}},
		{name: "the fee can push a provider over the cap",
			cands: []Candidate{priced(1, 200_000, 600_000)}, fee: 600, prefs: Preferences{MaxPrompt: amount(200_000)},
			msg: `model "sim": 1 provider online, all above max_price prompt 0.20/Mtok (cheapest 0.212766)`},
		{name: "ignore",
			cands: []Candidate{priced(1, 1, 1), priced(2, 1, 1)},
			prefs: Preferences{Ignore: []ProviderRef{ref(t, key(1).String())}}, want: 2, wantPrices: [2]money.Amount{1, 1}},
		{name: "ignore by address and prefix",
			cands: []Candidate{priced(1, 1, 1), priced(2, 1, 1), priced(3, 1, 1)},
			prefs: Preferences{Ignore: []ProviderRef{ref(t, string(key(1).Address())), ref(t, key(3).String()[:8])}},
			want:  2, wantPrices: [2]money.Amount{1, 1}},
		{name: "all ignored",
			cands: []Candidate{priced(1, 1, 1), priced(2, 1, 1)},
			prefs: Preferences{Ignore: []ProviderRef{ref(t, key(1).String()), ref(t, key(2).String())}},
			msg:   `model "sim": 2 providers online, all ignored by provider.ignore`},
		{name: "require_digest",
			cands: []Candidate{withDigest(priced(1, 1, 1), digestA), withDigest(priced(2, 1, 1), "sha256:"+digestB)},
			prefs: Preferences{RequireDigest: digestB[:12]}, want: 2, wantPrices: [2]money.Amount{1, 1}},
		{name: "no provider has the digest",
			cands: []Candidate{withDigest(priced(1, 1, 1), digestA), withDigest(priced(2, 1, 1), digestA)},
			prefs: Preferences{RequireDigest: digestB},
			msg:   `model "sim": 2 providers online, all serving another digest than require_digest ` + digestB},
		{name: "order: first listed",
			cands: []Candidate{priced(1, 1, 1), priced(2, 1, 1), priced(3, 1, 1)},
			prefs: Preferences{Order: []ProviderRef{ref(t, key(3).String()), ref(t, key(2).String())}}, want: 3, wantPrices: [2]money.Amount{1, 1}},
		{name: "order: the next listed when the first is busy",
			cands: []Candidate{priced(1, 1, 1), priced(2, 1, 1), busy(priced(3, 1, 1))},
			prefs: Preferences{Order: []ProviderRef{ref(t, key(3).String()), ref(t, key(2).String())}}, want: 2, wantPrices: [2]money.Amount{1, 1}},
		{name: "order: fallback when every listed one is busy",
			cands: []Candidate{priced(1, 1, 1), busy(priced(2, 1, 1)), busy(priced(3, 1, 1))},
			prefs: Preferences{Order: []ProviderRef{ref(t, key(3).String()), ref(t, key(2).String())}}, want: 1, wantPrices: [2]money.Amount{1, 1}},
		{name: "order without fallbacks waits for the listed",
			cands: []Candidate{priced(1, 1, 1), busy(priced(2, 1, 1)), busy(priced(3, 1, 1))},
			prefs: Preferences{Order: []ProviderRef{ref(t, key(3).String()), ref(t, key(2).String())}, NoFallbacks: true},
			msg:   `model "sim": 3 providers online, 1 not in provider.order (allow_fallbacks is false), 2 busy`, onlyBusy: true},
		{name: "order without fallbacks, none listed online",
			cands: []Candidate{priced(1, 1, 1), priced(2, 1, 1)},
			prefs: Preferences{Order: []ProviderRef{ref(t, key(9).String())}, NoFallbacks: true},
			msg:   `model "sim": 2 providers online, all not in provider.order (allow_fallbacks is false)`},
		{name: "order without fallbacks by address",
			cands: []Candidate{priced(1, 1, 1), priced(2, 1, 1)},
			prefs: Preferences{Order: []ProviderRef{ref(t, string(key(2).Address()))}, NoFallbacks: true}, want: 2, wantPrices: [2]money.Amount{1, 1}},
		{name: "allow_fallbacks false without order is no restriction",
			cands: []Candidate{priced(1, 1, 1)}, prefs: Preferences{NoFallbacks: true}, want: 1, wantPrices: [2]money.Amount{1, 1}},
		{name: "ignore wins over order",
			cands: []Candidate{priced(1, 1, 1), priced(2, 1, 1)},
			prefs: Preferences{Order: []ProviderRef{ref(t, key(1).String())}, Ignore: []ProviderRef{ref(t, key(1).String())}}, want: 2, wantPrices: [2]money.Amount{1, 1}},
		{name: "order overrides max_price? no: the cap still applies",
			cands: []Candidate{priced(1, 900_000, 1), priced(2, 1, 1)},
			prefs: Preferences{Order: []ProviderRef{ref(t, key(1).String())}, MaxPrompt: amount(500_000)}, want: 2, wantPrices: [2]money.Amount{1, 1}},
		{name: "sort price takes the cheapest even when loaded",
			cands: []Candidate{{Key: key(1), Slots: 4, InFlight: 3, Models: priced(1, 100_000, 500_000).Models}, priced(2, 200_000, 600_000), priced(3, 100_000, 600_000)},
			prefs: Preferences{Sort: SortPrice}, want: 1, wantPrices: [2]money.Amount{100_000, 500_000}},
		{name: "every reason at once",
			cands: []Candidate{priced(1, 1, 1), withDigest(priced(2, 1, 1), digestB), priced(3, 350_000, 1), paused(priced(4, 1, 1)), busy(priced(5, 1, 1))},
			prefs: Preferences{Ignore: []ProviderRef{ref(t, key(1).String())}, RequireDigest: "digest-of-sim", MaxPrompt: amount(200_000)},
			msg: `model "sim": 5 providers online, 1 ignored by provider.ignore, 1 serving another digest than require_digest digest-of-sim, ` +
				`1 above max_price prompt 0.20/Mtok (cheapest 0.35), 1 paused, 1 busy`, onlyBusy: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for seed := range uint64(20) {
				s := newScheduler(t, Config{FeeBps: tt.fee, Rand: rand.New(rand.NewPCG(seed, 3))})
				r := &Request{Model: "sim", Prefs: tt.prefs, PromptTokens: 100, MaxTokens: 50}
				got, err := s.Pick(tt.cands, r)
				if tt.want != 0 {
					if err != nil {
						t.Fatalf("Pick: %v", err)
					}
					if got.Key != key(tt.want) || got.PricePrompt != tt.wantPrices[0] || got.PriceCompletion != tt.wantPrices[1] {
						t.Fatalf("seed %d: picked %d at %d/%d, want %d at %v", seed, got.Key[0], got.PricePrompt, got.PriceCompletion, tt.want, tt.wantPrices)
					}
					if s.Explain(tt.cands, r) != nil {
						t.Fatal("Explain found a reason although Pick placed the request")
					}
					continue
				}
				var u *Unplaceable
				if !errors.As(err, &u) {
					t.Fatalf("Pick = %+v, %v; want an *Unplaceable", got, err)
				}
				if u.Error() != tt.msg {
					t.Fatalf("message\n got %s\nwant %s", u.Error(), tt.msg)
				}
				if u.OnlyBusy() != tt.onlyBusy {
					t.Fatalf("OnlyBusy() = %v, want %v", u.OnlyBusy(), tt.onlyBusy)
				}
				if e := s.Explain(tt.cands, r); e == nil || e.Error() != tt.msg {
					t.Fatalf("Explain = %v, want the same reason as Pick", e)
				}
			}
		})
	}
}

func TestUnplaceableExcluded(t *testing.T) {
	u := &Unplaceable{Offering: 9, Ignored: 1, WrongDigest: 2, NotListed: 3, OverPrice: 1, Paused: 1, Busy: 1}
	if u.Excluded() != 7 {
		t.Errorf("Excluded() = %d, want 7", u.Excluded())
	}
}

// observed returns a scheduler that has seen each provider serve with the
// given time to first token and rate.
func observed(t *testing.T, seed uint64, speeds map[byte]speed) *Scheduler {
	t.Helper()
	s := newScheduler(t, Config{Rand: rand.New(rand.NewPCG(seed, 5))})
	for k, sp := range speeds {
		s.Observe(key(k), "sim", Observation{FirstToken: time.Duration(sp.ttft * float64(time.Second)), HasFirstToken: true, Tokens: uint64(sp.tps), Took: time.Second})
	}
	return s
}

func TestScore(t *testing.T) {
	tests := []struct {
		name   string
		cands  []Candidate
		speeds map[byte]speed
		sort   Sort
		want   byte
	}{
		{name: "the faster of two",
			cands:  []Candidate{priced(1, 1, 1), priced(2, 1, 1)},
			speeds: map[byte]speed{1: {0.5, 20}, 2: {0.05, 200}}, want: 2},
		{name: "a faster provider loses when loaded enough",
			cands:  []Candidate{{Key: key(1), Slots: 4, InFlight: 3, Models: priced(1, 1, 1).Models}, priced(2, 1, 1)},
			speeds: map[byte]speed{1: {1.0, 0}, 2: {1.5, 0}}, want: 2},
		{name: "but wins when lightly loaded",
			cands:  []Candidate{{Key: key(1), Slots: 4, InFlight: 1, Models: priced(1, 1, 1).Models}, priced(2, 1, 1)},
			speeds: map[byte]speed{1: {1.0, 0}, 2: {1.5, 0}}, want: 1},
		{name: "the cheaper at equal speed",
			cands:  []Candidate{priced(1, 200_000, 600_000), priced(2, 100_000, 300_000)},
			speeds: map[byte]speed{1: {0.1, 100}, 2: {0.1, 100}}, want: 2},
		{name: "twice as cheap but three times slower loses",
			cands:  []Candidate{priced(1, 100_000, 300_000), priced(2, 200_000, 600_000)},
			speeds: map[byte]speed{1: {0.3, 0}, 2: {0.1, 0}}, want: 2},
		{name: "three times cheaper and twice slower wins",
			cands:  []Candidate{priced(1, 100_000, 200_000), priced(2, 300_000, 600_000)},
			speeds: map[byte]speed{1: {0.2, 0}, 2: {0.1, 0}}, want: 1},
		{name: "free beats paid at equal speed",
			cands:  []Candidate{priced(1, 0, 0), priced(2, 1, 1)},
			speeds: map[byte]speed{1: {0.1, 100}, 2: {0.1, 100}}, want: 1},
		{name: "sort latency",
			cands:  []Candidate{priced(1, 1, 1), priced(2, 1, 1), priced(3, 1, 1)},
			speeds: map[byte]speed{1: {0.05, 10}, 2: {0.5, 500}, 3: {0.3, 100}}, sort: SortLatency, want: 1},
		{name: "sort throughput",
			cands:  []Candidate{priced(1, 1, 1), priced(2, 1, 1), priced(3, 1, 1)},
			speeds: map[byte]speed{1: {0.05, 10}, 2: {0.5, 500}, 3: {0.3, 100}}, sort: SortThroughput, want: 2},
		{name: "sort throughput ignores load",
			cands:  []Candidate{{Key: key(1), Slots: 4, InFlight: 3, Models: priced(1, 1, 1).Models}, priced(2, 1, 1)},
			speeds: map[byte]speed{1: {0.1, 300}, 2: {0.1, 100}}, sort: SortThroughput, want: 1},
		{name: "an unmeasured provider counts as average",
			cands:  []Candidate{priced(1, 1, 1), priced(2, 1, 1), priced(3, 1, 1)},
			speeds: map[byte]speed{1: {0.1, 0}, 3: {0.5, 0}}, sort: SortLatency, want: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for seed := range uint64(20) {
				s := observed(t, seed, tt.speeds)
				got, err := s.Pick(tt.cands, &Request{Model: "sim", Prefs: Preferences{Sort: tt.sort}, PromptTokens: 100, MaxTokens: 50})
				if err != nil {
					t.Fatal(err)
				}
				if got.Key != key(tt.want) {
					t.Fatalf("seed %d: picked %d, want %d", seed, got.Key[0], tt.want)
				}
			}
		})
	}
}

// TestAdvertisedRateIgnored: the rate a provider advertises is its own
// claim and ranks nobody. A provider claiming a million tokens/s that the
// gateway has not measured yet counts as the measured one beside it, for
// the default score and for sort: throughput alike.
func TestAdvertisedRateIgnored(t *testing.T) {
	liar, honest := priced(1, 1, 1), priced(2, 1, 1)
	liar.Models[0].TokensPerSecond = 1e6
	s := newScheduler(t, Config{Rand: rand.New(rand.NewPCG(1, 1))})
	s.Observe(key(2), "sim", Observation{FirstToken: 100 * time.Millisecond, HasFirstToken: true, Tokens: 200, Took: time.Second})
	for _, sort := range []Sort{"", SortThroughput} {
		count := map[byte]int{}
		for range 200 {
			got, err := s.Pick([]Candidate{liar, honest}, &Request{Model: "sim", MaxTokens: 100, Prefs: Preferences{Sort: sort}})
			if err != nil {
				t.Fatal(err)
			}
			count[got.Key[0]]++
		}
		if count[1] > 140 || count[2] < 60 {
			t.Fatalf("sort %q: the provider advertising 1e6 tokens/s took %d of 200 requests, the measured one %d", sort, count[1], count[2])
		}
	}
}

func TestObserve(t *testing.T) {
	s := newScheduler(t, Config{})
	if _, ok := s.Estimate(key(1), "sim"); ok {
		t.Fatal("estimate before any observation")
	}
	s.Observe(key(1), "sim", Observation{FirstToken: 100 * time.Millisecond, HasFirstToken: true})
	s.Observe(key(1), "sim", Observation{FirstToken: 200 * time.Millisecond, HasFirstToken: true, Tokens: 50, Took: time.Second})
	s.Observe(key(1), "sim", Observation{Tokens: 150, Took: time.Second})
	s.Observe(key(1), "sim", Observation{Took: time.Second})                             // no tokens: no rate
	s.Observe(key(1), "sim", Observation{FirstToken: -time.Second, HasFirstToken: true}) // a clock step: ignored
	e, ok := s.Estimate(key(1), "sim")
	if !ok || e.FirstToken != 130*time.Millisecond || e.FirstTokenSamples != 2 || e.RateSamples != 2 || e.TokensPerSecond < 79.99 || e.TokensPerSecond > 80.01 {
		t.Fatalf("estimate %+v, want 130ms over 2 samples and 80 tokens/s over 2", e)
	}
	// The rate is the ratio of the averages: a 2-token answer that came
	// in 10 ms does not outweigh a 200-token one that took 4 s.
	s.Observe(key(2), "sim", Observation{Tokens: 200, Took: 4 * time.Second})
	s.Observe(key(2), "sim", Observation{Tokens: 2, Took: 10 * time.Millisecond})
	if e, _ := s.Estimate(key(2), "sim"); e.TokensPerSecond < 50 || e.TokensPerSecond > 51 {
		t.Fatalf("rate %.1f tokens/s after 200 tokens in 4 s and 2 in 10 ms, want about 50", e.TokensPerSecond)
	}
	if _, ok := s.Estimate(key(1), "other"); ok {
		t.Fatal("an estimate leaked to another model")
	}
}

func TestRoundRobin(t *testing.T) {
	s := newScheduler(t, Config{Policy: PolicyRoundRobin})
	cands := []Candidate{priced(1, 1, 1), busy(priced(2, 1, 1)), priced(3, 1, 1), priced(4, 1, 1)}
	var got []byte
	for range 6 {
		c, err := s.Pick(cands, &Request{Model: "sim"})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, c.Key[0])
	}
	if want := []byte{1, 3, 4, 1, 3, 4}; !slices.Equal(got, want) {
		t.Fatalf("round robin %v, want %v", got, want)
	}
}

func TestLeastLoaded(t *testing.T) {
	s := newScheduler(t, Config{Policy: PolicyLeastLoaded, Rand: rand.New(rand.NewPCG(9, 9))})
	cands := []Candidate{offering(1, 4, 2, false, "sim"), offering(2, 4, 1, false, "sim"), offering(3, 8, 2, false, "sim"), offering(4, 2, 2, false, "sim")}
	count := map[byte]int{}
	for range 2000 {
		c, err := s.Pick(cands, &Request{Model: "sim"})
		if err != nil {
			t.Fatal(err)
		}
		count[c.Key[0]]++
	}
	// 2 and 3 are both at a quarter of their slots: they share the work.
	if count[1] != 0 || count[4] != 0 || count[2] < 850 || count[3] < 850 {
		t.Fatalf("least loaded picks %v, want providers 2 and 3 about evenly", count)
	}
}

func TestNewChecksConfig(t *testing.T) {
	for _, cfg := range []Config{{FeeBps: 10_000}, {AffinityLoadFactor: 0.5}, {Policy: Policy(7)}, {AffinityEntries: -1}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

func TestNewRequest(t *testing.T) {
	s := newScheduler(t, Config{})
	req := protocol.Request{Kind: protocol.KindChat, Model: "sim", Messages: []protocol.ChatMessage{{Role: "user", Content: strings.Repeat("x", 396)}},
		Options: protocol.Options{MaxTokens: 7}}
	r := s.NewRequest(&req, Preferences{Sort: SortPrice}, "s1")
	if r.Model != "sim" || r.PromptTokens != 100 || r.MaxTokens != 7 || r.Prefs.Sort != SortPrice || r.Affinity.Session == 0 || r.NoCompletion {
		t.Fatalf("NewRequest = %+v", r)
	}
	embed := protocol.Request{Kind: protocol.KindEmbed, Model: "sim", Input: []string{strings.Repeat("x", 200), strings.Repeat("y", 200)}}
	if r := s.NewRequest(&embed, Preferences{}, ""); r.PromptTokens != 100 || !r.NoCompletion {
		t.Fatalf("NewRequest(embed) = %+v", r)
	}
}

// TestEmbedRanksByPromptPrice: an embed request generates nothing, so the
// provider with the cheaper prompt wins whatever its completion price.
func TestEmbedRanksByPromptPrice(t *testing.T) {
	cands := []Candidate{priced(1, 200_000, 100_000), priced(2, 100_000, 900_000)}
	for _, sort := range []Sort{"", SortPrice} {
		for seed := range uint64(20) {
			s := observed(t, seed, map[byte]speed{1: {0.1, 100}, 2: {0.1, 100}})
			got, err := s.Pick(cands, &Request{Model: "sim", Prefs: Preferences{Sort: sort}, PromptTokens: 100, NoCompletion: true})
			if err != nil {
				t.Fatal(err)
			}
			if got.Key != key(2) {
				t.Fatalf("sort %q, seed %d: picked %d, want the cheaper prompt (2)", sort, seed, got.Key[0])
			}
		}
	}
}

// TestDigestPolicy: providers serving weights the ledger does not allow for
// the model are never chosen, and the error says so.
func TestDigestPolicy(t *testing.T) {
	s, err := New(Config{Rand: rand.New(rand.NewPCG(1, 2))})
	if err != nil {
		t.Fatal(err)
	}
	good, bad := withDigest(priced(1, 1, 1), "sha256:good"), withDigest(priced(2, 1, 1), "sha256:bad")
	s.SetDigestPolicy(func(model, digest string) bool { return model != "sim" || digest == "sha256:good" })
	req := s.NewRequest(&protocol.Request{Model: "sim"}, Preferences{}, "")
	for range 20 {
		c, err := s.Pick([]Candidate{good, bad}, &req)
		if err != nil || c.Key != good.Key {
			t.Fatalf("picked %v, %v", c.Key, err)
		}
	}
	_, err = s.Pick([]Candidate{bad, withDigest(priced(3, 1, 1), "sha256:worse")}, &req)
	var u *Unplaceable
	if !errors.As(err, &u) || u.NotAllowed != 2 || !strings.Contains(u.Error(), "all serving weights (digest) the ledger does not allow") {
		t.Fatalf("only disallowed digests: %v", err)
	}
	s.SetDigestPolicy(nil)
	if _, err := s.Pick([]Candidate{bad}, &req); err != nil {
		t.Fatalf("without a policy: %v", err)
	}
}

// TestJailedAndReputation: a jailed provider is never chosen and the error
// says why; between two otherwise equal providers the more reputable wins.
func TestJailedAndReputation(t *testing.T) {
	s, err := New(Config{Rand: rand.New(rand.NewPCG(3, 4))})
	if err != nil {
		t.Fatal(err)
	}
	req := s.NewRequest(&protocol.Request{Model: "sim"}, Preferences{}, "")
	good, doubtful, jailed := priced(1, 1, 1), priced(2, 1, 1), priced(3, 1, 1)
	good.Reputation, doubtful.Reputation, jailed.Jailed = 1000, 300, true
	for range 20 {
		c, err := s.Pick([]Candidate{doubtful, jailed, good}, &req)
		if err != nil || c.Key != good.Key {
			t.Fatalf("picked %v, %v", c.Key, err)
		}
	}
	_, err = s.Pick([]Candidate{jailed}, &req)
	var u *Unplaceable
	if !errors.As(err, &u) || u.Jailed != 1 || !strings.Contains(u.Error(), "all jailed by the ledger") {
		t.Fatalf("only a jailed provider: %v", err)
	}
	// Unknown reputation is not perfect: it counts as the lowest.
	unknown := priced(4, 1, 1)
	for range 20 {
		if c, _ := s.Pick([]Candidate{doubtful, unknown}, &req); c.Key != doubtful.Key {
			t.Fatal("a provider of unknown reputation beat one of 300")
		}
	}
}

// TestNoLogprobs: a request asking for log-probabilities never goes to a
// provider whose backend returns none, and when only such providers are
// online the error says so (the gateway answers 400).
func TestNoLogprobs(t *testing.T) {
	s, err := New(Config{Rand: rand.New(rand.NewPCG(5, 6))})
	if err != nil {
		t.Fatal(err)
	}
	able, unable := priced(1, 1, 1), priced(2, 1, 1)
	unable.Models[0].NoLogprobs = true
	asks := s.NewRequest(&protocol.Request{Model: "sim", Options: protocol.Options{Logprobs: true}}, Preferences{}, "")
	for range 20 {
		if c, err := s.Pick([]Candidate{able, unable}, &asks); err != nil || c.Key != able.Key {
			t.Fatalf("picked %v, %v", c.Key, err)
		}
	}
	_, err = s.Pick([]Candidate{unable}, &asks)
	var u *Unplaceable
	if !errors.As(err, &u) || !u.OnlyLogprobs() || !strings.Contains(u.Error(), "all returning no log-probabilities") {
		t.Fatalf("only providers without logprobs: %v", err)
	}
	plain := s.NewRequest(&protocol.Request{Model: "sim"}, Preferences{}, "")
	if _, err := s.Pick([]Candidate{unable}, &plain); err != nil {
		t.Fatalf("a request without logprobs: %v", err)
	}
}

// TestCapabilities: a request with tools goes only to providers whose
// model has the tools capability, structured output only to models of
// agents that list capabilities (protocol version 5), and when only
// providers without are online the error says which capability is missing
// (the gateway answers 400). A model of an older agent lists none and
// counts as completion only.
func TestCapabilities(t *testing.T) {
	s, err := New(Config{Rand: rand.New(rand.NewPCG(5, 6))})
	if err != nil {
		t.Fatal(err)
	}
	tools, plain, old := priced(1, 1, 1), priced(2, 1, 1), priced(3, 1, 1)
	tools.Models[0].Capabilities = []string{protocol.CapCompletion, protocol.CapTools}
	plain.Models[0].Capabilities = []string{protocol.CapCompletion}
	withTools := s.NewRequest(&protocol.Request{Model: "sim", Tools: []protocol.Tool{{Type: "function", Function: protocol.ToolFunction{Name: "f"}}}}, Preferences{}, "")
	for range 20 {
		if c, err := s.Pick([]Candidate{tools, plain, old}, &withTools); err != nil || c.Key != tools.Key {
			t.Fatalf("picked %v, %v", c.Key, err)
		}
	}
	_, err = s.Pick([]Candidate{plain, old}, &withTools)
	var u *Unplaceable
	if !errors.As(err, &u) || !u.OnlyIncapable() || u.Lacking != protocol.CapTools || !strings.Contains(u.Error(), "all without the tools capability") {
		t.Fatalf("only providers without tools: %v", err)
	}
	// tool_choice "none" sends no tools: any provider will do.
	none := s.NewRequest(&protocol.Request{Model: "sim", Tools: []protocol.Tool{{Type: "function", Function: protocol.ToolFunction{Name: "f"}}}, ToolChoice: protocol.ToolChoiceNone}, Preferences{}, "")
	if _, err := s.Pick([]Candidate{old}, &none); err != nil {
		t.Fatalf("tool_choice none: %v", err)
	}
	format := s.NewRequest(&protocol.Request{Model: "sim", Format: []byte(`"json"`)}, Preferences{}, "")
	for range 20 {
		if c, err := s.Pick([]Candidate{plain, old}, &format); err != nil || c.Key != plain.Key {
			t.Fatalf("structured output picked %v, %v", c.Key, err)
		}
	}
	if _, err := s.Pick([]Candidate{old}, &format); !errors.As(err, &u) || !u.OnlyIncapable() || u.Lacking != "structured output" {
		t.Fatalf("structured output on an old agent: %v", err)
	}
}
