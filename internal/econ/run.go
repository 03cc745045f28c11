package econ

import (
	"fmt"

	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
)

// Report is what a run found. Every figure comes from the run: money
// moved by the ledger (fees, emission, supply) is read from its state,
// energy and penalties are computed next to it.
type Report struct {
	Config Config
	// Genesis is the genesis allocation (stakes and consumers' funds);
	// Supply is the ledger's supply after the last epoch.
	Genesis money.Amount
	Supply  ledger.Supply
	Epochs  []EpochPoint
	// Classes are the honest providers' earnings per hardware class.
	Classes []ClassEarnings
	Cheats  []CheatRow
	Wash    WashReport
	// Conviction is the verifier stake it takes to convict an honest
	// provider.
	Conviction ConvictionCost
}

// EpochPoint is one epoch, network-wide.
type EpochPoint struct {
	Epoch uint64
	// Scheduled is the emission schedule's amount, Minted what the ledger
	// paid (clamped by the cap, less pools nobody earned), Cumulative the
	// ledger's Supply.Minted after the epoch, genesis included.
	Scheduled, Minted, Cumulative money.Amount
	// Fees are the providers' shares of the epoch's receipts; Emission
	// their part of Minted.
	Fees, Emission money.Amount
	// Demanded and Served are completion tokens; Online providers.
	Demanded, Served uint64
	Online           int
}

// FeeShareBps is fees' part of provider income in the epoch.
func (p *EpochPoint) FeeShareBps() uint64 {
	return share(uint64(p.Fees), uint64(p.Fees)+uint64(p.Emission))
}

// ClassEarnings are a class's honest providers' averages per provider and
// epoch (offline epochs count, with nothing earned).
type ClassEarnings struct {
	Class, Model   string
	Providers      int
	ProviderEpochs uint64
	OnlineEpochs   uint64
	// Served is completion tokens per provider-epoch.
	Served                      uint64
	Fees, Emission, Energy, Net Net
	// AtRisk is escrow plus unvested rewards at an epoch's end: what a
	// verdict would take besides stake.
	AtRisk money.Amount
	Stake  money.Amount
}

// FeeShareBps is fees' part of the class's income.
func (c *ClassEarnings) FeeShareBps() uint64 {
	return share(uint64(max(c.Fees, 0)), uint64(max(c.Fees, 0))+uint64(max(c.Emission, 0)))
}

// Run simulates cfg: the main run over cfg.Epochs with the configured
// population, then the wash trading sweep, each on its own chain.
func Run(cfg Config) (Report, error) {
	if err := cfg.validate(); err != nil {
		return Report{}, err
	}
	rep := Report{Config: cfg}
	s, err := newSim(&cfg, world{population: cfg.Population, levelBps: 10_000, growth: true, epochs: cfg.Epochs})
	if err != nil {
		return Report{}, err
	}
	rep.Genesis = s.genesis
	for e := uint64(1); e <= uint64(cfg.Epochs); e++ {
		res, err := s.runEpoch(e)
		if err != nil {
			return Report{}, err
		}
		if res.supply.Minted > cfg.Params.SupplyCap {
			return Report{}, fmt.Errorf("econ: epoch %d: the ledger minted %s, above the cap %s", e, res.supply.Minted, cfg.Params.SupplyCap)
		}
		rep.Epochs = append(rep.Epochs, EpochPoint{Epoch: e, Scheduled: res.record.Scheduled, Minted: res.record.Minted,
			Cumulative: res.supply.Minted, Fees: res.fees, Emission: res.record.Providers,
			Demanded: res.demanded, Served: res.served, Online: res.online})
		rep.Supply = res.supply
	}
	rep.Classes = s.classEarnings()
	rep.Cheats = s.cheatRows(rep.Classes)
	if rep.Wash, err = washSweep(&cfg); err != nil {
		return Report{}, err
	}
	rep.Conviction = convictionCost(&cfg)
	return rep, nil
}

// classEarnings averages the honest providers of each class.
func (s *sim) classEarnings() []ClassEarnings {
	var out []ClassEarnings
	for ci, cl := range s.cfg.Classes {
		var t tally
		n := 0
		for _, p := range s.providers {
			if p.class == ci && p.strategy == Honest {
				t.add(&p.tally)
				n++
			}
		}
		if n == 0 {
			continue
		}
		out = append(out, ClassEarnings{Class: cl.Name, Model: cl.Model, Providers: n, ProviderEpochs: t.epochs, OnlineEpochs: t.online,
			Served: t.served / max(t.epochs, 1),
			Fees:   perEpoch(net(t.fees), t.epochs), Emission: perEpoch(net(t.emission), t.epochs),
			Energy: perEpoch(net(t.energy), t.epochs), Net: perEpoch(t.net(), t.epochs),
			AtRisk: t.atRisk / money.Amount(max(t.epochs, 1)), Stake: s.params.MinProviderStake})
	}
	return out
}
