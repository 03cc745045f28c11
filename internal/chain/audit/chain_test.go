package audit

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/chain"
	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/chain/chaintest"
)

// This file runs the audited chain: one validator on loopback with the
// ledger application. The accounts its tests move money between are
// chaintest's, shared with internal/chain's tests.

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
	if err := chain.InitSingle(home, chaintest.ChainID, appState); err != nil {
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
