package ledger

import (
	"fmt"
	"testing"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
)

// BenchmarkSettleBatch settles one batch of 1000 valid receipts from 10
// providers for 100 consumers: decoding, both signatures of every receipt,
// and the state updates. Each iteration runs the same block on the same
// committed state.
func BenchmarkSettleBatch(b *testing.B) {
	const receipts, providers, consumers = 1000, 10, 100
	gw := testKey(b, "bench-gw")
	p := DefaultParams()
	g := Genesis{Params: p, Accounts: []GenesisAccount{
		{Address: addr(gw), PubKey: gw.Public(), Stake: p.MinGatewayStake, Roles: []string{"gateway"}},
	}}
	provs := make([]keys.PrivateKey, providers)
	for i := range provs {
		provs[i] = testKey(b, fmt.Sprintf("bench-prov-%d", i))
		g.Accounts = append(g.Accounts, GenesisAccount{Address: addr(provs[i]), PubKey: provs[i].Public(), Stake: p.MinProviderStake, Roles: []string{"provider"}})
	}
	cons := make([]keys.Address, consumers)
	for i := range cons {
		cons[i] = addr(testKey(b, fmt.Sprintf("bench-consumer-%d", i)))
		g.Accounts = append(g.Accounts, GenesisAccount{Address: cons[i], Balance: 1_000 * money.Unit,
			Approvals: []GenesisApproval{{Gateway: addr(gw), Deposit: 1_000 * money.Unit}}})
	}
	c := newChain(b, g)
	rs := make([]BatchReceipt, receipts)
	for i := range rs {
		rs[i] = batchReceipt(b, gw, provs[i%providers], cons[i%consumers], fmt.Sprintf("bench-%d", i), 500, 300)
	}
	tx := settleTx(gw, 0, rs...)

	for b.Loop() {
		blk, err := NewBlock(c.state, 1)
		if err != nil {
			b.Fatal(err)
		}
		res, err := blk.Apply(tx)
		if err != nil || res.Code != CodeOK || attr(res.Events[0], "accepted") != fmt.Sprint(receipts) {
			b.Fatalf("settle: %v code %d (%s) %+v", err, res.Code, res.Log, res.Events[0].Attrs)
		}
	}
	b.ReportMetric(float64(receipts)*float64(b.N)/b.Elapsed().Seconds(), "receipts/s")
}
