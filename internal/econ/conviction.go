package econ

import (
	"math"

	"github.com/idlegrid/idlegrid/internal/money"
)

// ConvictionCost is what convicting an honest provider takes: a case fails
// only when verifiers holding at least FailStakeBps of all verifier stake
// vote fail, so an attacker whose every vote is a lie must hold that share
// against the honest verifiers' stake HonestStake: AttackerStake =
// s·T/(1−s), rounded up, and at least the minimum verifier stake.
type ConvictionCost struct {
	FailStakeBps  uint32
	HonestStake   money.Amount
	AttackerStake money.Amount
	// Impossible: a share of 100 % cannot be reached against any honest
	// stake.
	Impossible bool
}

// convictionCost is the figure for the simulated genesis: its verifiers'
// total stake is the honest stake.
func convictionCost(cfg *Config) ConvictionCost {
	var honest money.Amount
	for i := range cfg.Verifiers {
		honest = addAmount(honest, mulDivAmount(max(cfg.Params.MinVerifierStake, money.Unit), uint64(i+1), 1))
	}
	s := cfg.Params.VerdictFailStakeBps
	c := ConvictionCost{FailStakeBps: s, HonestStake: honest}
	switch {
	case s >= 10_000:
		c.Impossible, c.AttackerStake = true, math.MaxInt64
	default:
		// ⌈s·T / (10000 − s)⌉
		d := uint64(10_000 - s)
		x := mulDivAmount(honest, uint64(s), d)
		if mulDivAmount(x, d, 1) < mulDivAmount(honest, uint64(s), 1) {
			x++
		}
		c.AttackerStake = max(x, cfg.Params.MinVerifierStake)
	}
	return c
}
