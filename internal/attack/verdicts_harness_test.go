package attack

import (
	"fmt"
	"testing"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// The verdict attacks (c1, h1, m2) run against the ledger's state machine
// through its exported API: a genesis, signed transactions, and blocks
// executed on an in-memory state, as a validator would.

const vChainID = "idlegrid-attack-1"

// vChain is one node executing blocks of the verdict attacks.
type vChain struct {
	*memChain
	nextID int
	// The parties of every scenario.
	gw, consumer, prov keys.PrivateKey
}

// vKey is a fixed key per name.
func vKey(tb testing.TB, name string) keys.PrivateKey { return attackKey(tb, name) }

// vVerifier is a verifier account of the genesis with stake.
type vVerifier struct {
	key   keys.PrivateKey
	stake money.Amount
}

// newVChain starts a chain with default parameters (edited by edit): a
// staked gateway, a consumer who approved it, an honest staked provider
// and the verifiers given.
func newVChain(tb testing.TB, edit func(*ledger.Params), verifiers ...vVerifier) *vChain {
	tb.Helper()
	c := &vChain{gw: vKey(tb, "gateway"), consumer: vKey(tb, "consumer"), prov: vKey(tb, "honest provider")}
	p := ledger.DefaultParams()
	if edit != nil {
		edit(&p)
	}
	g := ledger.Genesis{Params: p, Accounts: []ledger.GenesisAccount{
		{Address: c.gw.Public().Address(), PubKey: c.gw.Public(), Stake: 10_000 * money.Unit, Roles: []string{"gateway"}},
		{Address: c.consumer.Public().Address(), Balance: 1_000 * money.Unit,
			Approvals: []ledger.GenesisApproval{{Gateway: c.gw.Public().Address(), Deposit: 1_000 * money.Unit}}},
		{Address: c.prov.Public().Address(), PubKey: c.prov.Public(), Stake: 1_000 * money.Unit, Roles: []string{"provider"}},
	}}
	for _, v := range verifiers {
		g.Accounts = append(g.Accounts, ledger.GenesisAccount{Address: v.key.Public().Address(), PubKey: v.key.Public(),
			Balance: money.Unit, Stake: v.stake, Roles: []string{"verifier"}})
	}
	c.memChain = newMemChain(tb, vChainID, g)
	return c
}

// block executes txs in the next block; it returns the block's events
// (at its start and end) and the results of txs.
func (c *vChain) block(txs ...[]byte) ([]ledger.Event, []ledger.Result) {
	out := c.execute(txs...)
	return out.Events, out.Results
}

// skip runs n empty blocks and returns their start events.
func (c *vChain) skip(n uint64) []ledger.Event {
	var events []ledger.Event
	for range n {
		ev, _ := c.block()
		events = append(events, ev...)
	}
	return events
}

func (c *vChain) account(k keys.PrivateKey) ledger.Account {
	c.tb.Helper()
	a, _, err := c.view().Account(k.Public().Address())
	if err != nil {
		c.tb.Fatal(err)
	}
	return a
}

// serve settles one real receipt: prov served the consumer through the
// gateway and was paid. It returns the settled receipt as it appears in
// the settle-batch (public on the chain).
func (c *vChain) serve(prov keys.PrivateKey) ledger.BatchReceipt {
	c.tb.Helper()
	c.nextID++
	id := fmt.Sprintf("chatcmpl-%d", c.nextID)
	r := receipt.Receipt{
		Version: receipt.Version, ChainID: vChainID, RequestID: id,
		Gateway: c.gw.Public(), Provider: prov.Public(), Consumer: c.consumer.Public().Address(),
		Model: "llama3.2:1b", ModelDigest: vDigest, PromptTokens: 20, CompletionTokens: 50,
		PricePromptPerMTok: 1_000_000, PriceCompletionPerMTok: 3_000_000,
		RequestHash: receipt.Sum([]byte("request " + id)), ResponseHash: receipt.Sum([]byte("response " + id)),
		StartUnixMs: 1_717_171_717_000, EndUnixMs: 1_717_171_719_500,
	}
	var err error
	if r.Amount, err = receipt.ComputeAmount(r.PromptTokens, r.CompletionTokens, r.PricePromptPerMTok, r.PriceCompletionPerMTok); err != nil {
		c.tb.Fatal(err)
	}
	s := receipt.Signed{Receipt: r, ProviderSignature: receipt.SignProvider(prov, &r), GatewaySignature: receipt.SignGateway(c.gw, &r)}
	br := ledger.NewBatchReceipt(&s)
	rs := []ledger.BatchReceipt{br}
	_, res := c.block(c.tx(c.gw, ledger.Tx{Kind: ledger.KindSettleBatch, Receipts: rs, Root: ledger.BatchRoot(rs)}))
	if res[0].Code != ledger.CodeOK || vAttr(res[0].Events[0], "accepted") != "1" {
		c.tb.Fatalf("settle: %d %s %+v", res[0].Code, res[0].Log, res[0].Events)
	}
	return br
}

const vDigest = "sha256:baf6a787fdffd633537aa2eb51cfd54cb93ff08e28040095462bb63daf552878"

func vAttr(e ledger.Event, key string) string {
	for _, a := range e.Attrs {
		if a.Key == key {
			return a.Value
		}
	}
	return ""
}

func vHas(events []ledger.Event, typ string) bool {
	for _, e := range events {
		if e.Type == typ {
			return true
		}
	}
	return false
}
