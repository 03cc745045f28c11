package attack

import (
	"fmt"
	"testing"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// spendWorld: two honest gateways, each staked the minimum, one provider,
// and a consumer ("mallory") with a balance and nothing else.
type spendWorld struct {
	*settleChain
	params              ledger.Params
	gw1, gw2, prov, mal keys.PrivateKey
	nextID              int
}

const spendBalance = 500 * money.Unit

func newSpendWorld(tb testing.TB) *spendWorld {
	w := &spendWorld{params: ledger.DefaultParams(),
		gw1: attackKey(tb, "gateway one"), gw2: attackKey(tb, "gateway two"), prov: attackKey(tb, "provider"), mal: attackKey(tb, "spender")}
	w.params.EscrowBlocks = 0
	p := w.params
	g := ledger.Genesis{Params: p, Accounts: []ledger.GenesisAccount{
		{Address: w.gw1.Public().Address(), PubKey: w.gw1.Public(), Stake: p.MinGatewayStake, Roles: []string{"gateway"}},
		{Address: w.gw2.Public().Address(), PubKey: w.gw2.Public(), Stake: p.MinGatewayStake, Roles: []string{"gateway"}},
		{Address: w.prov.Public().Address(), PubKey: w.prov.Public(), Stake: p.MinProviderStake, Roles: []string{"provider"}},
		{Address: w.mal.Public().Address(), PubKey: w.mal.Public(), Balance: spendBalance},
	}}
	w.settleChain = newSettleChain(tb, g)
	return w
}

// admissible is what gw may admit new requests of the consumer against,
// read from the ledger as the gateway reads it: the consumer's deposit
// for gw, locked, which no other gateway can draw.
func (w *spendWorld) admissible(gw keys.PrivateKey) money.Amount {
	w.tb.Helper()
	d, err := ledger.View{R: w.state}.Deposit(w.mal.Public().Address(), gw.Public().Address())
	if err != nil {
		w.tb.Fatal(err)
	}
	return d.Locked
}

// serve has gw serve requests of the consumer worth amount in all and
// settle their receipts; it returns the receipts' total.
func (w *spendWorld) serve(gw keys.PrivateKey, amount money.Amount) money.Amount {
	w.tb.Helper()
	var rs []receipt.Signed
	var total money.Amount
	for left := amount; left > 0; {
		part := min(left, 100*money.Unit)
		w.nextID++
		r := signedReceipt(w.tb, gw, w.prov, w.mal.Public().Address(), fmt.Sprint("chatcmpl-spend-", w.nextID), 0, 0).Receipt
		// One base unit per completion token.
		r.CompletionTokens, r.PriceCompletionPerMTok, r.Amount = uint64(part), money.Unit, part
		rs = append(rs, resign(gw, w.prov, r))
		total += part
		left -= part
	}
	if len(rs) == 0 {
		return 0
	}
	res := w.settle(gw, rs...)
	if res.Code != ledger.CodeOK || len(rejections(res)) != 0 {
		w.tb.Fatalf("settle at %s: code %d %s %v", gw.Public().Address(), res.Code, res.Log, rejections(res))
	}
	return total
}

func resign(gw, prov keys.PrivateKey, r receipt.Receipt) receipt.Signed {
	return receipt.Signed{Receipt: r, ProviderSignature: receipt.SignProvider(prov, &r), GatewaySignature: receipt.SignGateway(gw, &r)}
}

// holds is everything the consumer owns: its balance and its deposits.
func (w *spendWorld) holds() money.Amount {
	w.tb.Helper()
	a, _ := w.account(w.mal.Public().Address())
	total := a.Balance
	for _, gw := range []keys.PrivateKey{w.gw1, w.gw2} {
		d, err := ledger.View{R: w.state}.Deposit(w.mal.Public().Address(), gw.Public().Address())
		if err != nil {
			w.tb.Fatal(err)
		}
		total += d.Total()
	}
	return total
}

func (w *spendWorld) stake(gw keys.PrivateKey) money.Amount {
	a, _ := w.account(gw.Public().Address())
	return a.Stake
}

// TestM3OneBalanceSpentAtTwoGateways: the attacker is a consumer who
// approves two gateways for its whole balance, so that each admits
// requests against the same money, and spends it at both: the excess
// would be charged to the gateways' stakes. Property: approve locks the
// amount in a deposit for that gateway, which only that gateway can draw;
// a gateway admits against its deposit, so the consumer cannot be served
// for more than it deposited, and no gateway's stake pays for what
// another spent. Taking money out of a deposit leaves it drawable by the
// gateway for deposit_unlock_blocks, so hanging up and withdrawing right
// after being served does not escape payment either.
func TestM3OneBalanceSpentAtTwoGateways(t *testing.T) {
	w := newSpendWorld(t)
	mal := w.mal.Public().Address()
	for _, res := range w.block(
		w.tx(w.mal, ledger.Tx{Kind: ledger.KindApprove, Gateway: w.gw1.Public().Address(), Amount: spendBalance}),
		w.tx(w.mal, ledger.Tx{Kind: ledger.KindApprove, Gateway: w.gw2.Public().Address(), Amount: spendBalance}),
	) {
		t.Logf("approve: code %d %s", res.Code, res.Log)
	}
	// Both gateways admit requests at once, each against what the ledger
	// lets it draw, then both settle.
	admit1, admit2 := w.admissible(w.gw1), w.admissible(w.gw2)
	served := w.serve(w.gw1, admit1)
	served += w.serve(w.gw2, admit2)
	if served > spendBalance {
		t.Errorf("the consumer was served %s against a balance of %s", served, spendBalance)
	}
	if spent := spendBalance - w.holds(); spent != served {
		t.Errorf("the consumer paid %s for %s served", spent, served)
	}
	for _, gw := range []keys.PrivateKey{w.gw1, w.gw2} {
		if s := w.stake(gw); s != w.params.MinGatewayStake {
			t.Errorf("gateway %s's stake paid %s for the consumer", gw.Public().Address(), w.params.MinGatewayStake-s)
		}
	}

	// Lock a fresh deposit, get served against it, take it all out
	// before the gateway settles: the receipts are still paid from the
	// unlocking part, and the money returns only after the delay.
	w2 := newSpendWorld(t)
	w2.block(w2.tx(w2.mal, ledger.Tx{Kind: ledger.KindApprove, Gateway: w2.gw1.Public().Address(), Amount: 100 * money.Unit}))
	admitted := w2.admissible(w2.gw1)
	if res := w2.block(w2.tx(w2.mal, ledger.Tx{Kind: ledger.KindApprove, Gateway: w2.gw1.Public().Address(), Amount: 0}))[0]; res.Code != ledger.CodeOK {
		t.Fatalf("lowering the deposit: %d %s", res.Code, res.Log)
	}
	if a, _ := w2.account(mal); a.Balance != spendBalance-100*money.Unit {
		t.Errorf("lowering the deposit returned money at once: balance %s", a.Balance)
	}
	w2.serve(w2.gw1, admitted)
	if s := w2.stake(w2.gw1); s != w2.params.MinGatewayStake {
		t.Errorf("the gateway's stake paid %s for what the consumer took back", w2.params.MinGatewayStake-s)
	}
	if h := w2.holds(); h != spendBalance-admitted {
		t.Errorf("the consumer holds %s after being served %s of %s", h, admitted, spendBalance)
	}
}
