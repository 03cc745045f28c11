package econ

import (
	"slices"

	"github.com/idlegrid/idlegrid/internal/money"
)

// WashReport is the self-dealing experiment, run on the real ledger: at
// each honest demand level a fresh chain runs the honest population plus
// one provider that is also its own consumer. It settles TokensPerEpoch
// completion tokens a epoch through the gateway at its class's price,
// really paying the fees. The ledger cannot tell whether the tokens were
// served, so one run gives both attacks: wash trading (it serves the
// requests it buys, paying its class's energy) and fabricated receipts
// (no work, no energy). Each net is read from its ledger account: rewards
// plus the provider share of its own payments and the gateway fee (it owns
// its gateway: the simulation's one gateway signs for it, and its fee is
// counted back), less what it paid as consumer — the difference is the
// protocol fee — less energy.
type WashReport struct {
	Class, Model   string
	TokensPerEpoch uint64
	PriceMicroUSD  uint64
	Epochs         int
	Levels         []WashLevel
	// Pays is whether either attack made money at some level; PaysAtBps
	// the lowest such level.
	Pays      bool
	PaysAtBps uint32
}

// WashLevel is one honest demand level, per epoch.
type WashLevel struct {
	LevelBps                   uint32
	HonestDemand, HonestServed uint64
	// Work units by the ledger's rule, and the providers' emission pool.
	HonestWork, WashWork uint64
	Pool                 money.Amount
	// The trader's rewards, what it paid as consumer, what came back as
	// provider share, the protocol fees it paid the treasury, and the
	// energy of serving the requests (wash trading only).
	Rewards, FeesPaid, FeesBack, ProtocolFees, Energy money.Amount
	// WashNet is the wash trader's net, FabricatedNet the fabricator's
	// (the same without the energy).
	WashNet, FabricatedNet Net
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
		protocol := s.washProtocol
		n := uint64(cfg.Wash.Epochs)
		t := &s.wash.tally
		l := WashLevel{LevelBps: lv, HonestDemand: demand / n, HonestServed: served / n,
			HonestWork: (work - min(work, t.work)) / n, WashWork: t.work / n, Pool: pool / money.Amount(n),
			Rewards: t.emission / money.Amount(n), FeesPaid: t.paid / money.Amount(n), FeesBack: addAmount(t.fees, s.washGateway) / money.Amount(n),
			ProtocolFees: protocol / money.Amount(n), Energy: t.energy / money.Amount(n),
			WashNet:       perEpoch(t.net()+net(s.washGateway), n),
			FabricatedNet: perEpoch(t.net()+net(s.washGateway)+net(t.energy), n)}
		if !rep.Pays && (l.WashNet >= 0 || l.FabricatedNet >= 0) {
			rep.Pays, rep.PaysAtBps = true, lv
		}
		rep.Levels = append(rep.Levels, l)
	}
	return rep, nil
}
