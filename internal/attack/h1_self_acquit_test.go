package attack

import (
	"testing"

	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// TestH1ProviderCannotAcquitItself — attacker: a cheating provider that
// also registers as a verifier, with more stake than the honest verifier.
// Attack: it computes the sample case id of each receipt it just signed
// and votes "pass" first, hoping to decide its own cases before the honest
// "fail" arrives. Property: the provider (and the receipt's gateway) may
// not vote in its own cases, and no vote decides a case before maturity;
// the honest verifier's fails count and convict it.
func TestH1ProviderCannotAcquitItself(t *testing.T) {
	honest := vKey(t, "honest verifier")
	c := newVChain(t, nil, vVerifier{honest, 500 * money.Unit})
	c.block(c.tx(c.prov, ledger.Tx{Kind: ledger.KindRegister, Role: ledger.RoleVerifier, Info: "also a verifier"}))
	honestStake := c.account(honest).Stake
	for range 3 {
		br := c.serve(c.prov)
		c.block(c.tx(c.prov, sampleVerdict(c.prov.Public(), br, true)))
		c.block(c.tx(honest, sampleVerdict(c.prov.Public(), br, false)))
	}
	events := c.skip(ledger.DefaultParams().VerdictDelayBlocks + 3)
	if !vHas(events, "convicted") || !c.account(c.prov).Jailed {
		t.Fatal("the cheating provider acquitted itself: not convicted on three honest fail verdicts")
	}
	if got := c.account(honest).Stake; got != honestStake {
		t.Errorf("honest verifier's stake %s, was %s", got, honestStake)
	}
}

// TestH1GatewayCannotPlantBothVerdicts — attacker: a gateway. Attack: it
// commits both (E, pass) and (E, fail) for the sample E of a receipt it
// countersigned, lets honest verifiers judge it, and reveals whichever
// verdict slashes them. Property: the reveal takes effect only at
// maturity and yields to verifiers holding the deciding share of stake
// (the gateway forfeits plant_forfeit_bps instead), a second reveal of
// one evidence hash or a commitment left unrevealed burns the gateway's
// stake, and the honest verifier keeps its stake.
func TestH1GatewayCannotPlantBothVerdicts(t *testing.T) {
	for _, revealBoth := range []bool{false, true} {
		honest := vKey(t, "honest verifier")
		c := newVChain(t, nil, vVerifier{honest, 500 * money.Unit})
		br := c.serve(c.prov)
		evidence := sampleVerdict(c.prov.Public(), br, false).Evidence
		salt := receipt.Sum([]byte("salt"))
		honestStake, gwStake := c.account(honest).Stake, c.account(c.gw).Stake
		c.block(
			c.tx(c.gw, ledger.Tx{Kind: ledger.KindPlant, Evidence: ledger.PlantCommitment(evidence, true, salt)}),
			c.tx(c.gw, ledger.Tx{Kind: ledger.KindPlant, Evidence: ledger.PlantCommitment(evidence, false, salt)}))
		// The honest verifier judges the sample: it is bad.
		c.block(c.tx(honest, sampleVerdict(c.prov.Public(), br, false)))
		// The gateway reveals the verdict that punishes it.
		c.block(c.tx(c.gw, ledger.Tx{Kind: ledger.KindReveal, Evidence: evidence, Pass: true, Salt: salt}))
		if revealBoth {
			c.block(c.tx(c.gw, ledger.Tx{Kind: ledger.KindReveal, Evidence: evidence, Pass: false, Salt: salt}))
		}
		c.skip(ledger.DefaultParams().PlantRevealBlocks + 2)
		if got := c.account(honest).Stake; got != honestStake {
			t.Errorf("reveal both %v: the honest verifier was slashed by a gateway's choice of truth: stake %s, was %s", revealBoth, got, honestStake)
		}
		if got := c.account(c.gw).Stake; got >= gwStake {
			t.Errorf("reveal both %v: the equivocating gateway kept its stake %s", revealBoth, got)
		}
	}
}
