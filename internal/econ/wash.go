package econ

import (
	"math"
	"slices"

	"github.com/idlegrid/idlegrid/internal/money"
)

// WashReport is the self-dealing experiment, run on the real ledger: at
// each honest demand level a fresh chain runs the honest population plus
// one provider that is also its own consumer. It settles TokensPerEpoch
// fake completion tokens a epoch through the gateway at its class's price,
// really paying the fees, and fabricates the answers (nobody but itself
// reads them). Its net is read from its ledger account: rewards plus the
// provider share of its own fees, less what it paid as consumer (the
// difference is the gateway and protocol fees), less fabrication energy.
type WashReport struct {
	Class, Model   string
	TokensPerEpoch uint64
	PriceMicroUSD  uint64
	Epochs         int
	Levels         []WashLevel
	// Stops is whether some level lost money; StopsAtBps is the lowest
	// such level, PaysUpToBps the highest level below it that paid (or
	// the highest level tried when none lost).
	Stops       bool
	StopsAtBps  uint32
	PaysUpToBps uint32
	// BreakEvenWork is, by the ledger's figures at the busiest level, the
	// honest work units per epoch above which this volume stops paying:
	// reward pool·W/(W+H) = cost. BreakEvenLevelBps is that work as a
	// demand level, if work grew with demand as it did up to that level.
	// math.MaxUint64 means never (wash trading costs nothing).
	BreakEvenWork     uint64
	BreakEvenLevelBps uint64
}

// WashLevel is one honest demand level, per epoch.
type WashLevel struct {
	LevelBps                   uint32
	HonestDemand, HonestServed uint64
	// Work units by the ledger's rule, and the providers' emission pool.
	HonestWork, WashWork uint64
	Pool                 money.Amount
	// The trader's rewards, what it paid as consumer, what came back as
	// provider share, and its fabrication energy.
	Rewards, FeesPaid, FeesBack, Fabrication money.Amount
	Net                                      Net
	// BreakEvenPriceMicroUSD is the completion price at which the trader's
	// fees would eat its rewards at this level (math.MaxUint64: no price
	// does, because its fees round to nothing or no fee is charged).
	BreakEvenPriceMicroUSD uint64
}

// honest is the population with every provider honest.
func honest(pop []Group) []Group {
	out := slices.Clone(pop)
	for i := range out {
		out[i].Strategy = Honest
	}
	return out
}

func washSweep(cfg *Config) (WashReport, error) {
	ci, _ := cfg.class(cfg.Wash.Class)
	cl := &cfg.Classes[ci]
	rep := WashReport{Class: cl.Name, Model: cl.Model, PriceMicroUSD: cl.PriceMicroUSD, Epochs: cfg.Wash.Epochs}
	levels := slices.Clone(cfg.Wash.LevelsBps)
	slices.Sort(levels)
	levels = slices.Compact(levels)
	for _, lv := range levels {
		s, err := newSim(cfg, world{population: honest(cfg.Population), levelBps: lv, epochs: cfg.Wash.Epochs, wash: true})
		if err != nil {
			return rep, err
		}
		rep.TokensPerEpoch = s.washTokens
		var work uint64
		var pool money.Amount
		var demand, served uint64
		for e := uint64(1); e <= uint64(cfg.Wash.Epochs); e++ {
			res, err := s.runEpoch(e)
			if err != nil {
				return rep, err
			}
			work = satAdd(work, res.record.Work)
			pool = addAmount(pool, res.record.Providers)
			demand = satAdd(demand, res.demanded)
			served = satAdd(served, res.served)
		}
		n := uint64(cfg.Wash.Epochs)
		t := &s.wash.tally
		l := WashLevel{LevelBps: lv, HonestDemand: demand / n, HonestServed: served / n,
			HonestWork: (work - min(work, t.work)) / n, WashWork: t.work / n, Pool: pool / money.Amount(n),
			Rewards: t.emission / money.Amount(n), FeesPaid: t.paid / money.Amount(n), FeesBack: t.fees / money.Amount(n),
			Fabrication: t.energy / money.Amount(n), Net: perEpoch(t.net(), n)}
		l.BreakEvenPriceMicroUSD = math.MaxUint64
		if leak := t.paid - min(t.paid, t.fees); leak > 0 {
			// Fees scale with the price; work units (and so rewards) do not.
			l.BreakEvenPriceMicroUSD = mulDiv(cl.PriceMicroUSD, uint64(t.emission-min(t.emission, t.energy)), uint64(leak))
		}
		rep.Levels = append(rep.Levels, l)
	}
	rep.PaysUpToBps = levels[len(levels)-1]
	for i, l := range rep.Levels {
		if l.Net < 0 {
			rep.Stops, rep.StopsAtBps = true, l.LevelBps
			rep.PaysUpToBps = 0
			if i > 0 {
				rep.PaysUpToBps = rep.Levels[i-1].LevelBps
			}
			break
		}
	}
	rep.BreakEvenWork, rep.BreakEvenLevelBps = breakEvenWork(rep.Levels[len(rep.Levels)-1])
	return rep, nil
}

// breakEvenWork solves pool·W/(W+H) = cost for H at level l's figures.
func breakEvenWork(l WashLevel) (work, levelBps uint64) {
	cost := addAmount(l.FeesPaid-min(l.FeesPaid, l.FeesBack), l.Fabrication)
	if cost == 0 {
		return math.MaxUint64, math.MaxUint64
	}
	all := mulDiv(l.WashWork, uint64(l.Pool), uint64(cost))
	if all <= l.WashWork {
		return 0, 0
	}
	work = all - l.WashWork
	if l.HonestWork == 0 {
		return work, math.MaxUint64
	}
	return work, mulDiv(work, uint64(l.LevelBps), l.HonestWork)
}
