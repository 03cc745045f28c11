package econ

import (
	"errors"
	"fmt"

	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
)

// Strategy is how a provider serves.
type Strategy int

// Strategies.
const (
	// Honest runs the model it announces and reports true token counts.
	Honest Strategy = iota
	// Quantize serves a cheaper quantization of the announced model.
	Quantize
	// Fabricate returns made-up text at almost no compute.
	Fabricate
	// Inflate reports more tokens than it served, to a gateway that meters
	// the tokens it relays and refuses to countersign a larger count.
	Inflate
	// InflateUnmetered reports more tokens than it served, to a gateway
	// that signs whatever usage the provider reports.
	InflateUnmetered
)

var strategyNames = map[Strategy]string{
	Honest: "honest", Quantize: "quantize", Fabricate: "fabricate",
	Inflate: "inflate", InflateUnmetered: "inflate-unmetered",
}

func (s Strategy) String() string {
	if n, ok := strategyNames[s]; ok {
		return n
	}
	return fmt.Sprintf("strategy(%d)", int(s))
}

// cheats are the strategies the cheating table weighs against honesty.
var cheats = []Strategy{Quantize, Fabricate, Inflate, InflateUnmetered}

// Class is a kind of provider hardware. Prices and costs are in micro-US
// dollars (µUSD) per million completion tokens; Config.TokensPerUSD turns
// them into ledger money.
type Class struct {
	Name string
	// Model is the model the class serves (its market).
	Model string
	// TokensPerSecond is the completion tokens it generates per second
	// while online, batched over concurrent requests.
	TokensPerSecond uint64
	// PriceMicroUSD is the completion price it asks; prompt tokens cost
	// Config.PromptPriceBps of it.
	PriceMicroUSD uint64
	// UptimeBps is the chance, in basis points, that a provider of the
	// class is online for a whole epoch.
	UptimeBps uint32
	// EnergyMicroUSD is what serving one million completion tokens (with
	// their prompts) costs it in electricity; it never touches the ledger.
	EnergyMicroUSD uint64
}

// Group is Count providers of one class that follow one strategy.
type Group struct {
	Class    string
	Strategy Strategy
	Count    int
}

// Market is the consumers' demand for one model.
type Market struct {
	Model string
	// TokensPerEpoch is the completion tokens demanded in the first epoch;
	// it grows by GrowthBps (negative: shrinks) every epoch, compounding.
	TokensPerEpoch uint64
	GrowthBps      int32
	// Price sensitivity: every consumer pays up to AllPayMicroUSD per
	// million completion tokens, none pays NonePayMicroUSD or more, and the
	// share that pays falls linearly in between.
	AllPayMicroUSD  uint64
	NonePayMicroUSD uint64
	// PromptMilli is prompt tokens per completion token, in thousandths.
	PromptMilli uint64
}

// Slashing is the modelled verification (the simulation runs no
// verifiers; its defaults are the ledger's conviction penalty): a provider
// meets a canary request in CanaryBps of the epochs it serves, a canary
// catches a strategy with its detection rate, and a caught provider loses
// SlashBps of its stake, its escrowed earnings and its unvested rewards,
// and is jailed (earns nothing) for JailEpochs.
type Slashing struct {
	CanaryBps  uint32
	SlashBps   uint32
	JailEpochs uint64
	// Detection rates of a canary, per strategy (InflateUnmetered's canary
	// knows the true length of its answer).
	QuantizeDetectBps  uint32
	FabricateDetectBps uint32
	InflateDetectBps   uint32
	// What serving costs relative to honest serving.
	QuantizeCostBps  uint32
	FabricateCostBps uint32
	// InflateBps is how much an unmetered inflater adds to its counts.
	InflateBps uint32
}

// Wash is the self-dealing experiment: a provider that is its own consumer
// (and owns its gateway) pays for requests nobody needed, to earn emission
// for their work units; it serves them (wash trading) or not (fabricated
// receipts).
type Wash struct {
	// Class is the trader's hardware class: it sets model and price.
	Class string
	// TokensPerEpoch is the completion tokens it settles per epoch; 0
	// means what its class could generate in an epoch.
	TokensPerEpoch uint64
	// Epochs is how long each demand level runs.
	Epochs int
	// LevelsBps are the honest demand levels tried, in basis points of the
	// markets' first-epoch demand.
	LevelsBps []uint32
}

// Config is one simulation.
type Config struct {
	Epochs int
	Seed   uint64
	// Params are the genesis parameters of the simulated chain.
	Params ledger.Params
	// TokensPerUSD is the assumed exchange rate, held fixed for the whole
	// run: ledger tokens per US dollar. One µUSD is TokensPerUSD base units.
	TokensPerUSD uint64
	// BlockMillis is the wall time of one block: it turns speeds into
	// tokens per epoch.
	BlockMillis uint64
	// SettleRounds is how many batches the gateway settles per epoch, in
	// evenly spaced blocks; the blocks between carry no transactions.
	SettleRounds int
	// PromptPriceBps is the prompt token price relative to the completion
	// token price.
	PromptPriceBps uint32
	Classes        []Class
	Population     []Group
	Markets        []Market
	// Validators sign every block; Verifiers stake 1, 2, 3… times the
	// minimum verifier stake.
	Validators int
	Verifiers  int
	Slashing   Slashing
	Wash       Wash
}

// DefaultConfig is what `idlegrid bench econ` runs: the chain's default
// parameters with halvings every 100 epochs instead of 1000, so that 300
// epochs show two; three hardware classes; demand that grows 0.5% an epoch.
func DefaultConfig() Config {
	p := ledger.DefaultParams()
	lp := p // the chain's own parameters, before the simulation's changes
	p.HalvingEpochs = 100
	return Config{
		Epochs:         300,
		Seed:           1,
		Params:         p,
		TokensPerUSD:   100_000,
		BlockMillis:    1_000,
		SettleRounds:   10,
		PromptPriceBps: 2_500,
		Classes: []Class{
			{Name: "datacenter GPU", Model: "llama3.3:70b", TokensPerSecond: 1_500, PriceMicroUSD: 600_000, UptimeBps: 9_900, EnergyMicroUSD: 20_000},
			{Name: "gaming GPU", Model: "llama3.1:8b", TokensPerSecond: 500, PriceMicroUSD: 60_000, UptimeBps: 6_000, EnergyMicroUSD: 40_000},
			{Name: "laptop/CPU", Model: "llama3.2:3b", TokensPerSecond: 20, PriceMicroUSD: 50_000, UptimeBps: 3_500, EnergyMicroUSD: 95_000},
		},
		Population: []Group{
			{Class: "datacenter GPU", Strategy: Honest, Count: 3},
			{Class: "datacenter GPU", Strategy: Quantize, Count: 1},
			{Class: "gaming GPU", Strategy: Honest, Count: 5},
			{Class: "gaming GPU", Strategy: Quantize, Count: 1},
			{Class: "gaming GPU", Strategy: Fabricate, Count: 1},
			{Class: "gaming GPU", Strategy: InflateUnmetered, Count: 1},
			{Class: "laptop/CPU", Strategy: Honest, Count: 5},
			{Class: "laptop/CPU", Strategy: Fabricate, Count: 1},
		},
		Markets: []Market{
			{Model: "llama3.3:70b", TokensPerEpoch: 250_000, GrowthBps: 50, AllPayMicroUSD: 400_000, NonePayMicroUSD: 1_200_000, PromptMilli: 2_000},
			{Model: "llama3.1:8b", TokensPerEpoch: 150_000, GrowthBps: 50, AllPayMicroUSD: 40_000, NonePayMicroUSD: 200_000, PromptMilli: 2_000},
			{Model: "llama3.2:3b", TokensPerEpoch: 6_000, GrowthBps: 50, AllPayMicroUSD: 30_000, NonePayMicroUSD: 150_000, PromptMilli: 2_000},
		},
		Validators: 4,
		Verifiers:  3,
		Slashing: Slashing{
			// The ledger's conviction penalty (verification): its share of
			// stake and its jail time, counted in epochs.
			CanaryBps: 1_000, SlashBps: lp.SlashStakeBps, JailEpochs: lp.JailBlocks / lp.EpochBlocks,
			QuantizeDetectBps: 2_000, FabricateDetectBps: 9_900, InflateDetectBps: 9_000,
			QuantizeCostBps: 6_000, FabricateCostBps: 200, InflateBps: 2_000,
		},
		Wash: Wash{Class: "gaming GPU", Epochs: 3, LevelsBps: []uint32{0, 2_500, 5_000, 10_000, 20_000, 40_000, 80_000}},
	}
}

// Providers is the population's size.
func (c *Config) Providers() int {
	n := 0
	for _, g := range c.Population {
		n += g.Count
	}
	return n
}

// ScaleProviders resizes the population to n providers, keeping each
// group's share (largest remainders get the rounding), and scales every
// market's demand by the same factor so the network stays as busy.
func (c *Config) ScaleProviders(n int) error {
	old := c.Providers()
	if n <= 0 || n > 10_000 || old <= 0 || old > 10_000 {
		return fmt.Errorf("econ: cannot scale a population of %d providers to %d", old, n)
	}
	counts := make([]int, len(c.Population))
	rems := make([]int, len(c.Population))
	given := 0
	for i, g := range c.Population {
		counts[i], rems[i] = g.Count*n/old, g.Count*n%old
		given += counts[i]
	}
	for given < n {
		best := 0
		for i := range rems {
			if rems[i] > rems[best] {
				best = i
			}
		}
		counts[best]++
		rems[best] = -1
		given++
	}
	for i := range c.Population {
		c.Population[i].Count = counts[i]
	}
	for i := range c.Markets {
		c.Markets[i].TokensPerEpoch = mulDiv(c.Markets[i].TokensPerEpoch, uint64(n), uint64(old))
	}
	return nil
}

// maxAmount keeps every amount the simulation adds up well inside int64.
const maxAmount = money.Amount(1) << 60

func (c *Config) class(name string) (int, bool) {
	for i := range c.Classes {
		if c.Classes[i].Name == name {
			return i, true
		}
	}
	return 0, false
}

func (c *Config) validate() error {
	if err := c.Params.Validate(); err != nil {
		return fmt.Errorf("econ: %w", err)
	}
	switch {
	case c.Epochs < 1:
		return errors.New("econ: at least one epoch")
	case c.TokensPerUSD == 0 || c.TokensPerUSD > 1<<24:
		return fmt.Errorf("econ: tokens per USD %d: want 1 to %d", c.TokensPerUSD, 1<<24)
	case c.BlockMillis == 0 || c.BlockMillis > 3_600_000:
		return errors.New("econ: block time must be 1 ms to 1 h")
	case c.SettleRounds < 1:
		return errors.New("econ: at least one settlement round per epoch")
	case c.Params.SupplyCap > maxAmount:
		return fmt.Errorf("econ: supply cap %d above the simulation's limit %d", c.Params.SupplyCap, maxAmount)
	case c.Params.EpochBlocks > 1_000_000:
		return errors.New("econ: at most 1,000,000 blocks per epoch (every block is executed)")
	case c.Validators < 1 || c.Validators > 100 || c.Verifiers < 0 || c.Verifiers > 100:
		return errors.New("econ: 1 to 100 validators and 0 to 100 verifiers")
	case c.PromptPriceBps > 10_000:
		return errors.New("econ: prompt price above the completion price")
	}
	for _, b := range []uint32{c.Slashing.CanaryBps, c.Slashing.SlashBps, c.Slashing.QuantizeDetectBps, c.Slashing.FabricateDetectBps,
		c.Slashing.InflateDetectBps, c.Slashing.QuantizeCostBps, c.Slashing.FabricateCostBps} {
		if b > 10_000 {
			return fmt.Errorf("econ: slashing: %d basis points is above 100%%", b)
		}
	}
	if c.Slashing.JailEpochs > 1_000_000 {
		return errors.New("econ: slashing: jail of more than 1,000,000 epochs")
	}
	markets := map[string]bool{}
	for _, m := range c.Markets {
		if markets[m.Model] {
			return fmt.Errorf("econ: two markets for model %q", m.Model)
		}
		markets[m.Model] = true
		if m.NonePayMicroUSD <= m.AllPayMicroUSD || m.NonePayMicroUSD > 1e9 || m.GrowthBps <= -10_000 || m.GrowthBps > 10_000 ||
			m.TokensPerEpoch > 1e12 || m.PromptMilli > 100_000 {
			return fmt.Errorf("econ: market %q: want all-pay < none-pay price ≤ $1000/Mtok, growth above -100%% and at most 100%%, at most 10¹² tokens per epoch and 100 prompt tokens per completion token", m.Model)
		}
	}
	for _, cl := range c.Classes {
		if !markets[cl.Model] {
			return fmt.Errorf("econ: class %q serves %q, which no market demands", cl.Name, cl.Model)
		}
		if cl.PriceMicroUSD == 0 || cl.PriceMicroUSD > 1e9 || cl.EnergyMicroUSD > 1e9 || cl.UptimeBps > 10_000 || cl.TokensPerSecond > 1e7 {
			return fmt.Errorf("econ: class %q: want a price of $0.000001 to $1000/Mtok, energy at most $1000/Mtok, uptime ≤ 100%% and at most 10⁷ tokens/s", cl.Name)
		}
	}
	if c.Providers() < 1 || c.Providers() > 10_000 {
		return errors.New("econ: 1 to 10,000 providers")
	}
	for _, g := range c.Population {
		if _, ok := c.class(g.Class); !ok || g.Count < 0 {
			return fmt.Errorf("econ: population group of %d %q: no such class", g.Count, g.Class)
		}
		if _, ok := strategyNames[g.Strategy]; !ok {
			return fmt.Errorf("econ: population group %q: %s", g.Class, g.Strategy)
		}
	}
	if _, ok := c.class(c.Wash.Class); !ok {
		return fmt.Errorf("econ: wash trader class %q: no such class", c.Wash.Class)
	}
	if c.Wash.Epochs < 1 || len(c.Wash.LevelsBps) == 0 || c.Wash.TokensPerEpoch > 1e12 {
		return errors.New("econ: wash trading needs at least one epoch, one demand level and at most 10¹² tokens per epoch")
	}
	return nil
}

// baseUnits converts µUSD to ledger base units at the configured rate.
func (c *Config) baseUnits(microUSD uint64) money.Amount {
	hi, lo := mulFull(microUSD, c.TokensPerUSD)
	if hi != 0 || lo > uint64(maxAmount) {
		return maxAmount // validated ranges keep far below
	}
	return money.Amount(lo)
}

// epochMillis is an epoch's wall time.
func (c *Config) epochMillis() uint64 { return c.Params.EpochBlocks * c.BlockMillis }

// capacity is what a provider of class cl generates in an epoch online.
func (c *Config) capacity(cl *Class) uint64 {
	return mulDiv(cl.TokensPerSecond, c.epochMillis(), 1_000)
}

func (c *Config) rounds() uint64 { return min(uint64(c.SettleRounds), c.Params.EpochBlocks) }
