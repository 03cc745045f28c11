package attack

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/idlegrid/idlegrid/internal/hub"
	"github.com/idlegrid/idlegrid/internal/store"
	"github.com/idlegrid/idlegrid/internal/web"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// settleChainID is the chain of the settlement attacks' ledger.
const settleChainID = "attack-settle"

// settleChain is the settlement attacks' ledger node in memory.
type settleChain struct{ *memChain }

func newSettleChain(tb testing.TB, g ledger.Genesis) *settleChain {
	return &settleChain{newMemChain(tb, settleChainID, g)}
}

// block executes txs as the next block and returns their results.
func (c *settleChain) block(txs ...[]byte) []ledger.Result { return c.execute(txs...).Results }

// settle sends one settle-batch from gateway gw and returns its result.
func (c *settleChain) settle(gw keys.PrivateKey, rs ...receipt.Signed) ledger.Result {
	c.tb.Helper()
	t := ledger.Tx{Kind: ledger.KindSettleBatch}
	for i := range rs {
		t.Receipts = append(t.Receipts, ledger.NewBatchReceipt(&rs[i]))
	}
	t.Root = ledger.BatchRoot(t.Receipts)
	return c.block(c.tx(gw, t))[0]
}

func (c *settleChain) account(a keys.Address) (ledger.Account, bool) {
	c.tb.Helper()
	acct, ok, err := ledger.View{R: c.state}.Account(a)
	if err != nil {
		c.tb.Fatal(err)
	}
	return acct, ok
}

// rejections are the reasons of a settle-batch's rejected receipts.
func rejections(res ledger.Result) []string {
	var out []string
	for _, e := range res.Events {
		if e.Type != "receipt_rejected" {
			continue
		}
		for _, a := range e.Attrs {
			if a.Key == "reason" {
				out = append(out, a.Value)
			}
		}
	}
	return out
}

// signedReceipt is a receipt that gateway gw countersigned and provider
// prov signed, for consumer, of the given tokens at 1 token per million
// prompt tokens and 3 per million completion tokens.
func signedReceipt(tb testing.TB, gw, prov keys.PrivateKey, consumer keys.Address, id string, prompt, completion uint64) receipt.Signed {
	tb.Helper()
	const pp, pc = money.Unit, 3 * money.Unit
	amount, err := receipt.ComputeAmount(prompt, completion, pp, pc)
	if err != nil {
		tb.Fatal(err)
	}
	r := receipt.Receipt{
		Version: receipt.Version, ChainID: settleChainID, RequestID: id,
		Gateway: gw.Public(), Provider: prov.Public(), Consumer: consumer,
		Model: "llama3.2:1b", ModelDigest: "sha256:baf6a787fdffd633537aa2eb51cfd54cb93ff08e28040095462bb63daf552878",
		PromptTokens: prompt, CompletionTokens: completion,
		PricePromptPerMTok: pp, PriceCompletionPerMTok: pc, Amount: amount,
		RequestHash: receipt.Sum([]byte("request " + id)), ResponseHash: receipt.Sum([]byte("response " + id)),
		StartUnixMs: 1_717_171_717_000, EndUnixMs: 1_717_171_719_500,
	}
	return receipt.Signed{Receipt: r, ProviderSignature: receipt.SignProvider(prov, &r), GatewaySignature: receipt.SignGateway(gw, &r)}
}

// squatWorld: an honest gateway and provider; a consumer ("mallory")
// who funded an account for the honest gateway and also registered her
// own account as gateway and provider, with the minimum stakes locked.
type squatWorld struct {
	*settleChain
	params                 ledger.Params
	gateway, provider, mal keys.PrivateKey
}

const squatFunds = 1_000 * money.Unit

func newSquatWorld(tb testing.TB) *squatWorld {
	w := &squatWorld{params: ledger.DefaultParams(),
		gateway: attackKey(tb, "honest gateway"), provider: attackKey(tb, "honest provider"), mal: attackKey(tb, "mallory")}
	w.params.EscrowBlocks = 0 // providers are paid at once: their balance shows it
	p := w.params
	g := ledger.Genesis{Params: p, Accounts: []ledger.GenesisAccount{
		{Address: w.gateway.Public().Address(), PubKey: w.gateway.Public(), Stake: p.MinGatewayStake, Roles: []string{"gateway"}},
		{Address: w.provider.Public().Address(), PubKey: w.provider.Public(), Stake: p.MinProviderStake, Roles: []string{"provider"}},
		{Address: w.mal.Public().Address(), PubKey: w.mal.Public(), Balance: squatFunds,
			Stake: p.MinGatewayStake + p.MinProviderStake, Roles: []string{"gateway", "provider"},
			Approvals: []ledger.GenesisApproval{{Gateway: w.gateway.Public().Address(), Deposit: squatFunds}}},
	}}
	w.settleChain = newSettleChain(tb, g)
	return w
}

// TestC2RequestIDSquatting: the attacker is a consumer whose account is
// also a registered gateway and provider. She learns her request's id at
// the first token (X-Request-Id, the chunk id) and settles, from her own
// gateway, a zero-amount receipt under that id before the honest gateway's
// batch, hoping the real receipt is refused as already settled (free
// inference, an unpaid provider). Property: settlements are keyed by
// gateway and request id, so a receipt can collide only with receipts of
// its own gateway — the honest receipt settles, the consumer pays it and
// the provider is paid; and a zero-amount receipt for an account that does
// not exist creates no state for it.
func TestC2RequestIDSquatting(t *testing.T) {
	w := newSquatWorld(t)
	mal := w.mal.Public().Address()
	const id = "chatcmpl-victim-0001"
	honest := signedReceipt(t, w.gateway, w.provider, mal, id, 2_000, 100_000)

	squat := signedReceipt(t, w.mal, w.mal, mal, id, 0, 0)
	if res := w.settle(w.mal, squat); res.Code != ledger.CodeOK || len(rejections(res)) != 0 {
		t.Fatalf("the attacker's own zero receipt: code %d %s %v", res.Code, res.Log, rejections(res))
	}
	before := w.holds(mal)
	res := w.settle(w.gateway, honest)
	if res.Code != ledger.CodeOK || len(rejections(res)) != 0 {
		t.Fatalf("honest receipt refused after the squat: code %d %s %v", res.Code, res.Log, rejections(res))
	}
	st, ok, err := ledger.View{R: w.state}.Settlement(w.gateway.Public().Address(), id)
	if err != nil || !ok || st.Receipt != honest.Receipt.Hash() || st.PaidByGateway {
		t.Fatalf("honest gateway's settlement of %s: %+v %v %v", id, st, ok, err)
	}
	prov, _ := w.account(w.provider.Public().Address())
	if prov.Balance == 0 {
		t.Error("the honest provider was not paid")
	}
	if spent := before - w.holds(mal); spent != honest.Receipt.Amount {
		t.Errorf("the attacker paid %d for a receipt of %d", spent, honest.Receipt.Amount)
	}
	gw, _ := w.account(w.gateway.Public().Address())
	if gw.Stake != w.params.MinGatewayStake {
		t.Errorf("the honest gateway's stake paid: %d left of %d", gw.Stake, w.params.MinGatewayStake)
	}

	// Anyone's squat on someone else's id, naming a consumer that does
	// not exist, leaves no account (nor anything else) for that consumer.
	ghost := attackKey(t, "ghost").Public().Address()
	if res := w.settle(w.mal, signedReceipt(t, w.mal, w.mal, ghost, "chatcmpl-ghost", 0, 0)); res.Code != ledger.CodeOK {
		t.Fatalf("zero receipt for a ghost: code %d %s", res.Code, res.Log)
	}
	if _, exists := w.account(ghost); exists {
		t.Error("a zero-amount receipt created the account of a consumer that did not exist")
	}
	for k := range w.state {
		if strings.Contains(k, string(ghost)) {
			t.Errorf("a zero-amount receipt left state under the ghost's address: %q", k)
		}
	}
}

// holds is what consumer owns at the honest gateway: its balance and its
// deposit there.
func (w *squatWorld) holds(consumer keys.Address) money.Amount {
	w.tb.Helper()
	a, _ := w.account(consumer)
	d, err := ledger.View{R: w.state}.Deposit(consumer, w.gateway.Public().Address())
	if err != nil {
		w.tb.Fatal(err)
	}
	return a.Balance + d.Total()
}

// TestC2OverviewHidesUnsettledIDs: the attacker is anyone who can load a
// gateway's public /ui/ overview, looking for request ids that are not
// settled yet (to squat them, or to learn who asked what). Property: the
// overview lists only settled receipts (their ids are public on the
// ledger) and merely counts the others; a consumer sees its own pending
// requests on the account page, behind its API key.
func TestC2OverviewHidesUnsettledIDs(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "gateway.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	gw, prov, consumer := attackKey(t, "ui gateway"), attackKey(t, "ui provider"), attackKey(t, "ui consumer").Public().Address()
	settled := signedReceipt(t, gw, prov, consumer, "chatcmpl-settled-0001", 10, 20)
	pending := signedReceipt(t, gw, prov, consumer, "chatcmpl-pending-0002", 10, 20)
	for _, r := range []receipt.Signed{settled, pending} {
		if err := st.SaveReceipt(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.MarkSettled(ctx, []string{settled.Receipt.RequestID}, 7); err != nil {
		t.Fatal(err)
	}
	ui, err := web.New(web.Config{Hub: hub.New(hub.Config{}), Receipts: st, Gateway: gw.Public().Address()})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	ui.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, web.Prefix, nil))
	body := rec.Body.String()
	if rec.Code != http.StatusOK || !strings.Contains(body, settled.Receipt.RequestID) {
		t.Fatalf("overview: status %d, settled id shown %v", rec.Code, strings.Contains(body, settled.Receipt.RequestID))
	}
	if strings.Contains(body, pending.Receipt.RequestID) {
		t.Errorf("the public overview shows the unsettled request id %s", pending.Receipt.RequestID)
	}
}
