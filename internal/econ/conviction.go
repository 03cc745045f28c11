package econ

import (
	"encoding/json"
	"math"

	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
)

// defaultFailStakeBps is the share of verifier stake whose "fail" votes
// fail a case, assumed when the ledger's parameters do not name it.
const defaultFailStakeBps = 5_000

// ConvictionCost is what convicting an honest provider takes: a case fails
// only when verifiers holding at least FailStakeBps of all verifier stake
// vote fail, so an attacker whose every vote is a lie must hold that share
// against the honest verifiers' stake HonestStake: AttackerStake =
// s·T/(1−s), rounded up, and at least the minimum verifier stake.
type ConvictionCost struct {
	FailStakeBps uint32
	// Assumed is true when the ledger has no such parameter and
	// FailStakeBps is defaultFailStakeBps.
	Assumed       bool
	HonestStake   money.Amount
	AttackerStake money.Amount
	// Impossible: a share of 100 % cannot be reached against any honest
	// stake.
	Impossible bool
}

// failStakeBps reads the ledger parameter verdict_fail_stake_bps by its
// genesis name, so the figure follows the ledger once it has the rule.
func failStakeBps(p *ledger.Params) (uint32, bool) {
	b, err := json.Marshal(p)
	if err != nil {
		return defaultFailStakeBps, false
	}
	var named struct {
		FailStakeBps *uint32 `json:"verdict_fail_stake_bps"`
	}
	if json.Unmarshal(b, &named) != nil || named.FailStakeBps == nil {
		return defaultFailStakeBps, false
	}
	return *named.FailStakeBps, true
}

// convictionCost is the figure for the simulated genesis: its verifiers'
// total stake is the honest stake.
func convictionCost(cfg *Config) ConvictionCost {
	var honest money.Amount
	for i := range cfg.Verifiers {
		honest = addAmount(honest, mulDivAmount(max(cfg.Params.MinVerifierStake, money.Unit), uint64(i+1), 1))
	}
	s, found := failStakeBps(&cfg.Params)
	c := ConvictionCost{FailStakeBps: s, Assumed: !found, HonestStake: honest}
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
