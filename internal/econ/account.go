package econ

import (
	"fmt"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
)

// closeEpoch reads what the ledger paid in epoch e, checks every
// provider's ledger total against what the simulation settled for it, and
// books the epoch: fees and emission from the ledger, energy off it, and
// for a cheater a canary's verdict.
func (s *sim) closeEpoch(e uint64, res *epochResult) error {
	v := s.chain.view()
	rec, ok, err := v.Epoch(e)
	if err != nil || !ok || rec.End != s.chain.height {
		return fmt.Errorf("econ: epoch %d did not end at height %d (record found: %v, err: %v)", e, s.chain.height, ok, err)
	}
	ps, err := v.Payouts(e)
	if err != nil {
		return fmt.Errorf("econ: payouts of epoch %d: %w", e, err)
	}
	paid := make(map[keys.Address]money.Amount, len(ps))
	for _, p := range ps {
		paid[p.Account] = p.Amount
	}
	if res.supply, err = v.Supply(); err != nil {
		return fmt.Errorf("econ: supply: %w", err)
	}
	res.record = rec
	for _, p := range s.all() {
		acct, err := s.chain.account(p.addr)
		if err != nil {
			return err
		}
		total, err := s.owned(p.addr)
		if err != nil {
			return err
		}
		reward := paid[p.addr]
		// Nothing but its receipts and its rewards moves a provider's money.
		if want := net(p.startTotal) + net(reward) + net(p.share) - net(p.paid); net(total) != want {
			return fmt.Errorf("econ: epoch %d: provider %s holds %s on the ledger, the simulation expected %s", e, p.addr, total, want)
		}
		t := &p.tally
		t.served = satAdd(t.served, p.served)
		t.work = satAdd(t.work, p.work)
		t.fees = addAmount(t.fees, p.share)
		t.emission = addAmount(t.emission, reward)
		t.paid = addAmount(t.paid, p.paid)
		t.energy = addAmount(t.energy, cost(p.served, mulDivAmount(s.prices[p.class].energy, uint64(s.costBps(p.strategy)), 10_000)))
		t.atRisk = addAmount(t.atRisk, addAmount(escrowSince(&acct, 0, 0), unvestedSince(&acct, 0, s.chain.height)))
		if p != s.wash {
			res.fees = addAmount(res.fees, p.share)
		}
	}
	for _, p := range s.providers {
		if p.served > 0 && s.caught(p) {
			if err := s.punish(e, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// costBps is what serving costs under strategy st, relative to honest.
func (s *sim) costBps(st Strategy) uint32 {
	switch st {
	case Quantize:
		return s.cfg.Slashing.QuantizeCostBps
	case Fabricate:
		return s.cfg.Slashing.FabricateCostBps
	}
	return 10_000
}

// detectBps is the chance, in basis points, that a canary catches st;
// honest serving and metered inflation meet no verdict.
func (s *sim) detectBps(st Strategy) uint32 {
	switch st {
	case Quantize:
		return s.cfg.Slashing.QuantizeDetectBps
	case Fabricate:
		return s.cfg.Slashing.FabricateDetectBps
	case InflateUnmetered:
		return s.cfg.Slashing.InflateDetectBps
	}
	return 0
}

// caught draws whether a canary catches p this epoch: the chance is the
// canary share times the strategy's detection rate, in 10⁻⁸.
func (s *sim) caught(p *provider) bool {
	chance := uint64(s.cfg.Slashing.CanaryBps) * uint64(s.detectBps(p.strategy))
	return chance > 0 && s.detect.Uint64N(100_000_000) < chance
}

// punish books a verdict against p at the end of epoch e, from its ledger
// state at this height: SlashBps of its stake, its escrow and its
// unvested rewards (what an earlier verdict took excepted), and jail for
// the next JailEpochs epochs — what the ledger's slash takes on a
// conviction. No verdict transaction is sent (a catch stands for the
// failed cases a conviction needs): the ledger state is left as it is and
// the loss is booked in p's tally (docs/economics.md, "Where this differs
// from the ledger's verdict rules").
func (s *sim) punish(e uint64, p *provider) error {
	acct, err := s.chain.account(p.addr)
	if err != nil {
		return err
	}
	h := s.chain.height
	t := &p.tally
	t.caught++
	slash, _ := acct.Stake.MulDiv(uint64(s.cfg.Slashing.SlashBps), 10_000)
	t.slashed = addAmount(t.slashed, slash)
	t.escrowLost = addAmount(t.escrowLost, escrowSince(&acct, p.forfeitedTo, s.params.EscrowBlocks))
	t.unvestedLost = addAmount(t.unvestedLost, unvestedSince(&acct, p.forfeitedTo, h))
	p.forfeitedTo = h
	p.jailedUntil = e + 1 + s.cfg.Slashing.JailEpochs
	return nil
}

// escrowSince is a's escrow from receipts settled after height from (an
// entry settled at height x is released at x + escrowBlocks).
func escrowSince(a *ledger.Account, from, escrowBlocks uint64) money.Amount {
	var sum money.Amount
	for _, en := range a.Escrow {
		if from == 0 || en.Height > from+escrowBlocks {
			sum = addAmount(sum, en.Amount)
		}
	}
	return sum
}

// unvestedSince is what of a's rewards credited after height from has not
// vested at height h.
func unvestedSince(a *ledger.Account, from, h uint64) money.Amount {
	var sum money.Amount
	for _, v := range a.Vesting {
		if from == 0 || v.Start > from {
			sum = addAmount(sum, v.Amount-v.VestedAt(h))
		}
	}
	return sum
}
