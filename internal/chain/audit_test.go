package chain

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cometbft/cometbft/types"

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
// agrees at every height; with a block altered, or with a state value
// changed behind the node's back, it names the first disagreement.
func TestAudit(t *testing.T) {
	p := testParties(t)
	tn := startSingle(t, p.genesis(t), newLedgerApp)
	ctx := testContext(t, 2*time.Minute)
	gw := NewSigner(tn.client(), p.gateway, "idlegrid-test")
	consumer := p.consumer.Public().Address()
	var txHeight int64
	for b := range 3 {
		var batch []receipt.Signed
		for i := range 20 {
			batch = append(batch, p.receipt(consumer, fmt.Sprintf("audit-%d-%d", b, i), 100, 50))
		}
		out, err := gw.SettleBatch(ctx, batch)
		if err != nil || len(out.Settled) != 20 {
			t.Fatalf("settle: %+v %v", out, err)
		}
		txHeight = out.Height
	}
	cs := NewSigner(tn.client(), p.consumer, "idlegrid-test")
	if res, err := cs.Send(ctx, ledger.Tx{Kind: ledger.KindTransfer, To: p.poor.Public().Address(), Amount: money.Unit}); err != nil || res.Err() != nil {
		t.Fatalf("transfer: %v %v", res, err)
	}
	h, _ := waitAgree(t, []*testNode{tn}, 20*time.Second)

	rpc, err := NewRPCAudit(tn.node.RPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Audit(ctx, rpc, rpc)
	if err != nil || rep.Mismatch != nil {
		t.Fatalf("clean chain over RPC: %+v, %v", rep.Mismatch, err)
	}
	if rep.Heights < h || rep.Txs < 4 || rep.Accounts < 5 {
		t.Errorf("audit covered %d heights, %d txs, %d accounts; the chain is at %d", rep.Heights, rep.Txs, rep.Accounts, h)
	}

	// A block that is not what the validators committed.
	rep, err = Audit(ctx, tamperedBlocks{BlockSource: rpc, height: txHeight}, rpc)
	if err != nil || rep.Mismatch == nil || rep.Mismatch.Height != txHeight+1 {
		t.Fatalf("altered block %d: %+v, %v", txHeight, rep.Mismatch, err)
	}

	// From the stopped node's home: clean, then with a balance rewritten in
	// the node's state store.
	tn.stop()
	home, err := OpenHomeAudit(tn.home)
	if err != nil {
		t.Fatal(err)
	}
	rep, err = Audit(ctx, home, home)
	if err != nil || rep.Mismatch != nil || rep.Heights < h {
		t.Fatalf("clean home: %+v (%d heights), %v", rep.Mismatch, rep.Heights, err)
	}
	// The poor consumer's record written over the consumer's: a different
	// balance under the same key, as a corrupted or doctored store holds.
	other, err := home.app.db.Get([]byte(ledger.AccountKeyPrefix + string(p.poor.Public().Address())))
	if err != nil || other == nil {
		t.Fatalf("read account record: %v", err)
	}
	if err := home.app.db.SetSync([]byte(ledger.AccountKeyPrefix+string(consumer)), other); err != nil {
		t.Fatal(err)
	}
	rep, err = Audit(ctx, home, home)
	if err != nil || rep.Mismatch == nil || !strings.Contains(rep.Mismatch.What, string(consumer)) {
		t.Fatalf("tampered balance: %+v, %v", rep.Mismatch, err)
	}
	if err := home.Close(); err != nil {
		t.Fatal(err)
	}
}
