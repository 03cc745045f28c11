package econ

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/idlegrid/idlegrid/internal/money"
)

// smallConfig is the default network on a shorter clock: 20-block epochs,
// vesting and escrow shortened in proportion, four batches an epoch, and a
// two-level wash sweep of one epoch each.
func smallConfig() Config {
	c := DefaultConfig()
	c.Epochs = 40
	c.Params.EpochBlocks = 20
	c.Params.VestingBlocks = 200
	c.Params.EscrowBlocks = 5
	c.Params.HalvingEpochs = 15
	c.SettleRounds = 4
	c.Wash.Epochs = 1
	c.Wash.LevelsBps = []uint32{0, 10_000}
	return c
}

func run(t *testing.T, c Config) Report {
	t.Helper()
	r, err := Run(c)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return r
}

func TestRunIsDeterministic(t *testing.T) {
	a, b := run(t, smallConfig()), run(t, smallConfig())
	if !reflect.DeepEqual(a, b) {
		t.Fatal("two runs with the same seed differ")
	}
	var out1, out2 bytes.Buffer
	if err := a.Print(&out1); err != nil {
		t.Fatal(err)
	}
	if err := b.Print(&out2); err != nil {
		t.Fatal(err)
	}
	if out1.String() != out2.String() {
		t.Fatal("two runs with the same seed print differently")
	}
	// The seed must matter, or the first check proves nothing.
	c := smallConfig()
	c.Seed++
	if other := run(t, c); reflect.DeepEqual(a.Epochs, other.Epochs) {
		t.Fatal("another seed gives the same epochs: the seed is not used")
	}
}

// checkSupply fails unless every epoch's cumulative supply is the previous
// one plus what the epoch minted, never above the cap, and the last one is
// the ledger's supply.
func checkSupply(t *testing.T, r *Report) {
	t.Helper()
	cum := r.Genesis
	for _, e := range r.Epochs {
		if e.Minted > e.Scheduled {
			t.Fatalf("epoch %d minted %s, more than the scheduled %s", e.Epoch, e.Minted, e.Scheduled)
		}
		cum += e.Minted
		if e.Cumulative != cum {
			t.Fatalf("epoch %d: cumulative %s, genesis plus minted gives %s", e.Epoch, e.Cumulative, cum)
		}
		if e.Cumulative > r.Config.Params.SupplyCap {
			t.Fatalf("epoch %d: cumulative %s above the cap %s", e.Epoch, e.Cumulative, r.Config.Params.SupplyCap)
		}
	}
	if r.Supply.Minted != cum || r.Supply.Total != cum || r.Supply.Burned != 0 {
		t.Fatalf("ledger supply %+v, the report adds up to %s", r.Supply, cum)
	}
}

func TestSupplyStaysUnderTheCap(t *testing.T) {
	free := run(t, smallConfig())
	checkSupply(t, &free)
	// Every pool but the providers' has payees and is paid in full; the
	// providers' is paid up to their caps (a share of what they were paid).
	p := &free.Config.Params
	last := free.Epochs[len(free.Epochs)-1]
	others := mulDivAmount(last.Scheduled, uint64(10_000-p.ProviderRewardBps), 10_000)
	if last.Scheduled*4 != p.EpochEmission || last.Minted < others || last.Minted > last.Scheduled || last.Minted-others != last.Emission {
		t.Fatalf("epoch %d: scheduled %s minted %s, providers %s; after 2 halvings of %s every pool but the providers' should be paid",
			last.Epoch, last.Scheduled, last.Minted, last.Emission, p.EpochEmission)
	}

	// A cap that binds: three times the genesis allocation (the least that
	// leaves half of all supply to node rewards is about 2.4 times), and an
	// emission that would pass it within a dozen epochs.
	c := smallConfig()
	c.Params.SupplyCap = 3 * free.Genesis
	c.Params.EpochEmission = (c.Params.SupplyCap - free.Genesis) / 2 // a third of it is minted: the providers' pool is capped
	capped := run(t, c)
	checkSupply(t, &capped)
	if capped.Supply.Minted != c.Params.SupplyCap {
		t.Fatalf("supply %s after %d epochs, want exactly the cap %s", capped.Supply.Minted, c.Epochs, c.Params.SupplyCap)
	}
	last = capped.Epochs[len(capped.Epochs)-1]
	if last.Minted != 0 || last.Scheduled == 0 {
		t.Fatalf("last epoch: scheduled %s minted %s; at the cap nothing should be minted", last.Scheduled, last.Minted)
	}
}

// defaultsBeforeHalving is the default network for 60 epochs: rewards
// vest over 10 epochs, so the escrow and unvested rewards a verdict takes
// have reached their level, and no halving has happened yet.
func defaultsBeforeHalving() Config {
	c := DefaultConfig()
	c.Epochs = 60
	c.Wash.Epochs = 1
	c.Wash.LevelsBps = []uint32{0}
	return c
}

func TestHonestyBeatsCheatingBeforeTheFirstHalving(t *testing.T) {
	r := run(t, defaultsBeforeHalving())
	if len(r.Cheats) != len(cheats)*len(r.Config.Classes) {
		t.Fatalf("%d cheating rows, want %d", len(r.Cheats), len(cheats)*len(r.Config.Classes))
	}
	for _, row := range r.Cheats {
		// A class that loses money serving honestly (laptops: energy above
		// the market price, and emission no longer pays for it) should not
		// serve at all; what cheating does there is in docs/economics.md.
		if row.Honest <= 0 {
			t.Logf("%s on %s: expected %s per epoch, honest %s (serving does not pay)", row.Strategy, row.Class, row.Expected, row.Honest)
		} else if row.Expected >= row.Honest {
			t.Errorf("%s on %s: expected %s per epoch, honest %s: cheating pays under the default slashing parameters",
				row.Strategy, row.Class, row.Expected, row.Honest)
		}
		// The break-even chance and the verdict must agree.
		if pays := row.DetectE8 < row.BreakEvenE8; pays != (row.Expected > row.Honest) {
			t.Errorf("%s on %s: caught %d/1e8 vs break-even %d/1e8 disagrees with expected %s vs honest %s",
				row.Strategy, row.Class, row.DetectE8, row.BreakEvenE8, row.Expected, row.Honest)
		}
	}
	// Over 300 epochs the two halvings shrink a laptop's unvested rewards,
	// and quantizing pays there (docs/economics.md): a finding, not tested
	// here because a 300-epoch run is too long for a unit test.
}

func TestCheatingPaysWhenNothingIsDetected(t *testing.T) {
	c := defaultsBeforeHalving()
	c.Slashing.CanaryBps = 0
	r := run(t, c)
	for _, row := range r.Cheats {
		switch {
		case row.Strategy == Inflate:
			// Refused by a metering gateway: no pay, whatever the canaries.
			if row.Expected >= row.Honest || row.BreakEvenE8 != 0 {
				t.Errorf("inflate on %s: expected %s vs honest %s, break-even %d: a refused receipt cannot pay", row.Class, row.Expected, row.Honest, row.BreakEvenE8)
			}
		case row.Gain <= 0:
			t.Errorf("%s on %s gains %s: every other strategy saves or bills something", row.Strategy, row.Class, row.Gain)
		case row.Expected <= row.Honest:
			t.Errorf("%s on %s: expected %s, honest %s: undetected cheating must pay", row.Strategy, row.Class, row.Expected, row.Honest)
		}
		if row.Live != nil && row.Live.Caught != 0 {
			t.Errorf("%s on %s caught %d times without canaries", row.Strategy, row.Class, row.Live.Caught)
		}
	}
}

func washConfig(levels ...uint32) Config {
	c := smallConfig()
	c.Epochs = 1
	c.Wash.Epochs = 2
	c.Wash.LevelsBps = levels
	return c
}

// TestSelfDealingNeverPays: on the real ledger with the default
// parameters, a provider that buys its own requests (owning its gateway)
// loses money with no honest demand and with the default demand, whether
// it serves them (wash trading) or not (fabricated receipts): its reward
// stays below the protocol fee it pays, whatever the emission.
func TestSelfDealingNeverPays(t *testing.T) {
	for _, scale := range []uint64{1, 1_000} {
		c := washConfig(0, 10_000)
		c.Params.EpochEmission = mulDivAmount(c.Params.EpochEmission, scale, 1)
		r := run(t, c)
		if r.Wash.Pays {
			t.Errorf("emission ×%d: self-dealing paid at %d bps of demand", scale, r.Wash.PaysAtBps)
		}
		for _, l := range r.Wash.Levels {
			if l.WashNet >= 0 || l.FabricatedNet >= 0 || l.Rewards >= l.ProtocolFees || l.Rewards == 0 {
				t.Errorf("emission ×%d, demand %d bps: rewards %s, protocol fees %s, wash net %s, fabricated net %s",
					scale, l.LevelBps, l.Rewards, l.ProtocolFees, l.WashNet, l.FabricatedNet)
			}
			// What it paid came back less the protocol fee (the gateway fee
			// is its own): each receipt's fee rounds down.
			if leak := l.FeesPaid - min(l.FeesPaid, l.FeesBack); leak != l.ProtocolFees {
				t.Errorf("emission ×%d, demand %d bps: lost %s of %s paid, protocol fees %s", scale, l.LevelBps, leak, l.FeesPaid, l.ProtocolFees)
			}
		}
	}
}

// TestConvictionCost: with the rule that a case fails only on the votes of
// half the verifier stake, an attacker must hold as much as all honest
// verifiers together (the genesis's 1+2+3 times the minimum).
func TestConvictionCost(t *testing.T) {
	c := DefaultConfig()
	got := convictionCost(&c)
	honest := mulDivAmount(max(c.Params.MinVerifierStake, money.Unit), 6, 1)
	s := uint64(got.FailStakeBps)
	if got.HonestStake != honest || s == 0 || s >= 10_000 || got.AttackerStake != mulDivAmount(honest, s, 10_000-s) {
		t.Fatalf("%+v, honest stake %s", got, honest)
	}
}

func TestRoute(t *testing.T) {
	m := &Market{AllPayMicroUSD: 100, NonePayMicroUSD: 300}
	for _, tc := range []struct {
		name   string
		demand uint64
		offers []offer
		want   []uint64
	}{
		{"cheapest first", 150, []offer{{0, 100, 1000}, {1, 50, 100}}, []uint64{50, 100}},
		// At 200, halfway between the all-pay and none-pay prices, half
		// of the demand accepts.
		{"price sensitivity", 150, []offer{{0, 200, 1000}}, []uint64{75}},
		// …and those 75 are already served by the cheaper 100.
		{"cheaper service counts against the willing", 150, []offer{{0, 200, 1000}, {1, 50, 100}}, []uint64{0, 100}},
		{"none pays the none-pay price", 500, []offer{{0, 300, 1000}}, []uint64{0}},
		{"capacity caps", 500, []offer{{0, 90, 100}, {1, 100, 50}}, []uint64{100, 50}},
		{"ties share by capacity", 100, []offer{{0, 100, 300}, {1, 100, 100}}, []uint64{75, 25}},
		{"remainder to the earliest", 10, []offer{{2, 100, 5}, {1, 100, 5}, {0, 100, 5}}, []uint64{3, 3, 4}},
		{"no offers", 100, nil, []uint64{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := route(m, tc.demand, tc.offers)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("route = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestScaleProviders(t *testing.T) {
	c := DefaultConfig()
	demand := c.Markets[0].TokensPerEpoch
	if err := c.ScaleProviders(36); err != nil {
		t.Fatal(err)
	}
	if c.Providers() != 36 || c.Population[0].Count != 6 || c.Markets[0].TokensPerEpoch != 2*demand {
		t.Fatalf("scaled to %d providers, first group %d, demand %d", c.Providers(), c.Population[0].Count, c.Markets[0].TokensPerEpoch)
	}
	if err := c.ScaleProviders(7); err != nil || c.Providers() != 7 {
		t.Fatalf("scaled to %d providers: %v", c.Providers(), err)
	}
	if err := c.ScaleProviders(0); err == nil {
		t.Fatal("scaling to no providers succeeded")
	}
}

func TestConfigRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
	}{
		{"no epochs", func(c *Config) { c.Epochs = 0 }},
		{"class without a market", func(c *Config) { c.Classes[0].Model = "unknown" }},
		{"unknown class", func(c *Config) { c.Population[0].Class = "mainframe" }},
		{"flat demand curve", func(c *Config) { c.Markets[0].NonePayMicroUSD = c.Markets[0].AllPayMicroUSD }},
		{"uptime above 100%", func(c *Config) { c.Classes[0].UptimeBps = 10_001 }},
		{"slash above 100%", func(c *Config) { c.Slashing.SlashBps = 10_001 }},
		{"bad ledger params", func(c *Config) { c.Params.ProviderRewardBps++ }},
		{"no wash level", func(c *Config) { c.Wash.LevelsBps = nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.edit(&c)
			if _, err := Run(c); err == nil {
				t.Fatal("Run accepted the config")
			}
		})
	}
}

func TestWriteSVG(t *testing.T) {
	r := run(t, washConfig(0))
	var b bytes.Buffer
	if err := r.WriteSVG(&b); err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(&b)
	elements := map[string]int{}
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			elements[se.Name.Local]++
		}
	}
	if elements["svg"] != 1 || elements["polyline"] < 2 || elements["polygon"] != 2 {
		t.Fatalf("elements %v: want one svg, the supply lines and the two income areas", elements)
	}
	var empty Report
	if err := empty.WriteSVG(io.Discard); err == nil || !strings.Contains(err.Error(), "no epochs") {
		t.Fatalf("plotting no epochs: %v", err)
	}
}
