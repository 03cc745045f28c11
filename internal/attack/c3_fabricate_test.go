package attack

import (
	"fmt"
	"testing"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

const c3ChainID = "idlegrid-attack-c3"

// c3Chain is the emission attacks' ledger node in memory.
type c3Chain struct {
	*memChain
	nextID int
}

func c3Key(tb testing.TB, name string) keys.PrivateKey { return attackKey(tb, "c3/"+name) }

func newC3Chain(tb testing.TB, g ledger.Genesis) *c3Chain {
	return &c3Chain{memChain: newMemChain(tb, c3ChainID, g)}
}

func (c *c3Chain) block(txs ...[]byte) ledger.Executed { return c.execute(txs...) }

// settle has gw settle one receipt of prov for consumer, tokens at
// pricePerMTok (completion) on model, and returns the amount it charged.
func (c *c3Chain) settle(gw, prov keys.PrivateKey, consumer keys.Address, model string, tokens uint64, pricePerMTok money.Amount) money.Amount {
	c.tb.Helper()
	amount, err := receipt.ComputeAmount(0, tokens, 0, pricePerMTok)
	if err != nil {
		c.tb.Fatal(err)
	}
	c.nextID++
	id := fmt.Sprint("c3-", c.nextID)
	r := receipt.Receipt{
		Version: receipt.Version, ChainID: c3ChainID, RequestID: id,
		Gateway: gw.Public(), Provider: prov.Public(), Consumer: consumer,
		Model: model, ModelDigest: "sha256:" + receipt.Sum([]byte(model)).String(),
		CompletionTokens: tokens, PriceCompletionPerMTok: pricePerMTok, Amount: amount,
		RequestHash: receipt.Sum([]byte("request " + id)), ResponseHash: receipt.Sum([]byte("response " + id)),
		StartUnixMs: 1_717_171_717_000, EndUnixMs: 1_717_171_719_500,
	}
	s := receipt.Signed{Receipt: r, ProviderSignature: receipt.SignProvider(prov, &r), GatewaySignature: receipt.SignGateway(gw, &r)}
	rs := []ledger.BatchReceipt{ledger.NewBatchReceipt(&s)}
	out := c.block(c.tx(gw, ledger.Tx{Kind: ledger.KindSettleBatch, Receipts: rs, Root: ledger.BatchRoot(rs)}))
	res := out.Results[0]
	if res.Code != ledger.CodeOK {
		c.tb.Fatalf("settle %s: code %d %s", id, res.Code, res.Log)
	}
	for _, ev := range res.Events {
		if ev.Type == "receipt_rejected" {
			c.tb.Fatalf("settle %s: rejected %+v", id, ev.Attrs)
		}
	}
	return amount
}

// endEpoch runs empty blocks to the end of the first epoch.
func (c *c3Chain) endEpoch(p ledger.Params) {
	for c.height < p.EpochBlocks {
		c.block()
	}
}

func (c *c3Chain) payout(a keys.Address) money.Amount {
	c.tb.Helper()
	ps, err := ledger.View{R: c.state}.Payouts(1)
	if err != nil {
		c.tb.Fatal(err)
	}
	for _, p := range ps {
		if p.Account == a {
			return p.Amount
		}
	}
	return 0
}

func (c *c3Chain) total(a keys.Address) money.Amount {
	c.tb.Helper()
	acct, _, err := ledger.View{R: c.state}.Account(a)
	if err != nil {
		c.tb.Fatal(err)
	}
	t, err := acct.Total()
	if err != nil {
		c.tb.Fatal(err)
	}
	return t
}

// deposit is what consumer has locked for gw: its money, though only gw
// can draw it.
func (c *c3Chain) deposit(consumer, gw keys.Address) money.Amount {
	c.tb.Helper()
	d, err := ledger.View{R: c.state}.Deposit(consumer, gw)
	if err != nil {
		c.tb.Fatal(err)
	}
	t := d.Locked
	for _, e := range d.Unlocking {
		t += e.Amount
	}
	return t
}

// c3World is the default genesis with an honest gateway, provider and
// consumer, and an attacker: one account registered as gateway and
// provider (staked for both), paid by a consumer account it also owns.
type c3World struct {
	*c3Chain
	params                             ledger.Params
	gw, honest, user, attacker, sucker keys.PrivateKey
}

func newC3World(tb testing.TB) *c3World {
	tb.Helper()
	p := ledger.DefaultParams()
	w := &c3World{params: p, gw: c3Key(tb, "gateway"), honest: c3Key(tb, "honest provider"), user: c3Key(tb, "user"),
		attacker: c3Key(tb, "attacker"), sucker: c3Key(tb, "attacker's consumer")}
	funds := 1_000_000 * money.Unit
	g := ledger.Genesis{Params: p, Accounts: []ledger.GenesisAccount{
		{Address: w.gw.Public().Address(), PubKey: w.gw.Public(), Stake: p.MinGatewayStake, Roles: []string{"gateway"}},
		{Address: w.honest.Public().Address(), PubKey: w.honest.Public(), Stake: p.MinProviderStake, Roles: []string{"provider"}},
		{Address: w.user.Public().Address(), PubKey: w.user.Public(), Balance: funds,
			Approvals: []ledger.GenesisApproval{{Gateway: w.gw.Public().Address(), Deposit: funds}}},
		{Address: w.attacker.Public().Address(), PubKey: w.attacker.Public(), Stake: p.MinGatewayStake + p.MinProviderStake, Roles: []string{"gateway", "provider"}},
		{Address: w.sucker.Public().Address(), PubKey: w.sucker.Public(), Balance: funds,
			Approvals: []ledger.GenesisApproval{{Gateway: w.attacker.Public().Address(), Deposit: funds}}},
	}}
	w.c3Chain = newC3Chain(tb, g)
	return w
}

// honestMillion is the honest provider's epoch: a million real tokens of
// an 8B model at 6 tokens per million (0.06 USD/Mtok at 100 tokens per USD).
func (w *c3World) honestMillion() money.Amount {
	return w.settle(w.gw, w.honest, w.user.Public().Address(), "llama3.1:8b", 1_000_000, 6*money.Unit)
}

// TestC3FabricatedReceiptsEarnNothing: the attacker, one account that is
// both gateway and provider, settles receipts for work never done — huge
// token counts at the least price (whose cost rounds to nothing) and at a
// price of zero, naming the heaviest model — beside an honest provider
// that served a million real tokens. Property: emission follows value paid,
// so the fabricator earns nothing for receipts that pay nothing, and the
// honest provider's reward is exactly what it earns with no fabricator on
// the chain.
func TestC3FabricatedReceiptsEarnNothing(t *testing.T) {
	control := newC3World(t)
	control.honestMillion()
	control.endEpoch(control.params)
	honestAlone := control.payout(control.honest.Public().Address())
	if honestAlone == 0 {
		t.Fatal("an honest provider that served a million paid tokens earned nothing")
	}

	w := newC3World(t)
	w.honestMillion()
	att, sucker := w.attacker.Public().Address(), w.sucker.Public().Address()
	before := w.total(att) + w.total(sucker) + w.deposit(sucker, att)
	var paid money.Amount
	for range 8 {
		paid += w.settle(w.attacker, w.attacker, sucker, "llama3.3:70b", 999_999, 1)
		paid += w.settle(w.attacker, w.attacker, sucker, "llama3.3:70b", 1_000_000_000, 0)
	}
	w.endEpoch(w.params)
	reward := w.payout(att)
	t.Logf("fabricator paid %d and earned %d; honest provider earned %d (%d alone)", paid, reward, w.payout(w.honest.Public().Address()), honestAlone)
	if paid != 0 || reward != 0 {
		t.Errorf("fabricated receipts paying %d earned %d of emission, want 0", paid, reward)
	}
	if got := w.payout(w.honest.Public().Address()); got != honestAlone {
		t.Errorf("honest provider earned %d beside the fabricator, %d alone: diluted by receipts that paid nothing", got, honestAlone)
	}
	if after := w.total(att) + w.total(sucker) + w.deposit(sucker, att); after > before {
		t.Errorf("attacker's accounts grew from %d to %d", before, after)
	}
}

// TestC3WashTradingLoses: the same attacker buys real requests from
// itself at a normal price, in volume (its consumer account pays, its
// gateway and provider shares come back to it), beside honest demand and
// with none. Property: its epoch reward is below the protocol fees it paid
// the treasury, so its accounts end the epoch poorer than they began —
// for every volume, because the reward is capped below the fee.
func TestC3WashTradingLoses(t *testing.T) {
	for _, honest := range []bool{false, true} {
		for _, tokens := range []uint64{1_000, 1_000_000, 100_000_000} {
			t.Run(fmt.Sprintf("honest=%v/tokens=%d", honest, tokens), func(t *testing.T) {
				w := newC3World(t)
				if honest {
					w.honestMillion()
				}
				att, sucker := w.attacker.Public().Address(), w.sucker.Public().Address()
				before := w.total(att) + w.total(sucker) + w.deposit(sucker, att)
				paid := w.settle(w.attacker, w.attacker, sucker, "llama3.1:8b", tokens, 6*money.Unit)
				fee, _ := paid.MulDiv(uint64(w.params.ProtocolFeeBps), 10_000)
				w.endEpoch(w.params)
				reward := w.payout(att)
				after := w.total(att) + w.total(sucker) + w.deposit(sucker, att)
				t.Logf("paid %d, protocol fee %d, reward %d, net %d", paid, fee, reward, int64(after)-int64(before))
				if reward >= fee && fee > 0 {
					t.Errorf("wash trade paying %d (protocol fee %d) earned %d: reward − fees = %d ≥ 0", paid, fee, reward, int64(reward)-int64(fee))
				}
				if after >= before {
					t.Errorf("wash trader's accounts went from %d to %d: it profits", before, after)
				}
			})
		}
	}
}
