package attack

import (
	"testing"

	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
)

// TestM2UnbondBeforeConvictionIsRefused — attacker: a cheating provider.
// Attack: on its first failed case it unstakes everything and, once the
// unbonding period (100 blocks) is over, withdraws before the third
// failed case convicts it (three within 10,000 blocks, each maturing 20
// blocks after it opened). Property: unbonding stake cannot be withdrawn
// while a case about the provider is open or a failed case lies inside
// the conviction window; the conviction slashes its unbonding stake like
// bonded stake, and only then may it withdraw what is left.
func TestM2UnbondBeforeConvictionIsRefused(t *testing.T) {
	honest := vKey(t, "honest verifier")
	c := newVChain(t, nil, vVerifier{honest, 500 * money.Unit})
	p := ledger.DefaultParams()
	var receipts []ledger.BatchReceipt
	for range 3 {
		receipts = append(receipts, c.serve(c.prov))
	}
	c.block(c.tx(honest, sampleVerdict(c.prov.Public(), receipts[0], false)))
	stake := c.account(c.prov).Stake
	c.block(c.tx(c.prov, ledger.Tx{Kind: ledger.KindUnstake, Amount: stake}))
	released := c.height + p.UnbondingBlocks
	// The verifier is slow: the other two cases open shortly before the
	// stake is released.
	c.skip(released - 16 - c.height)
	c.block(c.tx(honest, sampleVerdict(c.prov.Public(), receipts[1], false)))
	c.block(c.tx(honest, sampleVerdict(c.prov.Public(), receipts[2], false)))
	c.skip(released - c.height)
	_, res := c.block(c.tx(c.prov, ledger.Tx{Kind: ledger.KindWithdrawUnbonded}))
	if res[0].Code == ledger.CodeOK {
		t.Fatalf("the provider withdrew its unbonding stake while its failed and open cases could still convict it: %+v", res[0].Events)
	}
	t.Logf("refused: %s", res[0].Log)
	events := c.skip(p.VerdictDelayBlocks)
	a := c.account(c.prov)
	if !vHas(events, "convicted") || !a.Jailed {
		t.Fatal("no conviction after three failed cases")
	}
	var unbonding money.Amount
	for _, e := range a.Unbonding {
		unbonding += e.Amount
	}
	if want := stake - stake/2; unbonding != want {
		t.Fatalf("unbonding stake after conviction %s, want %s (half of %s)", unbonding, want, stake)
	}
	if _, res := c.block(c.tx(c.prov, ledger.Tx{Kind: ledger.KindWithdrawUnbonded})); res[0].Code != ledger.CodeOK {
		t.Errorf("withdrawal after the conviction: %d %s", res[0].Code, res[0].Log)
	}
}
