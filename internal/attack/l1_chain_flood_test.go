package attack

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	dbm "github.com/cometbft/cometbft-db"
	abci "github.com/cometbft/cometbft/abci/types"

	"github.com/idlegrid/idlegrid/internal/chain"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

const l1ChainID = "idlegrid-attack-l1"

// The bounds the chain promises (ledger.MaxPendingTxs, MaxPendingBytes and
// DefaultParams().ExistentialDeposit), spelled out so that this file also
// compiles against a ledger without them.
const (
	l1MaxPending      = 64
	l1MaxPendingBytes = 32 << 20
	l1Existential     = money.Unit / 100
)

func l1Key(tb testing.TB, name string) keys.PrivateKey { return attackKey(tb, "l1/"+name) }

// l1App is the chain's ABCI application on an in-memory database, its
// genesis written: one funded account (the flooder) and one staked gateway.
func l1App(tb testing.TB, flooder, gateway keys.PrivateKey) *chain.App {
	tb.Helper()
	app, err := chain.NewApp(dbm.NewMemDB(), nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { app.Close() })
	p := ledger.DefaultParams()
	g := ledger.Genesis{Params: p, Accounts: []ledger.GenesisAccount{
		{Address: flooder.Public().Address(), PubKey: flooder.Public(), Balance: 1_000_000 * money.Unit},
		{Address: gateway.Public().Address(), PubKey: gateway.Public(), Stake: p.MinGatewayStake, Roles: []string{"gateway"}},
	}}
	state, err := json.Marshal(g)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := app.InitChain(context.Background(), &abci.InitChainRequest{ChainId: l1ChainID, InitialHeight: 1, AppStateBytes: state}); err != nil {
		tb.Fatal(err)
	}
	return app
}

func l1Tx(k keys.PrivateKey, t ledger.Tx) []byte {
	t.ChainID = l1ChainID
	t.Sign(k)
	return t.Bytes()
}

func l1Check(tb testing.TB, app *chain.App, tx []byte) *abci.CheckTxResponse {
	tb.Helper()
	res, err := app.CheckTx(context.Background(), &abci.CheckTxRequest{Tx: tx, Type: abci.CHECK_TX_TYPE_CHECK})
	if err != nil {
		tb.Fatal(err)
	}
	return res
}

// TestL1OneAccountCannotFloodTheMempool: the attacker, one funded account,
// sends a thousand transfers with consecutive nonces (the chain charges no
// fee per transaction) to fill the mempool and every block after it.
// Property: CheckTx admits at most 64 transactions per sender until a block
// commits them, refusing the rest with a log that says why; once a block
// commits them, the sender may send again.
func TestL1OneAccountCannotFloodTheMempool(t *testing.T) {
	flooder, gw := l1Key(t, "flooder"), l1Key(t, "gateway")
	app := l1App(t, flooder, gw)
	to := gw.Public().Address()
	var admitted [][]byte
	var refused *abci.CheckTxResponse
	for n := range uint64(1_000) {
		tx := l1Tx(flooder, ledger.Tx{Kind: ledger.KindTransfer, Nonce: n, To: to, Amount: 1})
		res := l1Check(t, app, tx)
		if res.Code != 0 {
			refused = res
			break
		}
		admitted = append(admitted, tx)
	}
	if len(admitted) > l1MaxPending || refused == nil {
		t.Fatalf("CheckTx admitted %d transactions of one sender waiting for a block, want at most %d", len(admitted), l1MaxPending)
	}
	t.Logf("admitted %d, then: code %d %s", len(admitted), refused.Code, refused.Log)
	// The block commits them: the sender's next transaction is admitted.
	fin, err := app.FinalizeBlock(context.Background(), &abci.FinalizeBlockRequest{Height: 1, Txs: admitted})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range fin.TxResults {
		if r.Code != 0 {
			t.Fatalf("tx %d of the block: code %d %s", i, r.Code, r.Log)
		}
	}
	if _, err := app.Commit(context.Background(), &abci.CommitRequest{}); err != nil {
		t.Fatal(err)
	}
	next := l1Tx(flooder, ledger.Tx{Kind: ledger.KindTransfer, Nonce: uint64(len(admitted)), To: to, Amount: 1})
	if res := l1Check(t, app, next); res.Code != 0 {
		t.Fatalf("after the block: code %d %s", res.Code, res.Log)
	}
}

// TestL1OneGatewayCannotFloodTheMempoolWithBytes: the attacker, a staked
// gateway, sends large settle-batches (about 1.5 MiB each; receipts are
// only verified in the block) with consecutive nonces. Property: CheckTx
// admits at most 32 MiB of one sender's transactions until a block.
func TestL1OneGatewayCannotFloodTheMempoolWithBytes(t *testing.T) {
	flooder, gw := l1Key(t, "flooder"), l1Key(t, "gateway")
	app := l1App(t, flooder, gw)
	prov := l1Key(t, "provider")
	r := receipt.Receipt{Version: receipt.Version, ChainID: l1ChainID, RequestID: "flood", Gateway: gw.Public(), Provider: prov.Public(),
		Consumer: flooder.Public().Address(), Model: "tiny", CompletionTokens: 1, PriceCompletionPerMTok: 1, StartUnixMs: 1, EndUnixMs: 2}
	s := receipt.Signed{Receipt: r, ProviderSignature: receipt.SignProvider(prov, &r), GatewaySignature: receipt.SignGateway(gw, &r)}
	one := ledger.NewBatchReceipt(&s)
	rs := make([]ledger.BatchReceipt, 4_000)
	for i := range rs {
		rs[i] = one
	}
	root := ledger.BatchRoot(rs)
	var bytes, admitted int
	var refused *abci.CheckTxResponse
	for n := range uint64(l1MaxPending) {
		tx := l1Tx(gw, ledger.Tx{Kind: ledger.KindSettleBatch, Nonce: n, Receipts: rs, Root: root})
		res := l1Check(t, app, tx)
		if res.Code != 0 {
			refused = res
			break
		}
		bytes += len(tx)
		admitted++
	}
	if bytes > l1MaxPendingBytes || refused == nil {
		t.Fatalf("CheckTx admitted %d settle-batches, %d bytes, of one sender waiting for a block; want at most %d bytes", admitted, bytes, l1MaxPendingBytes)
	}
	t.Logf("admitted %d batches (%d bytes), then: code %d %s", admitted, bytes, refused.Code, refused.Log)
}

// TestL1NewAccountsCostTheExistentialDeposit: the attacker grows state
// forever by sending one base unit to ever new addresses. Property: a
// transfer that creates an account must carry the existential deposit
// (0.01 token by default), in CheckTx and in the block alike, so each
// account of state costs its creator that much.
func TestL1NewAccountsCostTheExistentialDeposit(t *testing.T) {
	flooder, gw := l1Key(t, "flooder"), l1Key(t, "gateway")
	app := l1App(t, flooder, gw)
	var txs [][]byte
	for n := range uint64(10) {
		fresh := l1Key(t, fmt.Sprint("fresh-", n)).Public().Address()
		tx := l1Tx(flooder, ledger.Tx{Kind: ledger.KindTransfer, Nonce: n, To: fresh, Amount: 1})
		if res := l1Check(t, app, tx); res.Code == 0 {
			t.Errorf("CheckTx admitted a transfer of 1 base unit creating account %s", fresh)
		} else if n == 0 {
			t.Logf("refused: code %d %s", res.Code, res.Log)
		}
		txs = append(txs, tx)
	}
	// A proposer that includes them anyway: the block refuses each.
	fin, err := app.FinalizeBlock(context.Background(), &abci.FinalizeBlockRequest{Height: 1, Txs: txs[:1]})
	if err != nil {
		t.Fatal(err)
	}
	if fin.TxResults[0].Code == 0 {
		t.Error("the block executed a transfer of 1 base unit creating an account")
	}
	// The deposit itself creates the account.
	if _, err := app.Commit(context.Background(), &abci.CommitRequest{}); err != nil {
		t.Fatal(err)
	}
	fresh := l1Key(t, "fresh-paid").Public().Address()
	if res := l1Check(t, app, l1Tx(flooder, ledger.Tx{Kind: ledger.KindTransfer, Nonce: 1, To: fresh, Amount: l1Existential})); res.Code != 0 {
		t.Fatalf("transfer of the existential deposit: code %d %s", res.Code, res.Log)
	}
}
