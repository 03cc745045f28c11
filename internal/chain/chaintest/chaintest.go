// Package chaintest holds the accounts, genesis and receipts that the tests
// of the ledger node (internal/chain) and of its audit (internal/chain/audit)
// move money with, instead of a copy in each. It imports only the base
// packages, never internal/chain, so that package's own tests can use it
// without an import cycle. Only tests import it.
package chaintest

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// ChainID is the chain the receipts of Parties.Receipt are signed for.
const ChainID = "idlegrid-test"

// What Parties.Genesis gives each account, and the prices of its receipts.
const (
	ConsumerFunds   = 1_000 * money.Unit
	PoorFunds       = 1 * money.Unit
	GatewayBalance  = 10 * money.Unit
	GatewayStake    = 5_000 * money.Unit
	ProviderStake   = 200 * money.Unit
	PricePrompt     = 2 * money.Unit // per million tokens
	PriceCompletion = 6 * money.Unit
)

// Parties are the test chain's accounts.
type Parties struct {
	Consumer, Poor, Gateway, Provider, Verifier keys.PrivateKey
}

// NewParties derives the accounts from fixed seeds, so every run and every
// node of a test network agrees on them.
func NewParties(t testing.TB) Parties {
	t.Helper()
	return Parties{Consumer: seedKey(t, 1), Poor: seedKey(t, 2), Gateway: seedKey(t, 3), Provider: seedKey(t, 4), Verifier: seedKey(t, 5)}
}

func seedKey(t testing.TB, b byte) keys.PrivateKey {
	t.Helper()
	k, err := keys.FromSeed(bytes.Repeat([]byte{b}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Genesis is the app state of a chain with the parties' accounts, on the
// default parameters as edit changes them.
func (p Parties) Genesis(t testing.TB, edit ...func(*ledger.Params)) json.RawMessage {
	t.Helper()
	params := ledger.DefaultParams()
	params.EscrowBlocks = 1000 // escrow stays put during the test
	for _, f := range edit {
		f(&params)
	}
	g := ledger.Genesis{Params: params, Accounts: []ledger.GenesisAccount{
		// The consumer locks half its funds in a deposit for the gateway;
		// the poor one locks nothing.
		{Address: p.Consumer.Public().Address(), PubKey: p.Consumer.Public(), Balance: 2 * ConsumerFunds,
			Approvals: []ledger.GenesisApproval{{Gateway: p.Gateway.Public().Address(), Deposit: ConsumerFunds}}},
		{Address: p.Poor.Public().Address(), PubKey: p.Poor.Public(), Balance: PoorFunds},
		{Address: p.Gateway.Public().Address(), PubKey: p.Gateway.Public(), Balance: GatewayBalance, Stake: GatewayStake, Roles: []string{"gateway"}},
		{Address: p.Provider.Public().Address(), PubKey: p.Provider.Public(), Stake: ProviderStake, Roles: []string{"provider"}},
		{Address: p.Verifier.Public().Address(), PubKey: p.Verifier.Public(), Stake: ProviderStake, Roles: []string{"verifier"}},
	}}
	b, err := json.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Receipt is a signed receipt of consumer, served by the provider and
// countersigned by the gateway.
func (p Parties) Receipt(consumer keys.Address, id string, prompt, completion uint64) receipt.Signed {
	amt, err := receipt.ComputeAmount(prompt, completion, PricePrompt, PriceCompletion)
	if err != nil {
		panic(err)
	}
	r := receipt.Receipt{Version: receipt.Version, ChainID: ChainID, RequestID: id,
		Gateway: p.Gateway.Public(), Provider: p.Provider.Public(), Consumer: consumer,
		Model: "tiny", ModelDigest: "sha256:abc", PromptTokens: prompt, CompletionTokens: completion,
		PricePromptPerMTok: PricePrompt, PriceCompletionPerMTok: PriceCompletion, Amount: amt,
		StartUnixMs: 1_700_000_000_000, EndUnixMs: 1_700_000_001_000}
	return receipt.Signed{Receipt: r, ProviderSignature: receipt.SignProvider(p.Provider, &r), GatewaySignature: receipt.SignGateway(p.Gateway, &r)}
}
