package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/gateway"
	"github.com/idlegrid/idlegrid/internal/gateway/api/apitypes"
	"github.com/idlegrid/idlegrid/internal/gateway/client"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/tstest"
)

// getAccount reads GET /v1/account with key through the typed client.
func getAccount(t *testing.T, tn *testNet, key string) apitypes.Account {
	t.Helper()
	a, err := client.New(tn.URL, key).Account(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestReceiptsSettleOnTheLedger serves requests through `up` and follows the
// money: every receipt is settled in batches on the in-process validator,
// the consumer's deposit for the gateway drops by exactly the receipts'
// amounts (its balance not at all), the provider's escrow and the fees add
// up to them, and /v1/account agrees.
func TestReceiptsSettleOnTheLedger(t *testing.T) {
	tn := startNet(t, netOptions{gateway: gateway.Config{SettleInterval: 100 * time.Millisecond, SettleBatchSize: 7}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l := chainrpc.StateReader{Client: tn.Validator.Node.Client()}
	before, err := l.Account(ctx, tn.Account)
	if err != nil {
		t.Fatal(err)
	}
	gw := tn.Gateway.Key.Public().Address()
	depBefore, err := l.Deposit(ctx, tn.Account, gw)
	if err != nil {
		t.Fatal(err)
	}
	c := openaiClient(tn)
	var ids []string
	for i := range 20 {
		resp, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model:     "sim",
			Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage(fmt.Sprintf("request %d: %s", i, strings.Repeat("idle ", 40)))},
			MaxTokens: openai.Int(30),
		})
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		ids = append(ids, resp.ID)
	}
	tstest.WaitFor(t, 30*time.Second, "every receipt settled", func() bool {
		a := getAccount(t, tn, testAPIKey)
		return a.Receipts.Settled == 20 && a.Receipts.Pending == 0
	})
	var spent, providerShare money.Amount
	params := ledger.DefaultParams()
	for _, id := range ids {
		r, err := tn.Gateway.Store.Receipt(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		st, err := l.Settlement(ctx, r.Receipt.Gateway.Address(), id)
		if err != nil || st.Receipt != r.Receipt.Hash() || st.Amount != r.Receipt.Amount {
			t.Fatalf("settlement of %s: %+v, %v", id, st, err)
		}
		amt := r.Receipt.Amount
		pf, _ := amt.MulDiv(uint64(params.ProtocolFeeBps), 10_000)
		gf, _ := amt.MulDiv(uint64(params.GatewayFeeBps), 10_000)
		spent += amt
		providerShare += amt - pf - gf
	}
	if spent == 0 {
		t.Fatal("the receipts charged nothing: the test proves nothing")
	}
	after, err := l.Account(ctx, tn.Account)
	if err != nil {
		t.Fatal(err)
	}
	if after.Balance != before.Balance {
		t.Errorf("consumer balance %d → %d, want it untouched (receipts are paid from the deposit)", before.Balance, after.Balance)
	}
	depAfter, err := l.Deposit(ctx, tn.Account, gw)
	if err != nil {
		t.Fatal(err)
	}
	if depAfter.Locked != depBefore.Locked-spent {
		t.Errorf("consumer deposit %d → %d, want a drop of exactly %d", depBefore.Locked, depAfter.Locked, spent)
	}
	prov, err := l.Account(ctx, tn.Provider.Key.Address())
	if err != nil {
		t.Fatal(err)
	}
	var escrow money.Amount
	for _, e := range prov.Escrow {
		escrow += e.Amount
	}
	if escrow+prov.Balance != providerShare {
		t.Errorf("provider escrow %d + balance %d, want %d", escrow, prov.Balance, providerShare)
	}
	a := getAccount(t, tn, testAPIKey)
	if !a.Ledger || a.Balance == nil || *a.Balance != after.Balance || a.Spendable == nil || *a.Spendable != depAfter.Locked || a.Settled != spent || a.Reserved != 0 || a.Pending != 0 {
		t.Errorf("/v1/account = %+v; want balance %d, spendable %d, settled %d, nothing reserved or pending", a, after.Balance, depAfter.Locked, spent)
	}
}

// TestInsufficientFunds: a consumer whose funds do not cover a request's
// worst case gets 402 with the reason, in each API's error shape, and is
// not served.
func TestInsufficientFunds(t *testing.T) {
	tn := startNet(t, netOptions{})
	ctx := context.Background()
	poor, err := keys.Generate()
	if err != nil {
		t.Fatal(err)
	}
	secret, _, err := tn.Gateway.Store.CreateAPIKey(ctx, "poor", poor.Public().Address())
	if err != nil {
		t.Fatal(err)
	}
	served := tn.Sim.Stats().Requests
	status, body := post(t, tn.URL+"/v1/chat/completions", secret, `{"model":"sim","messages":[{"role":"user","content":"hi"}],"max_tokens":10}`)
	if oe := decodeError(t, body); status != http.StatusPaymentRequired || oe.Code != "insufficient_funds" ||
		!strings.Contains(oe.Message, string(poor.Public().Address())) {
		t.Errorf("OpenAI API, no funds: %d %s", status, body)
	}
	status, body = post(t, tn.URL+"/api/chat", secret, `{"model":"sim","messages":[{"role":"user","content":"hi"}],"stream":false}`)
	var ole struct{ Error string }
	if status != http.StatusPaymentRequired || json.Unmarshal(body, &ole) != nil || !strings.Contains(ole.Error, "Insufficient funds") {
		t.Errorf("Ollama API, no funds: %d %s", status, body)
	}
	// The funded dev account asking for more than it could ever pay.
	status, body = post(t, tn.URL+"/v1/completions", testAPIKey, `{"model":"sim","prompt":"hi","max_tokens":4000000000000}`)
	if status != http.StatusPaymentRequired && status != http.StatusBadRequest {
		t.Errorf("dev account, absurd max_tokens: %d %s", status, body)
	}
	if got := tn.Sim.Stats().Requests; got != served {
		t.Errorf("the simulator served %d requests for consumers who cannot pay", got-served)
	}
	if a := getAccount(t, tn, secret); a.Reserved != 0 || a.Balance == nil || *a.Balance != 0 {
		t.Errorf("poor account after refusals: %+v", a)
	}
}
