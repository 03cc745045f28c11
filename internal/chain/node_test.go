package chain

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"
	dbm "github.com/cometbft/cometbft-db"
	"github.com/cometbft/cometbft/abci/example/kvstore"
	abci "github.com/cometbft/cometbft/abci/types"
	rpchttp "github.com/cometbft/cometbft/rpc/client/http"
	ctypes "github.com/cometbft/cometbft/rpc/core/types"
	"github.com/cometbft/cometbft/types"
	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
)

// newKVStore is the appFactory for CometBFT's example key-value store, with
// its database in the node's data directory so that it survives restarts.
// Its txs are "key=value"; anything else fails CheckTx.
func newKVStore(home string) (abci.Application, error) {
	kv, err := openKVStore(home)
	if err != nil {
		return nil, err
	}
	return &serialApp{app: kv}, nil
}

func openKVStore(home string) (*kvstore.Application, error) {
	quiet := pebbleLogger{l: slog.New(slog.DiscardHandler)}
	db, err := dbm.NewPebbleDBWithOpts("kvstore", filepath.Join(home, "data"), &pebble.Options{Logger: quiet})
	if err != nil {
		return nil, err
	}
	return kvstore.NewApplication(db), nil
}

// failingQueries is a kvstore whose queries under /fail return code 7, to
// test the client's error mapping.
type failingQueries struct{ *kvstore.Application }

func (a failingQueries) Query(ctx context.Context, req *abci.QueryRequest) (*abci.QueryResponse, error) {
	if strings.HasPrefix(req.Path, "/fail") {
		return &abci.QueryResponse{Code: 7, Codespace: "test", Log: "no such thing"}, nil
	}
	return a.Application.Query(ctx, req)
}

func newFailingQueries(home string) (abci.Application, error) {
	kv, err := openKVStore(home)
	if err != nil {
		return nil, err
	}
	return &serialApp{app: failingQueries{kv}}, nil
}

// serialApp calls an application that is not safe for concurrent use, like
// the example kvstore, one call at a time: StartNode calls its connections
// concurrently.
type serialApp struct {
	mu  sync.Mutex
	app interface {
		abci.Application
		Close() error
	}
}

var _ abci.Application = (*serialApp)(nil)

func (s *serialApp) Close() error { s.mu.Lock(); defer s.mu.Unlock(); return s.app.Close() }
func (s *serialApp) Info(ctx context.Context, r *abci.InfoRequest) (*abci.InfoResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.app.Info(ctx, r)
}
func (s *serialApp) Query(ctx context.Context, r *abci.QueryRequest) (*abci.QueryResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.app.Query(ctx, r)
}
func (s *serialApp) CheckTx(ctx context.Context, r *abci.CheckTxRequest) (*abci.CheckTxResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.app.CheckTx(ctx, r)
}
func (s *serialApp) InitChain(ctx context.Context, r *abci.InitChainRequest) (*abci.InitChainResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.app.InitChain(ctx, r)
}
func (s *serialApp) PrepareProposal(ctx context.Context, r *abci.PrepareProposalRequest) (*abci.PrepareProposalResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.app.PrepareProposal(ctx, r)
}
func (s *serialApp) ProcessProposal(ctx context.Context, r *abci.ProcessProposalRequest) (*abci.ProcessProposalResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.app.ProcessProposal(ctx, r)
}
func (s *serialApp) FinalizeBlock(ctx context.Context, r *abci.FinalizeBlockRequest) (*abci.FinalizeBlockResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.app.FinalizeBlock(ctx, r)
}
func (s *serialApp) ExtendVote(ctx context.Context, r *abci.ExtendVoteRequest) (*abci.ExtendVoteResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.app.ExtendVote(ctx, r)
}
func (s *serialApp) VerifyVoteExtension(ctx context.Context, r *abci.VerifyVoteExtensionRequest) (*abci.VerifyVoteExtensionResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.app.VerifyVoteExtension(ctx, r)
}
func (s *serialApp) Commit(ctx context.Context, r *abci.CommitRequest) (*abci.CommitResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.app.Commit(ctx, r)
}
func (s *serialApp) ListSnapshots(ctx context.Context, r *abci.ListSnapshotsRequest) (*abci.ListSnapshotsResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.app.ListSnapshots(ctx, r)
}
func (s *serialApp) OfferSnapshot(ctx context.Context, r *abci.OfferSnapshotRequest) (*abci.OfferSnapshotResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.app.OfferSnapshot(ctx, r)
}
func (s *serialApp) LoadSnapshotChunk(ctx context.Context, r *abci.LoadSnapshotChunkRequest) (*abci.LoadSnapshotChunkResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.app.LoadSnapshotChunk(ctx, r)
}
func (s *serialApp) ApplySnapshotChunk(ctx context.Context, r *abci.ApplySnapshotChunkRequest) (*abci.ApplySnapshotChunkResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.app.ApplySnapshotChunk(ctx, r)
}

func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestInitSingleIsIdempotent(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	if err := InitSingle(home, "idlegrid-test", []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, home)
	if len(before) < 5 {
		t.Fatalf("home holds only %v", before)
	}
	if err := InitSingle(home, "other-chain", []byte(`{"b":2}`)); err != nil {
		t.Fatal(err)
	}
	after := snapshot(t, home)
	if len(after) != len(before) {
		t.Fatalf("second init changed the file set:\nbefore %v\nafter  %v", fileNames(before), fileNames(after))
	}
	for path, b := range before {
		if !bytes.Equal(after[path], b) {
			t.Errorf("second init changed %s", path)
		}
	}
}

func TestInitRejects(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		run  func() error
		want string
	}{
		{"bad app state", func() error { return InitSingle(filepath.Join(dir, "a"), "c", []byte("{")) }, "not valid JSON"},
		{"no chain id", func() error { return InitSingle(filepath.Join(dir, "b"), "", nil) }, "chain id"},
		{"no validators", func() error {
			_, err := InitNetwork(filepath.Join(dir, "c"), 0, "c", nil, NetworkOptions{})
			return err
		}, "at least one"},
		{"existing network", func() error {
			if _, err := InitNetwork(filepath.Join(dir, "d"), 1, "c", nil, NetworkOptions{}); err != nil {
				return err
			}
			_, err := InitNetwork(filepath.Join(dir, "d"), 1, "c", nil, NetworkOptions{})
			return err
		}, "already exists"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestStartNodeNeedsConfig(t *testing.T) {
	home := t.TempDir()
	_, err := StartNode(testContext(t, 10*time.Second), NodeConfig{Home: home, App: kvstore.NewInMemoryApplication()})
	if err == nil || !strings.Contains(err.Error(), filepath.Join(home, "config", "config.toml")) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("got %v, want a missing-file error naming config.toml", err)
	}
}

// TestSingleNode submits and queries through both clients, then restarts the
// node from its home and finds the chain and the state where it left them.
func TestSingleNode(t *testing.T) {
	tn := startSingle(t, nil, newKVStore)
	ctx := testContext(t, 60*time.Second)
	inproc := tn.client()
	remote, err := chainrpc.NewHTTPClient(tn.node.RPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tn.node.RPCAddr(), "http://127.0.0.1:") || strings.HasSuffix(tn.node.RPCAddr(), ":0") {
		t.Fatalf("RPCAddr %q", tn.node.RPCAddr())
	}
	clients := []struct {
		name string
		c    chainrpc.Client
		tx   string
	}{
		{"in-process", inproc, "alpha=1"},
		{"http", remote, "beta=2"},
	}
	var top int64
	for _, cl := range clients {
		res, err := cl.c.Submit(ctx, []byte(cl.tx))
		if err != nil {
			t.Fatalf("%s submit: %v", cl.name, err)
		}
		if res.Code != 0 || res.Height == 0 || !bytes.Equal(res.Hash, types.Tx(cl.tx).Hash()) || res.Err() != nil {
			t.Fatalf("%s submit result %+v", cl.name, res)
		}
		top = max(top, res.Height)
	}
	for _, cl := range clients {
		for _, kv := range []string{"alpha=1", "beta=2"} {
			k, v, _ := strings.Cut(kv, "=")
			got, err := cl.c.Query(ctx, "/store", []byte(k))
			if err != nil || string(got) != v {
				t.Fatalf("%s query %s = %q, %v; want %q", cl.name, k, got, err, v)
			}
		}
	}
	// Submitting a committed tx again returns its result instead of failing.
	res, err := remote.Submit(ctx, []byte("alpha=1"))
	if err != nil || res.Height == 0 {
		t.Fatalf("resubmit: %+v, %v", res, err)
	}

	// Wait for the block after the last tx (CometBFT makes one to carry the
	// new app hash) so that the restart has nothing left to do.
	waitHeight(t, tn, top, 10*time.Second)
	h, hash := waitAgree(t, []*testNode{tn}, 10*time.Second)
	before := chainrpc.Status{Height: h, AppHash: hash}
	if err := tn.node.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := tn.node.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	// The stopped node's in-process client fails at once, even in a wait.
	if _, err := inproc.Status(ctx); !errors.Is(err, chainrpc.ErrNodeStopped) {
		t.Fatalf("status of a stopped node: %v", err)
	}
	if _, err := inproc.WaitTx(ctx, types.Tx("never=sent").Hash()); !errors.Is(err, chainrpc.ErrNodeStopped) {
		t.Fatalf("wait on a stopped node: %v", err)
	}
	if _, err := inproc.Submit(ctx, []byte("late=1")); !errors.Is(err, chainrpc.ErrNodeStopped) {
		t.Fatalf("submit to a stopped node: %v", err)
	}
	tn.stop()
	tn.start(ctx)

	after := waitHeight(t, tn, before.Height, 10*time.Second)
	if after.Height != before.Height || !bytes.Equal(after.AppHash, before.AppHash) {
		t.Fatalf("after restart at %d %X, before at %d %X", after.Height, after.AppHash, before.Height, before.AppHash)
	}
	got, err := tn.client().Query(ctx, "/store", []byte("alpha"))
	if err != nil || string(got) != "1" {
		t.Fatalf("query after restart = %q, %v", got, err)
	}
	res, err = tn.client().Submit(ctx, []byte("gamma=3"))
	if err != nil || res.Height <= before.Height {
		t.Fatalf("submit after restart: %+v, %v (chain was at %d)", res, err, before.Height)
	}
}

// countedRPC counts the broadcasts a client sends through it, so that a
// test can tell how often Submit tried.
type countedRPC struct {
	chainrpc.NodeAPI
	broadcasts atomic.Int32
}

func (c *countedRPC) BroadcastTxSync(ctx context.Context, tx types.Tx) (*ctypes.ResultBroadcastTx, error) {
	c.broadcasts.Add(1)
	return c.NodeAPI.BroadcastTxSync(ctx, tx)
}

// countedLocal is an in-process client of tn whose broadcasts are counted.
func countedLocal(tn *testNode) (chainrpc.Client, *countedRPC) {
	api := &countedRPC{NodeAPI: tn.node.api}
	return chainrpc.NewLocalClient(api), api
}

// countedRemote is an HTTP client of the node at addr whose broadcasts are
// counted.
func countedRemote(t *testing.T, addr string) (chainrpc.Client, *countedRPC) {
	h, err := rpchttp.New(addr)
	if err != nil {
		t.Fatal(err)
	}
	api := &countedRPC{NodeAPI: h}
	return chainrpc.NewRemoteClient(api), api
}

// TestClientErrors checks how both clients map failures: a CheckTx rejection
// is a *chainrpc.TxError that Submit does not retry (one broadcast), a query code is
// a *chainrpc.QueryError, and an unreachable node is retried until the deadline
// (Submit returns because its context ended, having broadcast more than
// once). The nodes are real, so these are counts and states rather than
// elapsed times.
func TestClientErrors(t *testing.T) {
	tn := startSingle(t, nil, newFailingQueries)
	remote, err := chainrpc.NewHTTPClient(tn.node.RPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	clients := []struct {
		name    string
		c       chainrpc.Client
		counted func() (chainrpc.Client, *countedRPC)
	}{
		{"in-process", tn.client(), func() (chainrpc.Client, *countedRPC) { return countedLocal(tn) }},
		{"http", remote, func() (chainrpc.Client, *countedRPC) { return countedRemote(t, tn.node.RPCAddr()) }},
	}
	for _, cl := range clients {
		t.Run(cl.name, func(t *testing.T) {
			ctx := testContext(t, 30*time.Second)
			var te *chainrpc.TxError
			_, err := cl.c.Broadcast(ctx, []byte("no-separator"))
			if !errors.As(err, &te) || te.Code != kvstore.CodeTypeInvalidTxFormat || te.Height != 0 {
				t.Fatalf("broadcast of a malformed tx: %v", err)
			}
			c, api := cl.counted()
			_, err = c.Submit(ctx, []byte("no-separator"))
			if !errors.As(err, &te) || te.Code != kvstore.CodeTypeInvalidTxFormat {
				t.Fatalf("submit of a malformed tx: %v", err)
			}
			if n := api.broadcasts.Load(); n != 1 {
				t.Fatalf("submit of a malformed tx broadcast it %d times: it was retried", n)
			}

			var qe *chainrpc.QueryError
			_, err = cl.c.Query(ctx, "/fail/x", nil)
			if !errors.As(err, &qe) || qe.Code != 7 || qe.Log != "no such thing" || qe.Codespace != "test" {
				t.Fatalf("failing query: %v", err)
			}

			short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			defer cancel()
			_, err = cl.c.WaitTx(short, types.Tx("never=sent").Hash())
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("wait for an unknown tx: %v", err)
			}
		})
	}

	t.Run("unreachable", func(t *testing.T) {
		addr := tn.node.RPCAddr()
		tn.stop()
		c, api := countedRemote(t, addr)
		ctx := testContext(t, 30*time.Second)
		_, err = c.Broadcast(ctx, []byte("k=v"))
		if !errors.Is(err, chainrpc.ErrUnavailable) {
			t.Fatalf("broadcast to a stopped node: %v", err)
		}
		short, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		before := api.broadcasts.Load()
		_, err = c.Submit(short, []byte("k=v"))
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), chainrpc.ErrUnavailable.Error()) {
			t.Fatalf("submit to a stopped node: %v", err)
		}
		if short.Err() == nil {
			t.Fatalf("submit to a stopped node gave up before its deadline: %v", err)
		}
		if n := api.broadcasts.Load() - before; n < 2 {
			t.Fatalf("submit to a stopped node broadcast %d times until its deadline, want retries", n)
		}
	})
}

// snapshot reads every file under dir.
func snapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		files[path] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func fileNames(m map[string][]byte) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func TestResolveRPCAddr(t *testing.T) {
	tests := []struct {
		laddr   string
		want    string // "" with wantErr false: no URL; a trailing ":*" means any non-zero port
		wantErr bool
	}{
		{laddr: "", want: ""},
		{laddr: "tcp://127.0.0.1:26657", want: "http://127.0.0.1:26657"},
		{laddr: "tcp://0.0.0.0:26657", want: "http://127.0.0.1:26657"},
		{laddr: "tcp://127.0.0.1:0", want: "http://127.0.0.1:*"},
		{laddr: "tcp://127.0.0.1:2000, unix:///tmp/rpc.sock", want: "http://127.0.0.1:2000"},
		{laddr: "unix:///tmp/rpc.sock", want: "unix:///tmp/rpc.sock"},
		{laddr: "tcp://no-port", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.laddr, func(t *testing.T) {
			c := newConfig(t.TempDir(), "x", 0, 0, nil)
			c.RPC.ListenAddress = tt.laddr
			got, err := resolveRPCAddr(c)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, want error %v", err, tt.wantErr)
			}
			if prefix, ok := strings.CutSuffix(tt.want, "*"); ok {
				if !strings.HasPrefix(got, prefix) || strings.HasSuffix(got, ":0") || c.RPC.ListenAddress != "tcp://"+strings.TrimPrefix(got, "http://") {
					t.Fatalf("got %q, config now %q", got, c.RPC.ListenAddress)
				}
				return
			}
			if got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}
