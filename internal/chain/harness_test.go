package chain

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	abci "github.com/cometbft/cometbft/abci/types"

	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/chain/chaintest"
)

// This file is the test harness for real CometBFT nodes on loopback, generic
// over the ABCI application so that the ledger application's tests can run
// the same scenarios as the kvstore ones.

// appFactory builds the ABCI application for a node home. The application
// keeps its state under home so that a restarted node finds it again; the
// harness closes it after the node stops when it is an io.Closer.
type appFactory func(home string) (abci.Application, error)

// testNode is one node of a test chain that the test can stop and restart.
type testNode struct {
	t      testing.TB
	name   string
	home   string
	newApp appFactory
	log    *slog.Logger

	node *Node
	app  abci.Application
}

// start starts the node from its home with a fresh application.
func (tn *testNode) start(ctx context.Context) {
	tn.t.Helper()
	if tn.node != nil {
		tn.t.Fatalf("%s: already running", tn.name)
	}
	app, err := tn.newApp(tn.home)
	if err != nil {
		tn.t.Fatalf("%s: application: %v", tn.name, err)
	}
	n, err := StartNode(ctx, NodeConfig{Home: tn.home, App: app, Logger: tn.log})
	if err != nil {
		closeApp(app)
		tn.t.Fatalf("%s: %v", tn.name, err)
	}
	tn.node, tn.app = n, app
}

// stop stops the node and closes its application; a stopped node is left alone.
func (tn *testNode) stop() {
	tn.t.Helper()
	if tn.node == nil {
		return
	}
	err := tn.node.Stop()
	if cerr := closeApp(tn.app); err == nil {
		err = cerr
	}
	tn.node, tn.app = nil, nil
	if err != nil {
		tn.t.Errorf("%s: stop: %v", tn.name, err)
	}
}

func (tn *testNode) running() bool { return tn.node != nil }

// client is the node's in-process client.
func (tn *testNode) client() chainrpc.Client {
	tn.t.Helper()
	if tn.node == nil {
		tn.t.Fatalf("%s: not running", tn.name)
	}
	return tn.node.Client()
}

func closeApp(app abci.Application) error {
	if c, ok := app.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// startSingle initialises a one-validator home and starts its node.
func startSingle(t *testing.T, appState json.RawMessage, newApp appFactory) *testNode {
	t.Helper()
	home := filepath.Join(t.TempDir(), "single")
	if err := InitSingle(home, chaintest.ChainID, appState); err != nil {
		t.Fatal(err)
	}
	tn := &testNode{t: t, name: "single", home: home, newApp: newApp, log: testLogger(t, "single")}
	t.Cleanup(tn.stop)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tn.start(ctx)
	return tn
}

// startNetwork initialises an n-validator network in a temporary directory
// and starts every node in this process, each with its own application. The
// nodes are stopped when the test ends.
func startNetwork(t *testing.T, n int, appState json.RawMessage, newApp appFactory) []*testNode {
	t.Helper()
	homes, err := InitNetwork(filepath.Join(t.TempDir(), "net"), n, chaintest.ChainID, appState, NetworkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nodes := make([]*testNode, n)
	for i, home := range homes {
		name := "node" + strconv.Itoa(i)
		nodes[i] = &testNode{t: t, name: name, home: home, newApp: newApp, log: testLogger(t, name)}
		t.Cleanup(nodes[i].stop)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, tn := range nodes {
		tn.start(ctx)
	}
	waitConnected(t, nodes, 60*time.Second)
	return nodes
}

// waitConnected waits until every node is connected to all the others. A
// transaction sent to a node that has not connected yet cannot reach the
// proposer; on a busy machine the first dials can take a while.
func waitConnected(t *testing.T, nodes []*testNode, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		counts := make([]int, len(nodes))
		all := true
		for i, tn := range nodes {
			counts[i] = tn.node.node.Switch().Peers().Size()
			all = all && counts[i] >= len(nodes)-1
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("validators not connected after %v: peers per node %v", timeout, counts)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitAgree waits until every running node reports the same height, and
// keeps reporting it for a few polls (CometBFT makes one more block after a
// state change), then returns that height and app hash. Nodes at one height
// with different app hashes have diverged: that fails at once.
func waitAgree(t *testing.T, nodes []*testNode, timeout time.Duration) (int64, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	const stablePolls = 3
	var last string
	var prev int64
	stable := 0
	for {
		sts, err := statuses(ctx, nodes)
		switch {
		case err != nil:
			last, stable = err.Error(), 0
		case !sameHeight(sts):
			last, stable = fmt.Sprint(heights(sts)), 0
		default:
			for i, st := range sts[1:] {
				if !bytes.Equal(st.AppHash, sts[0].AppHash) {
					t.Fatalf("nodes diverged at height %d: app hash %X vs %X (running node %d)", st.Height, sts[0].AppHash, st.AppHash, i+1)
				}
			}
			if sts[0].Height == prev {
				stable++
			} else {
				prev, stable = sts[0].Height, 1
			}
			if stable == stablePolls {
				return sts[0].Height, sts[0].AppHash
			}
			last = fmt.Sprintf("all at %d", prev)
		}
		if sleep(ctx, 100*time.Millisecond) != nil {
			t.Fatalf("nodes did not settle on one height within %v; last: %s", timeout, last)
		}
	}
}

func sameHeight(sts []chainrpc.Status) bool {
	for _, st := range sts[1:] {
		if st.Height != sts[0].Height {
			return false
		}
	}
	return len(sts) > 0
}

// waitHeight waits until the running node reaches at least height h.
func waitHeight(t *testing.T, tn *testNode, h int64, timeout time.Duration) chainrpc.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last chainrpc.Status
	for {
		st, err := tn.client().Status(ctx)
		if err == nil && st.Height >= h && !st.CatchingUp {
			return st
		}
		last = st
		if sleep(ctx, 50*time.Millisecond) != nil {
			t.Fatalf("%s did not reach height %d within %v: at %d (catching up %v), err %v", tn.name, h, timeout, last.Height, last.CatchingUp, err)
		}
	}
}

func statuses(ctx context.Context, nodes []*testNode) ([]chainrpc.Status, error) {
	var sts []chainrpc.Status
	for _, tn := range nodes {
		if !tn.running() {
			continue
		}
		st, err := tn.node.Client().Status(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", tn.name, err)
		}
		sts = append(sts, st)
	}
	return sts, nil
}

func heights(sts []chainrpc.Status) []int64 {
	hs := make([]int64, len(sts))
	for i, st := range sts {
		hs[i] = st.Height
	}
	return hs
}

// testLogger collects a node's warnings and errors and prints them only if
// the test fails: CometBFT logs errors for every peer that goes away, which
// the scenarios do on purpose. It writes to a buffer, never to t.Log, so a
// CometBFT goroutine that logs after the test ended cannot panic. With
// CHAIN_TEST_LOG_DIR set, each node also writes its full debug log to a
// file there, for chasing a stall.
func testLogger(t *testing.T, name string) *slog.Logger {
	b := &lockedBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s logs (warnings and errors):\n%s", name, b.tail(16<<10))
		}
	})
	var h slog.Handler = slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelWarn})
	if dir := os.Getenv("CHAIN_TEST_LOG_DIR"); dir != "" {
		f, err := os.Create(filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+"-"+name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		h = teeHandler{h, quietP2P{h: slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug})}}
	}
	return slog.New(h).With("node", name)
}

// quietP2P drops the p2p module's debug records, which dump every packet.
type quietP2P struct {
	h   slog.Handler
	p2p bool
}

func (q quietP2P) Enabled(ctx context.Context, l slog.Level) bool {
	return q.h.Enabled(ctx, l) && (!q.p2p || l > slog.LevelDebug)
}

func (q quietP2P) Handle(ctx context.Context, r slog.Record) error { return q.h.Handle(ctx, r) }

func (q quietP2P) WithAttrs(as []slog.Attr) slog.Handler {
	p2p := q.p2p
	for _, a := range as {
		if a.Key == "module" && a.Value.String() == "p2p" {
			p2p = true
		}
	}
	return quietP2P{h: q.h.WithAttrs(as), p2p: p2p}
}

func (q quietP2P) WithGroup(g string) slog.Handler { return quietP2P{h: q.h.WithGroup(g), p2p: q.p2p} }

// teeHandler sends records to both handlers.
type teeHandler struct{ a, b slog.Handler }

func (t teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return t.a.Enabled(ctx, l) || t.b.Enabled(ctx, l)
}

func (t teeHandler) Handle(ctx context.Context, r slog.Record) error {
	for _, h := range []slog.Handler{t.a, t.b} {
		if h.Enabled(ctx, r.Level) {
			if err := h.Handle(ctx, r.Clone()); err != nil {
				return err
			}
		}
	}
	return nil
}

func (t teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return teeHandler{t.a.WithAttrs(as), t.b.WithAttrs(as)}
}

func (t teeHandler) WithGroup(g string) slog.Handler {
	return teeHandler{t.a.WithGroup(g), t.b.WithGroup(g)}
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// tail returns the last n bytes written.
func (b *lockedBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.Bytes()
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return string(s)
}

// sleep waits d or until ctx ends, whichever is first.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
