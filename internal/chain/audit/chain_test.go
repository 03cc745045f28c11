package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/chain"
	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// This file runs the audited chain: one validator on loopback with the
// ledger application, and the accounts its tests move money between.

// testNode is the single validator of a test chain.
type testNode struct {
	t    *testing.T
	home string
	node *chain.Node
	app  *chain.App
}

// startSingle initialises a one-validator home and starts its node; it is
// stopped when the test ends.
func startSingle(t *testing.T, appState json.RawMessage) *testNode {
	t.Helper()
	home := filepath.Join(t.TempDir(), "single")
	if err := chain.InitSingle(home, "idlegrid-test", appState); err != nil {
		t.Fatal(err)
	}
	app, err := chain.OpenApp(filepath.Join(home, "data"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t, 30*time.Second)
	n, err := chain.StartNode(ctx, chain.NodeConfig{Home: home, App: app})
	if err != nil {
		app.Close()
		t.Fatal(err)
	}
	tn := &testNode{t: t, home: home, node: n, app: app}
	t.Cleanup(tn.stop)
	return tn
}

// stop stops the node and closes its application; a stopped node is left alone.
func (tn *testNode) stop() {
	if tn.node == nil {
		return
	}
	if err := errors.Join(tn.node.Stop(), tn.app.Close()); err != nil {
		tn.t.Errorf("stop: %v", err)
	}
	tn.node, tn.app = nil, nil
}

// client is the node's in-process client.
func (tn *testNode) client() chainrpc.Client { return tn.node.Client() }

// waitSettled waits until the node's height stays put for a few polls
// (CometBFT makes one more block after a state change) and returns it.
func waitSettled(t *testing.T, tn *testNode, timeout time.Duration) int64 {
	t.Helper()
	ctx := testContext(t, timeout)
	const stablePolls = 3
	var prev int64
	var last error
	stable := 0
	for {
		st, err := tn.client().Status(ctx)
		switch {
		case err != nil:
			last, stable = err, 0
		case st.Height == prev:
			stable++
		default:
			prev, stable = st.Height, 1
		}
		if stable == stablePolls {
			return prev
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the node did not settle on one height within %v; at %d, last error %v", timeout, prev, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// parties are the test chain's accounts.
type parties struct {
	consumer, poor, gateway, provider, verifier keys.PrivateKey
}

func seedKey(t *testing.T, b byte) keys.PrivateKey {
	t.Helper()
	k, err := keys.FromSeed(bytes.Repeat([]byte{b}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testParties(t *testing.T) parties {
	return parties{consumer: seedKey(t, 1), poor: seedKey(t, 2), gateway: seedKey(t, 3), provider: seedKey(t, 4), verifier: seedKey(t, 5)}
}

const (
	consumerFunds   = 1_000 * money.Unit
	poorFunds       = 1 * money.Unit
	gatewayStake    = 5_000 * money.Unit
	providerStake   = 200 * money.Unit
	pricePrompt     = 2 * money.Unit // per million tokens
	priceCompletion = 6 * money.Unit
)

func (p parties) genesis(t *testing.T, edit ...func(*ledger.Params)) json.RawMessage {
	t.Helper()
	params := ledger.DefaultParams()
	params.EscrowBlocks = 1000 // escrow stays put during the test
	for _, f := range edit {
		f(&params)
	}
	g := ledger.Genesis{Params: params, Accounts: []ledger.GenesisAccount{
		// The consumer locks half its funds in a deposit for the gateway;
		// the poor one locks nothing.
		{Address: p.consumer.Public().Address(), PubKey: p.consumer.Public(), Balance: 2 * consumerFunds,
			Approvals: []ledger.GenesisApproval{{Gateway: p.gateway.Public().Address(), Deposit: consumerFunds}}},
		{Address: p.poor.Public().Address(), PubKey: p.poor.Public(), Balance: poorFunds},
		{Address: p.gateway.Public().Address(), PubKey: p.gateway.Public(), Balance: 10 * money.Unit, Stake: gatewayStake, Roles: []string{"gateway"}},
		{Address: p.provider.Public().Address(), PubKey: p.provider.Public(), Stake: providerStake, Roles: []string{"provider"}},
		{Address: p.verifier.Public().Address(), PubKey: p.verifier.Public(), Stake: providerStake, Roles: []string{"verifier"}},
	}}
	b, err := json.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// receipt is a signed receipt of consumer, served by the provider and
// countersigned by the gateway.
func (p parties) receipt(consumer keys.Address, id string, prompt, completion uint64) receipt.Signed {
	amt, err := receipt.ComputeAmount(prompt, completion, pricePrompt, priceCompletion)
	if err != nil {
		panic(err)
	}
	r := receipt.Receipt{Version: receipt.Version, ChainID: "idlegrid-test", RequestID: id,
		Gateway: p.gateway.Public(), Provider: p.provider.Public(), Consumer: consumer,
		Model: "tiny", ModelDigest: "sha256:abc", PromptTokens: prompt, CompletionTokens: completion,
		PricePromptPerMTok: pricePrompt, PriceCompletionPerMTok: priceCompletion, Amount: amt,
		StartUnixMs: 1_700_000_000_000, EndUnixMs: 1_700_000_001_000}
	return receipt.Signed{Receipt: r, ProviderSignature: receipt.SignProvider(p.provider, &r), GatewaySignature: receipt.SignGateway(p.gateway, &r)}
}
