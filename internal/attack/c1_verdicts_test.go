package attack

import (
	"testing"

	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// TestC1FabricatedEvidenceOpensNoCase — attacker: anyone who stakes the
// verifier minimum. Attack: post three "fail" verdicts on made-up evidence
// hashes against an honest provider (with the default genesis, one vote
// used to decide a case, and three failed cases convict). Property: a
// verdict that opens a case must carry settled receipts of the provider
// that hash to its evidence; made-up evidence opens nothing, and the
// honest provider keeps its stake and record.
func TestC1FabricatedEvidenceOpensNoCase(t *testing.T) {
	attacker := vKey(t, "c1 attacker")
	c := newVChain(t, nil,
		vVerifier{vKey(t, "honest verifier"), 1_000 * money.Unit},
		vVerifier{attacker, ledger.DefaultParams().MinVerifierStake})
	before := c.account(c.prov)
	for _, s := range []string{"made up 1", "made up 2", "made up 3"} {
		c.block(c.tx(attacker, madeUpVerdict(c.prov.Public(), receipt.Sum([]byte(s)), false)))
	}
	c.skip(ledger.DefaultParams().VerdictDelayBlocks + 2)
	after := c.account(c.prov)
	r, err := c.view().ProviderRecord(c.prov.Public().Address())
	if err != nil {
		t.Fatal(err)
	}
	if after.Jailed || after.Stake != before.Stake || r.Failures != 0 {
		t.Fatalf("an honest provider convicted on made-up evidence: jailed %v, stake %s (was %s), failures %d",
			after.Jailed, after.Stake, before.Stake, r.Failures)
	}
}

// TestC1CoalitionUnderShareCannotConvict — attacker: a coalition of
// verifiers holding just under verdict_fail_stake_bps (half) of the
// verifier stake, split over four keys (sybils). Attack: each key votes
// "fail" on three real, settled receipts of an honest provider (public in
// the settle-batches), while the honest verifiers, holding the rest, are
// offline. Property: cases are decided at maturity by stake; fail-votes
// short of the share leave the cases undecided, so the provider is not
// convicted and loses nothing, however the stake is split.
func TestC1CoalitionUnderShareCannotConvict(t *testing.T) {
	var sybils []vVerifier
	for _, n := range []string{"sybil 1", "sybil 2", "sybil 3", "sybil 4"} {
		sybils = append(sybils, vVerifier{vKey(t, n), 2_500 * money.Unit})
	}
	c := newVChain(t, nil, append(sybils, vVerifier{vKey(t, "honest verifier"), 10_000*money.Unit + 1})...)
	before := c.account(c.prov)
	for range 3 {
		br := c.serve(c.prov)
		var txs [][]byte
		for _, s := range sybils {
			txs = append(txs, c.tx(s.key, sampleVerdict(c.prov.Public(), br, false)))
		}
		c.block(txs...)
	}
	events := c.skip(ledger.DefaultParams().VerdictDelayBlocks + 2)
	after := c.account(c.prov)
	if vHas(events, "convicted") || after.Jailed || after.Stake != before.Stake {
		t.Fatalf("a coalition under the stake share convicted an honest provider: jailed %v, stake %s (was %s)", after.Jailed, after.Stake, before.Stake)
	}
	if r, err := c.view().ProviderRecord(c.prov.Public().Address()); err != nil || r.Failures != 0 {
		t.Fatalf("undecided cases counted: %+v %v", r, err)
	}
}
