package chain

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dbm "github.com/cometbft/cometbft-db"
	abci "github.com/cometbft/cometbft/abci/types"

	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/chain/chaintest"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// newLedgerApp is the appFactory of the real application.
func newLedgerApp(home string) (abci.Application, error) {
	return OpenApp(filepath.Join(home, "data"), nil)
}

func balanceOf(t *testing.T, ctx context.Context, l chainrpc.StateReader, a keys.Address) chainrpc.AccountInfo {
	t.Helper()
	info, err := l.Account(ctx, a)
	if err != nil {
		t.Fatalf("account %s: %v", a, err)
	}
	return info
}

// depositOf is what consumer has locked for the parties' gateway.
func depositOf(t *testing.T, ctx context.Context, l chainrpc.StateReader, p chaintest.Parties, consumer keys.Address) money.Amount {
	t.Helper()
	d, err := l.Deposit(ctx, consumer, p.Gateway.Public().Address())
	if err != nil {
		t.Fatalf("deposit of %s: %v", consumer, err)
	}
	return d.Locked
}

func escrowTotal(a chainrpc.AccountInfo) money.Amount {
	var s money.Amount
	for _, e := range a.Escrow {
		s += e.Amount
	}
	return s
}

// TestLedgerOnCometBFT settles receipt batches through a real node: exact
// balances, the gateway's stake paying for a consumer that cannot, a batch
// sent again after a lost answer settling nothing twice, pipelined
// transactions from one key, and state that survives a restart.
func TestLedgerOnCometBFT(t *testing.T) {
	p := chaintest.NewParties(t)
	tn := startSingle(t, p.Genesis(t), newLedgerApp)
	ctx := testContext(t, 2*time.Minute)
	l := chainrpc.StateReader{Client: tn.client()}
	gw := chainrpc.NewSigner(tn.client(), p.Gateway, chaintest.ChainID)
	consumer := p.Consumer.Public().Address()

	var batch []receipt.Signed
	var total money.Amount
	for i := range 50 {
		r := p.Receipt(consumer, fmt.Sprintf("req-%03d", i), 1000+uint64(i), 500)
		total += r.Receipt.Amount
		batch = append(batch, r)
	}
	// The poor consumer cannot pay this one: the gateway's stake does.
	costly := p.Receipt(p.Poor.Public().Address(), "req-poor", 1_000_000, 1_000_000)
	batch = append(batch, costly)
	// A receipt signed for another chain is rejected on its own.
	foreign := p.Receipt(consumer, "req-foreign", 10, 10)
	foreign.Receipt.ChainID = "other-chain"
	foreign.ProviderSignature = receipt.SignProvider(p.Provider, &foreign.Receipt)
	foreign.GatewaySignature = receipt.SignGateway(p.Gateway, &foreign.Receipt)
	batch = append(batch, foreign)

	out, err := gw.SettleBatch(ctx, batch)
	if err != nil {
		t.Fatalf("SettleBatch: %v", err)
	}
	if len(out.Settled) != 51 || len(out.Rejected) != 1 || out.Rejected["req-foreign"] == "" {
		t.Fatalf("outcome: %d settled, rejected %v", len(out.Settled), out.Rejected)
	}
	charged := total + costly.Receipt.Amount
	params := ledger.DefaultParams()
	fee := func(a money.Amount, bps uint32) money.Amount { v, _ := a.MulDiv(uint64(bps), 10_000); return v }
	// Fees are rounded down per receipt: sum them the same way.
	var protocolFees, gatewayFees money.Amount
	for _, r := range batch[:51] {
		protocolFees += fee(r.Receipt.Amount, params.ProtocolFeeBps)
		gatewayFees += fee(r.Receipt.Amount, params.GatewayFeeBps)
	}
	if got := depositOf(t, ctx, l, p, consumer); got != chaintest.ConsumerFunds-total {
		t.Errorf("consumer deposit %d, want %d", got, chaintest.ConsumerFunds-total)
	}
	if got := balanceOf(t, ctx, l, consumer).Balance; got != chaintest.ConsumerFunds {
		t.Errorf("consumer balance %d, want untouched %d", got, chaintest.ConsumerFunds)
	}
	if got := balanceOf(t, ctx, l, p.Poor.Public().Address()).Balance; got != chaintest.PoorFunds {
		t.Errorf("poor consumer balance %d, want untouched %d", got, chaintest.PoorFunds)
	}
	g := balanceOf(t, ctx, l, p.Gateway.Public().Address())
	if g.Stake != chaintest.GatewayStake-costly.Receipt.Amount || g.Balance != chaintest.GatewayBalance+gatewayFees {
		t.Errorf("gateway stake %d balance %d, want %d and %d", g.Stake, g.Balance, chaintest.GatewayStake-costly.Receipt.Amount, chaintest.GatewayBalance+gatewayFees)
	}
	if got := escrowTotal(balanceOf(t, ctx, l, p.Provider.Public().Address())); got != charged-protocolFees-gatewayFees {
		t.Errorf("provider escrow %d, want %d", got, charged-protocolFees-gatewayFees)
	}
	if got := balanceOf(t, ctx, l, ledger.TreasuryAddress).Balance; got != protocolFees {
		t.Errorf("treasury %d, want %d", got, protocolFees)
	}
	st, err := l.Settlement(ctx, p.Gateway.Public().Address(), "req-poor")
	if err != nil || !st.PaidByGateway || st.Height != uint64(out.Height) {
		t.Errorf("settlement of req-poor: %+v, %v", st, err)
	}
	if _, err := l.Settlement(ctx, p.Gateway.Public().Address(), "req-foreign"); !errors.Is(err, chainrpc.ErrNotFound) {
		t.Errorf("rejected receipt: settlement lookup %v, want chainrpc.ErrNotFound", err)
	}
	// Settlements are kept per gateway: a bare request id is refused
	// with a message that names the form.
	var qe *chainrpc.QueryError
	if _, err := tn.client().Query(ctx, chainrpc.PathReceipt, []byte("req-poor")); !errors.As(err, &qe) || qe.Code != chainrpc.QueryCodeBadRequest || !strings.Contains(qe.Log, "GATEWAY/REQUEST_ID") {
		t.Errorf("bare request id: %v, want a bad request naming GATEWAY/REQUEST_ID", err)
	}

	// The gateway lost the answer and sends the same receipts again: they
	// count as settled at the first height, and nobody pays twice.
	again, err := gw.SettleBatch(ctx, batch[:51])
	if err != nil {
		t.Fatalf("SettleBatch again: %v", err)
	}
	if len(again.Settled) != 51 || len(again.Rejected) != 0 || again.Settled["req-000"] != out.Height {
		t.Fatalf("resent batch: settled %d (req-000 at %d, first at %d), rejected %v", len(again.Settled), again.Settled["req-000"], out.Height, again.Rejected)
	}
	if got := depositOf(t, ctx, l, p, consumer); got != chaintest.ConsumerFunds-total {
		t.Errorf("after resending, consumer deposit %d, want %d", got, chaintest.ConsumerFunds-total)
	}

	// Several transactions from one key in flight at once all commit, even
	// more than the mempool holds per sender (ledger.MaxPendingTxs): the
	// signer waits for a block to make room.
	const inFlight = ledger.MaxPendingTxs + 36
	cs := chainrpc.NewSigner(tn.client(), p.Consumer, chaintest.ChainID)
	var wg sync.WaitGroup
	errs := make(chan error, inFlight)
	for range inFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := cs.Send(ctx, ledger.Tx{Kind: ledger.KindTransfer, To: p.Poor.Public().Address(), Amount: money.Unit})
			if err == nil {
				err = res.Err()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("pipelined transfer: %v", err)
		}
	}
	if got := balanceOf(t, ctx, l, p.Poor.Public().Address()).Balance; got != chaintest.PoorFunds+inFlight*money.Unit {
		t.Errorf("poor balance after %d transfers: %d", inFlight, got)
	}
	// A failing transaction comes back as a result with its code.
	res, err := cs.Send(ctx, ledger.Tx{Kind: ledger.KindTransfer, To: p.Poor.Public().Address(), Amount: chaintest.ConsumerFunds})
	var te *chainrpc.TxError
	if err == nil && res.Err() == nil || err != nil && !errors.As(err, &te) {
		t.Errorf("overdraft: %+v, %v; want a failure", res, err)
	}

	// Restart: the node resumes from its height with the same state.
	before := waitHeight(t, tn, 1, 10*time.Second)
	h, hash := waitAgree(t, []*testNode{tn}, 20*time.Second)
	tn.stop()
	tn.start(ctx)
	after := waitHeight(t, tn, h, 30*time.Second)
	if after.Height != h || !bytes.Equal(after.AppHash, hash) {
		t.Errorf("after restart: height %d app hash %X; before %d %X (first seen %d)", after.Height, after.AppHash, h, hash, before.Height)
	}
	l = chainrpc.StateReader{Client: tn.client()}
	if got := balanceOf(t, ctx, l, consumer).Balance; got != chaintest.ConsumerFunds-inFlight*money.Unit {
		t.Errorf("after restart, consumer balance %d", got)
	}
	if got := depositOf(t, ctx, l, p, consumer); got != chaintest.ConsumerFunds-total {
		t.Errorf("after restart, consumer deposit %d", got)
	}
	sup, err := l.Supply(ctx)
	if err != nil || sup.Total != 2*chaintest.ConsumerFunds+chaintest.PoorFunds+chaintest.GatewayBalance+chaintest.GatewayStake+2*chaintest.ProviderStake { // the provider and the verifier stake the same
		t.Errorf("supply %+v, %v", sup, err)
	}
}

// TestLedgerNetwork runs the ledger on four validators: receipts settle
// through any node; with one validator down the others go on; a node whose
// data is wiped replays every block from genesis and arrives at the same app
// hash (CometBFT checks each block's app hash against the replay); with two
// down nothing commits and nothing is lost.
func TestLedgerNetwork(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a four-validator network")
	}
	p := chaintest.NewParties(t)
	nodes := startNetwork(t, 4, p.Genesis(t), newLedgerApp)
	ctx := testContext(t, 4*time.Minute)
	consumer := p.Consumer.Public().Address()
	n := 0
	settle := func(via *testNode, count int) money.Amount {
		t.Helper()
		var batch []receipt.Signed
		var sum money.Amount
		for range count {
			r := p.Receipt(consumer, fmt.Sprintf("net-%04d", n), 100, 100)
			n++
			sum += r.Receipt.Amount
			batch = append(batch, r)
		}
		sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		// Handed to every running validator, as a gateway does with its
		// --chain-rpc list: progress does not hang on one node's mempool
		// gossip or its notice that transactions are waiting.
		signer := chainrpc.NewSigner(via.client(), p.Gateway, chaintest.ChainID)
		for _, other := range nodes {
			if other != via && other.node != nil {
				signer.BroadcastAlso(other.client())
			}
		}
		out, err := signer.SettleBatch(sctx, batch)
		if err != nil || len(out.Settled) != count {
			t.Fatalf("settle via %s: %d settled, rejected %v, %v", via.name, len(out.Settled), out.Rejected, err)
		}
		return sum
	}
	balance := func(via *testNode) money.Amount {
		t.Helper()
		return depositOf(t, ctx, chainrpc.StateReader{Client: via.client()}, p, consumer)
	}
	var spent money.Amount
	for _, tn := range nodes {
		spent += settle(tn, 25)
	}
	waitAgree(t, nodes, 30*time.Second)

	down, err := chainrpc.NewHTTPClient(nodes[3].node.RPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	nodes[3].stop()
	spent += settle(nodes[1], 25)
	waitAgree(t, nodes, 30*time.Second)

	// A gateway whose first listed validator is down settles through the
	// next one (ReadFailover), over RPC as `idlegrid gateway --chain-rpc`.
	var rpcs []chainrpc.Client
	for _, tn := range nodes[:3] {
		c, err := chainrpc.NewHTTPClient(tn.node.RPCAddr())
		if err != nil {
			t.Fatal(err)
		}
		rpcs = append(rpcs, c)
	}
	var batch []receipt.Signed
	for range 10 {
		r := p.Receipt(consumer, fmt.Sprintf("net-%04d", n), 100, 100)
		n++
		spent += r.Receipt.Amount
		batch = append(batch, r)
	}
	fctx, fcancel := context.WithTimeout(ctx, 60*time.Second)
	out, err := chainrpc.NewSigner(chainrpc.ReadFailover(append([]chainrpc.Client{down}, rpcs...)...), p.Gateway, chaintest.ChainID).SettleBatch(fctx, batch)
	fcancel()
	if err != nil || len(out.Settled) != len(batch) {
		t.Fatalf("settle with the first validator down: %d settled, rejected %v, %v", len(out.Settled), out.Rejected, err)
	}
	waitAgree(t, nodes, 30*time.Second)

	// Node 3 loses all its data and comes back: it block-syncs from genesis.
	wipeData(t, nodes[3].home)
	nodes[3].start(ctx)
	spent += settle(nodes[0], 25)
	_, hash := waitAgree(t, nodes, 90*time.Second)
	for _, tn := range nodes {
		if got := balance(tn); got != chaintest.ConsumerFunds-spent {
			t.Fatalf("%s: consumer balance %d, want %d (app hash %X)", tn.name, got, chaintest.ConsumerFunds-spent, hash)
		}
	}

	// Two down: no quorum. The batch does not commit and is not lost.
	nodes[2].stop()
	nodes[3].stop()
	stuck := []receipt.Signed{p.Receipt(consumer, "stuck", 100, 100)}
	short, cancel := context.WithTimeout(ctx, 3*time.Second)
	_, err = chainrpc.NewSigner(nodes[0].client(), p.Gateway, chaintest.ChainID).SettleBatch(short, stuck)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("settle without quorum: %v, want a deadline error", err)
	}
	if got := balance(nodes[0]); got != chaintest.ConsumerFunds-spent {
		t.Fatalf("balance moved without quorum: %d", got)
	}
	nodes[2].start(ctx)
	out, err = chainrpc.NewSigner(nodes[1].client(), p.Gateway, chaintest.ChainID).SettleBatch(ctx, stuck)
	if err != nil || len(out.Settled) != 1 {
		t.Fatalf("settle after quorum returned: %+v, %v", out, err)
	}
	spent += stuck[0].Receipt.Amount
	waitAgree(t, nodes, 30*time.Second)
	for _, tn := range nodes[:3] {
		if got := balance(tn); got != chaintest.ConsumerFunds-spent {
			t.Errorf("%s: consumer balance %d, want %d", tn.name, got, chaintest.ConsumerFunds-spent)
		}
	}
}

// wipeData removes a stopped node's blocks and ledger state, keeping its
// keys, config and signing state (so it cannot sign twice at a height).
func wipeData(t *testing.T, home string) {
	t.Helper()
	data := filepath.Join(home, "data")
	entries, err := os.ReadDir(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == "priv_validator_state.json" {
			continue
		}
		if err := os.RemoveAll(filepath.Join(data, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOlderStateRefused: a node whose ledger state an older app version
// wrote stops at once with a clear error, instead of failing at the first
// block that reads a record in the old encoding.
func TestOlderStateRefused(t *testing.T) {
	db := dbm.NewMemDB()
	if err := db.Set(keyHeight, binary.BigEndian.AppendUint64(nil, 5)); err != nil {
		t.Fatal(err)
	}
	// Version 1 wrote no version record.
	_, err := NewApp(db, nil)
	if err == nil || !strings.Contains(err.Error(), "app version 1") || !strings.Contains(err.Error(), "remove the node's data") {
		t.Fatalf("state of app version 1 opened: %v", err)
	}
	if err := db.Set(keyAppVersion, binary.BigEndian.AppendUint64(nil, AppVersion)); err != nil {
		t.Fatal(err)
	}
	// This bare state has no genesis, so reopening it fails further on,
	// but not for its version.
	if _, err := NewApp(db, nil); err != nil && strings.Contains(err.Error(), "app version") {
		t.Fatalf("state written by this version refused: %v", err)
	}
}
