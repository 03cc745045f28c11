package econ

import (
	"math/big"

	"github.com/idlegrid/idlegrid/internal/money"
)

// certain is probability one in the 10⁻⁸ units detection chances use.
const certain = 100_000_000

// CheatRow weighs one strategy against honesty in one hardware class.
//
// The simulation runs no verifiers, so a verdict is modelled (its
// defaults are the ledger's conviction penalty): in an epoch it serves, a cheater is caught with probability
// DetectE8; a catch costs Penalty (SlashBps of the stake plus the escrow
// and unvested rewards a provider of the class holds at an epoch's end,
// read from the ledger) and JailEpochs epochs of no income. Over repeated
// cycles of cheating until caught and sitting out the jail, the expected
// net per epoch is (Honest + Gain − p·Penalty) / (1 + p·JailEpochs).
type CheatRow struct {
	Strategy Strategy
	Class    string
	// DetectE8 is the chance per epoch of being caught, in 10⁻⁸: canary
	// share × detection rate × the share of epochs the class is online.
	DetectE8 uint64
	// Honest is the class's honest net per provider-epoch; Gain what the
	// strategy changes in it per epoch while not caught.
	Honest, Gain Net
	Penalty      money.Amount
	JailEpochs   uint64
	// Expected is the strategy's expected net per provider-epoch.
	Expected Net
	// BreakEvenE8 is the detection chance per epoch below which the
	// strategy pays better than honesty: 0 when it never does, certain
	// when it does even if always caught.
	BreakEvenE8 uint64
	// Live is what the population's providers of this class and strategy
	// really made in the run; nil when there were none.
	Live *LiveCheat
}

// LiveCheat is what cheaters simulated in the run made.
type LiveCheat struct {
	Providers                      int
	ProviderEpochs, Caught, Jailed uint64
	// Net is per provider-epoch, penalties booked when caught included.
	Net       Net
	Penalties money.Amount
}

// cheatRows weighs every cheating strategy in every class that has honest
// providers to compare with.
func (s *sim) cheatRows(classes []ClassEarnings) []CheatRow {
	sl := &s.cfg.Slashing
	var rows []CheatRow
	for _, ce := range classes {
		ci, _ := s.cfg.class(ce.Class)
		online := share(ce.OnlineEpochs, ce.ProviderEpochs) // bps
		slash, _ := ce.Stake.MulDiv(uint64(sl.SlashBps), 10_000)
		for _, st := range cheats {
			r := CheatRow{Strategy: st, Class: ce.Class, Honest: ce.Net, JailEpochs: sl.JailEpochs,
				Penalty:  addAmount(slash, ce.AtRisk),
				DetectE8: uint64(sl.CanaryBps) * uint64(s.detectBps(st)) * online / 10_000}
			switch st {
			case Quantize, Fabricate:
				r.Gain = net(mulDivAmount(money.Amount(max(ce.Energy, 0)), 10_000-uint64(s.costBps(st)), 10_000))
			case InflateUnmetered:
				r.Gain = net(mulDivAmount(money.Amount(max(ce.Fees+ce.Emission, 0)), uint64(sl.InflateBps), 10_000))
			case Inflate:
				// The gateway meters the stream it relays and signs only its
				// own count, so the receipt is never countersigned: the
				// provider served (and paid the energy) for nothing. Nothing
				// reaches the ledger, so there is nothing to slash.
				r.Gain = -(ce.Fees + ce.Emission)
				r.DetectE8, r.Penalty, r.JailEpochs = certain, 0, 0
			}
			r.Expected = expectedNet(r.Honest, r.Gain, r.DetectE8, r.Penalty, r.JailEpochs)
			r.BreakEvenE8 = breakEven(r.Honest, r.Gain, r.Penalty, r.JailEpochs)
			r.Live = s.live(ci, st)
			rows = append(rows, r)
		}
	}
	return rows
}

// expectedNet is (honest + gain − p·penalty) / (1 + p·jail), p in 10⁻⁸.
func expectedNet(honest, gain Net, p uint64, penalty money.Amount, jail uint64) Net {
	num := new(big.Int).Mul(big.NewInt(int64(honest)+int64(gain)), big.NewInt(certain))
	num.Sub(num, new(big.Int).Mul(new(big.Int).SetUint64(p), new(big.Int).SetUint64(uint64(penalty))))
	den := new(big.Int).Mul(new(big.Int).SetUint64(p), new(big.Int).SetUint64(jail))
	den.Add(den, big.NewInt(certain))
	return Net(clampBig(num.Quo(num, den)))
}

// breakEven is the detection chance p (10⁻⁸) at which cheating nets as
// much as honesty: gain = p·(penalty + jail·honest).
func breakEven(honest, gain Net, penalty money.Amount, jail uint64) uint64 {
	if gain <= 0 {
		return 0
	}
	loss := new(big.Int).Mul(big.NewInt(int64(honest)), new(big.Int).SetUint64(jail))
	loss.Add(loss, new(big.Int).SetUint64(uint64(penalty)))
	if loss.Sign() <= 0 {
		return certain
	}
	p := new(big.Int).Mul(big.NewInt(int64(gain)), big.NewInt(certain))
	p.Quo(p, loss)
	if !p.IsUint64() || p.Uint64() > certain {
		return certain
	}
	return p.Uint64()
}

// live adds up the population's providers of class ci following st.
func (s *sim) live(ci int, st Strategy) *LiveCheat {
	var t tally
	n := 0
	for _, p := range s.providers {
		if p.class == ci && p.strategy == st {
			t.add(&p.tally)
			n++
		}
	}
	if n == 0 {
		return nil
	}
	return &LiveCheat{Providers: n, ProviderEpochs: t.epochs, Caught: t.caught, Jailed: t.jailed, Net: perEpoch(t.net(), t.epochs),
		Penalties: addAmount(t.slashed, addAmount(t.escrowLost, t.unvestedLost))}
}
