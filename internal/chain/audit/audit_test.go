package audit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cometbft/cometbft/types"

	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/chain/chaintest"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// tamperedBlocks serves one block with a transaction left out.
type tamperedBlocks struct {
	BlockSource
	height int64
}

func (t tamperedBlocks) Block(ctx context.Context, h int64) (*types.Block, error) {
	b, err := t.BlockSource.Block(ctx, h)
	if err != nil || h != t.height {
		return b, err
	}
	return &types.Block{Header: b.Header, Data: types.Data{Txs: b.Data.Txs[:len(b.Data.Txs)-1]}, Evidence: b.Evidence, LastCommit: b.LastCommit}, nil
}

// TestAudit replays a real chain over RPC and from its home: clean, it
// agrees at every height, epoch records and payouts included; with a block
// altered, or with a state value changed behind the node's back, it names
// the first disagreement. Payout proofs from the node verify against the
// epoch root.
func TestAudit(t *testing.T) {
	p := chaintest.NewParties(t)
	tn := startSingle(t, p.Genesis(t, func(p *ledger.Params) {
		p.EpochBlocks = 3
		p.VerdictDelayBlocks, p.ConvictFailures = 1, 1 // one failed case convicts, a block later
	}))
	ctx := testContext(t, 2*time.Minute)
	gw := chainrpc.NewSigner(tn.client(), p.Gateway, chaintest.ChainID)
	consumer := p.Consumer.Public().Address()
	var txHeight int64
	var batch []receipt.Signed
	for b := range 3 {
		batch = nil
		for i := range 20 {
			batch = append(batch, p.Receipt(consumer, fmt.Sprintf("audit-%d-%d", b, i), 100, 50))
		}
		out, err := gw.SettleBatch(ctx, batch)
		if err != nil || len(out.Settled) != 20 {
			t.Fatalf("settle: %+v %v", out, err)
		}
		txHeight = out.Height
	}
	cs := chainrpc.NewSigner(tn.client(), p.Consumer, chaintest.ChainID)
	if res, err := cs.Send(ctx, ledger.Tx{Kind: ledger.KindTransfer, To: p.Poor.Public().Address(), Amount: money.Unit}); err != nil || res.Err() != nil {
		t.Fatalf("transfer: %v %v", res, err)
	}
	// A verifier's failing verdict convicts the provider in the next block:
	// slashed and jailed, on the node and in the replay.
	vs := chainrpc.NewSigner(tn.client(), p.Verifier, chaintest.ChainID)
	judged := []ledger.BatchReceipt{ledger.NewBatchReceipt(&batch[0])}
	evidence := ledger.CaseEvidence(judged, false)
	if res, err := vs.Send(ctx, ledger.Tx{Kind: ledger.KindVerdict, Subject: p.Provider.Public().Address(), Digest: batch[0].Receipt.ModelDigest,
		Evidence: evidence, Pass: false, CaseReceipts: judged}); err != nil || res.Err() != nil {
		t.Fatalf("verdict: %v %v", res, err)
	}
	h := waitSettled(t, tn, 20*time.Second)
	l := chainrpc.StateReader{Client: tn.client()}
	if info, err := l.Provider(ctx, p.Provider.Public().Address()); err != nil || !info.Jailed || info.Convictions != 1 || info.Reputation != 500 {
		t.Fatalf("provider after a failed case: %+v %v", info, err)
	}
	if c, err := l.Case(ctx, evidence); err != nil || c.State != ledger.CaseFailed || !c.Matured {
		t.Fatalf("case: %+v %v", c, err)
	}

	rpc, err := chainrpc.NewBlockReader(tn.node.RPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(ctx, rpc, rpc)
	if err != nil || rep.Mismatch != nil {
		t.Fatalf("clean chain over RPC: %+v, %v", rep.Mismatch, err)
	}
	if rep.Heights < h || rep.Txs < 5 || rep.Accounts < 6 || rep.Epochs < 1 || rep.Supply.NodeRewards == 0 || rep.Supply.Burned == 0 {
		t.Errorf("audit covered %d heights, %d txs, %d accounts, %d epochs (supply %+v); the chain is at %d", rep.Heights, rep.Txs, rep.Accounts, rep.Epochs, rep.Supply, h)
	}
	// Epoch 1 (heights 1-3) saw settled work: the provider and the
	// validator were paid, and the node's proofs check out against the
	// root the audit recomputed.
	rec, err := l.Epoch(ctx, 1)
	if err != nil || rec.Providers == 0 || rec.Validators == 0 || rec.Root == (receipt.Hash{}) {
		t.Fatalf("epoch 1: %+v %v", rec, err)
	}
	if _, err := l.Epoch(ctx, uint64(rep.Epochs)+1); !errors.Is(err, chainrpc.ErrNotFound) {
		t.Errorf("epoch %d not ended yet: %v", rep.Epochs+1, err)
	}
	pr, err := l.PayoutProof(ctx, 1, p.Provider.Public().Address())
	if err != nil {
		t.Fatal(err)
	}
	if err := pr.Verify(rec.Root); err != nil || pr.Payout.Amount != rec.Providers {
		t.Fatalf("provider's payout %+v: %v", pr.Payout, err)
	}
	pr.Payout.Amount--
	if err := pr.Verify(rec.Root); err == nil {
		t.Error("a proof for a smaller amount verifies")
	}
	if _, err := l.PayoutProof(ctx, 1, p.Poor.Public().Address()); !errors.Is(err, chainrpc.ErrNotFound) {
		t.Errorf("payout to an account that earned nothing: %v", err)
	}

	// A block that is not what the validators committed.
	rep, err = Run(ctx, tamperedBlocks{BlockSource: rpc, height: txHeight}, rpc)
	if err != nil || rep.Mismatch == nil || rep.Mismatch.Height != txHeight+1 {
		t.Fatalf("altered block %d: %+v, %v", txHeight, rep.Mismatch, err)
	}

	// From the stopped node's home: clean, then with a balance rewritten in
	// the node's state store.
	tn.stop()
	home, err := OpenHome(tn.home)
	if err != nil {
		t.Fatal(err)
	}
	rep, err = Run(ctx, home, home)
	if err != nil || rep.Mismatch != nil || rep.Heights < h || rep.Epochs < 1 {
		t.Fatalf("clean home: %+v (%d heights, %d epochs), %v", rep.Mismatch, rep.Heights, rep.Epochs, err)
	}
	// Epoch 1's record rewritten with epoch 2's: the same bytes a node
	// would hold for another epoch, under epoch 1's key.
	key1 := ledger.EpochRecordKey(1)
	rec1, err := home.app.DB().Get(key1)
	if err != nil || rec1 == nil {
		t.Fatalf("read epoch record: %v", err)
	}
	rec2, err := home.app.DB().Get(ledger.EpochRecordKey(2))
	if err != nil || rec2 == nil {
		t.Fatalf("read epoch 2 record: %v", err)
	}
	if err := home.app.DB().SetSync(key1, rec2); err != nil {
		t.Fatal(err)
	}
	rep, err = Run(ctx, home, home)
	if err != nil || rep.Mismatch == nil || !strings.Contains(rep.Mismatch.What, "epoch 1") {
		t.Fatalf("tampered epoch record: %+v, %v", rep.Mismatch, err)
	}
	if err := home.app.DB().SetSync(key1, rec1); err != nil {
		t.Fatal(err)
	}
	// The poor consumer's record written over the consumer's: a different
	// balance under the same key, as a corrupted or doctored store holds.
	other, err := home.app.DB().Get([]byte(ledger.AccountKeyPrefix + string(p.Poor.Public().Address())))
	if err != nil || other == nil {
		t.Fatalf("read account record: %v", err)
	}
	if err := home.app.DB().SetSync([]byte(ledger.AccountKeyPrefix+string(consumer)), other); err != nil {
		t.Fatal(err)
	}
	rep, err = Run(ctx, home, home)
	if err != nil || rep.Mismatch == nil || !strings.Contains(rep.Mismatch.What, string(consumer)) {
		t.Fatalf("tampered balance: %+v, %v", rep.Mismatch, err)
	}
	if err := home.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestAuditEpochWithoutPayouts: on a chain without emission every epoch
// pays nothing. The node answers its payouts with an empty list and the
// replay has none; the audit over RPC must call that agreement, not a
// mismatch.
func TestAuditEpochWithoutPayouts(t *testing.T) {
	p := chaintest.NewParties(t)
	tn := startSingle(t, p.Genesis(t, func(p *ledger.Params) {
		p.EpochBlocks = 2
		p.EpochEmission = 0
	}))
	ctx := testContext(t, time.Minute)
	cs := chainrpc.NewSigner(tn.client(), p.Consumer, chaintest.ChainID)
	for range 2 { // each transaction makes a block, and the next block commits its state
		if res, err := cs.Send(ctx, ledger.Tx{Kind: ledger.KindTransfer, To: p.Poor.Public().Address(), Amount: money.Unit}); err != nil || res.Err() != nil {
			t.Fatalf("transfer: %v %v", res, err)
		}
	}
	waitSettled(t, tn, 20*time.Second)
	l := chainrpc.StateReader{Client: tn.client()}
	if ps, err := l.Payouts(ctx, 1); err != nil || len(ps) != 0 {
		t.Fatalf("epoch 1 payouts: %v %v; want none", ps, err)
	}
	rpc, err := chainrpc.NewBlockReader(tn.node.RPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(ctx, rpc, rpc)
	if err != nil || rep.Mismatch != nil || rep.Epochs < 1 {
		t.Fatalf("audit of a chain whose epochs paid nothing: %d epochs, %v, %v", rep.Epochs, rep.Mismatch, err)
	}
}
