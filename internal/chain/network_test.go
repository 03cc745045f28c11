package chain

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cometbft/cometbft/types"

	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
)

// TestHomeConfig checks the settings every home gets, from both InitSingle
// and InitNetwork, by reading the files back the way StartNode does.
func TestHomeConfig(t *testing.T) {
	dir := t.TempDir()
	appState := json.RawMessage(`{"accounts":[]}`)
	single := filepath.Join(dir, "single")
	if err := InitSingle(single, "idlegrid-test", appState); err != nil {
		t.Fatal(err)
	}
	homes, err := InitNetwork(filepath.Join(dir, "net"), 3, "idlegrid-test", appState, NetworkOptions{BasePort: 31000})
	if err != nil {
		t.Fatal(err)
	}
	if len(homes) != 3 || filepath.Base(homes[2]) != "node2" {
		t.Fatalf("homes %v", homes)
	}
	for i, home := range append([]string{single}, homes...) {
		c, err := LoadConfig(home)
		if err != nil {
			t.Fatal(err)
		}
		p2p, rpc, peers := "tcp://127.0.0.1:0", "tcp://127.0.0.1:0", 0
		if i > 0 {
			p2p, rpc, peers = fmt.Sprintf("tcp://127.0.0.1:%d", 31000+2*(i-1)), fmt.Sprintf("tcp://127.0.0.1:%d", 31000+2*(i-1)+1), 2
		}
		checks := []struct {
			name      string
			got, want any
		}{
			{"p2p.laddr", c.P2P.ListenAddress, p2p},
			{"rpc.laddr", c.RPC.ListenAddress, rpc},
			{"persistent peers", len(strings.FieldsFunc(c.P2P.PersistentPeers, func(r rune) bool { return r == ',' })), peers},
			{"own address not a peer", strings.Contains(c.P2P.PersistentPeers, strings.TrimPrefix(p2p, "tcp://")), false},
			{"allow_duplicate_ip", c.P2P.AllowDuplicateIP, true},
			{"addr_book_strict", c.P2P.AddrBookStrict, false},
			{"create_empty_blocks", c.Consensus.CreateEmptyBlocks, false},
			{"create_empty_blocks_interval", c.Consensus.CreateEmptyBlocksInterval, 10 * time.Second},
			{"timeout_commit", c.Consensus.TimeoutCommit, time.Duration(0)},
			{"timeout_propose", c.Consensus.TimeoutPropose, time.Second},
			{"db_backend", c.DBBackend, "pebbledb"},
			{"max_tx_bytes", c.Mempool.MaxTxBytes, 8 << 20},
			{"max_txs_bytes", c.Mempool.MaxTxsBytes, int64(256 << 20)},
			{"rpc max_body_bytes", c.RPC.MaxBodyBytes >= 4*MaxTxBytes/3+1<<10, true},
			{"tx indexer", c.TxIndex.Indexer, "kv"},
		}
		for _, ck := range checks {
			if ck.got != ck.want {
				t.Errorf("%s: %s = %v, want %v", home, ck.name, ck.got, ck.want)
			}
		}
		doc, err := types.GenesisDocFromFile(c.GenesisFile())
		if err != nil {
			t.Fatal(err)
		}
		vals := 1
		if i > 0 {
			vals = 3
		}
		// The ledger genesis gained the validators' reward accounts, whose
		// keys sit in each home.
		g, err := ledger.ParseGenesis(doc.AppState)
		if err != nil {
			t.Fatal(err)
		}
		if len(g.Validators) != vals {
			t.Errorf("%s: ledger genesis names %d validators, want %d", home, len(g.Validators), vals)
		}
		for j, v := range g.Validators {
			if j < len(doc.Validators) && !bytes.Equal(v.ConsensusKey[:], doc.Validators[j].PubKey.Bytes()) {
				t.Errorf("%s: ledger validator %d has another consensus key than CometBFT's", home, j)
			}
		}
		own, err := keys.Load(RewardKeyFile(home))
		if err != nil || !slices.ContainsFunc(g.Validators, func(v ledger.Validator) bool { return v.Account == own.Public().Address() }) {
			t.Errorf("%s: reward key %v is not a validator account of the genesis", home, err)
		}
		g.Validators = nil
		bare, _ := json.Marshal(g)
		given, err := ledger.ParseGenesis(appState)
		if err != nil {
			t.Fatal(err)
		}
		wantState, _ := json.Marshal(given)
		if len(doc.Validators) != vals || doc.ConsensusParams.Block.MaxBytes < 32<<20 || !sameJSON(bare, wantState) || doc.ChainID != "idlegrid-test" {
			t.Errorf("%s: genesis %d validators, block max_bytes %d, app state %s", home, len(doc.Validators), doc.ConsensusParams.Block.MaxBytes, doc.AppState)
		}
		for _, v := range doc.Validators {
			if v.Power != doc.Validators[0].Power {
				t.Errorf("%s: unequal validator power %d vs %d", home, v.Power, doc.Validators[0].Power)
			}
		}
	}
	g0, _ := os.ReadFile(filepath.Join(homes[0], "config", "genesis.json"))
	g2, _ := os.ReadFile(filepath.Join(homes[2], "config", "genesis.json"))
	if len(g0) == 0 || !bytes.Equal(g0, g2) {
		t.Error("network homes do not share one genesis")
	}
}

// TestNetwork runs four validators in this process and takes them down and
// up: the chain goes on with three, stalls with two without losing the
// pending tx, and every node that runs agrees on the app hash.
func TestNetwork(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a four-validator network")
	}
	begin := time.Now()
	phase := func(name string) { t.Logf("%6.1fs %s", time.Since(begin).Seconds(), name) }
	nodes := startNetwork(t, 4, nil, newKVStore)
	ctx := testContext(t, 3*time.Minute)
	phase("four validators started")

	submit := func(tn *testNode, tx string) *chainrpc.TxResult {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		res, err := tn.client().Submit(sctx, []byte(tx))
		if err != nil || res.Code != 0 {
			t.Fatalf("submit %q via %s: %+v, %v", tx, tn.name, res, err)
		}
		return res
	}
	query := func(tn *testNode, key string) string {
		t.Helper()
		v, err := tn.client().Query(ctx, "/store", []byte(key))
		if err != nil {
			t.Fatalf("query %q on %s: %v", key, tn.name, err)
		}
		return string(v)
	}

	// Every node takes transactions, and all agree.
	for i, tn := range nodes {
		submit(tn, fmt.Sprintf("all%d=%d", i, i))
	}
	// A tx above CometBFT's default limits (1 MiB per tx and per RPC body),
	// like a receipt batch, goes through RPC, mempool gossip and a block. (It
	// is kept near 1 MiB: under -race moving it costs seconds.)
	remote, err := chainrpc.NewHTTPClient(nodes[0].node.RPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	const bigSize = 1<<20 + 1<<10
	big := "big=" + strings.Repeat("x", bigSize)
	if res, err := remote.Submit(ctx, []byte(big)); err != nil || res.Code != 0 {
		t.Fatalf("submit a %d-byte tx: %+v, %v", len(big), res, err)
	}
	h1, _ := waitAgree(t, nodes, 30*time.Second)
	if got := query(nodes[3], "big"); len(got) != bigSize {
		t.Fatalf("big value on node3 has %d bytes", len(got))
	}
	phase(fmt.Sprintf("all agree at height %d", h1))

	// One validator down: three of four still commit.
	nodes[3].stop()
	for i, tn := range nodes[:3] {
		submit(tn, fmt.Sprintf("three%d=%d", i, i))
	}
	h2, _ := waitAgree(t, nodes, 30*time.Second)
	phase(fmt.Sprintf("three agree at height %d", h2))
	if h2 <= h1 {
		t.Fatalf("height %d after txs with one validator down, was %d", h2, h1)
	}

	// It comes back, takes a tx once it has caught up (Submit retries while
	// it syncs), and agrees with the others.
	nodes[3].start(ctx)
	submit(nodes[3], "back=1")
	h3, _ := waitAgree(t, nodes, 60*time.Second)
	phase(fmt.Sprintf("restarted node caught up; all agree at height %d", h3))
	if got := query(nodes[3], "three0"); got != "0" {
		t.Fatalf("restarted node: three0 = %q after catching up to %d", got, h3)
	}

	// Two of four down: no quorum, so the tx cannot commit, but it is not lost.
	nodes[2].stop()
	nodes[3].stop()
	// A block the four had already agreed on may still reach the two
	// left: the height they agree on once the others are gone is the
	// last one with quorum.
	h3, _ = waitAgree(t, nodes[:2], 10*time.Second)
	stuck := []byte("stuck=1")
	short, cancel := context.WithTimeout(ctx, 3*time.Second)
	_, err = nodes[0].client().Submit(short, stuck)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("submit without quorum: %v, want a deadline error", err)
	}
	if h, _ := waitAgree(t, nodes, 10*time.Second); h != h3 {
		t.Fatalf("height moved from %d to %d without quorum", h3, h)
	}
	if got := query(nodes[0], "stuck"); got != "" {
		t.Fatalf("stuck = %q without quorum", got)
	}
	phase("two down: no commit")

	// One comes back: quorum again, and the pending tx commits without being
	// sent again.
	nodes[2].start(ctx)
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	res, err := nodes[1].client().WaitTx(wctx, types.Tx(stuck).Hash())
	cancel()
	if err != nil || res.Code != 0 || res.Height <= h3 {
		t.Fatalf("pending tx after quorum returned: %+v, %v", res, err)
	}
	phase(fmt.Sprintf("quorum back: pending tx committed at height %d", res.Height))
	again := submit(nodes[0], string(stuck))
	if again.Height != res.Height {
		t.Fatalf("resubmitted tx at height %d, first committed at %d", again.Height, res.Height)
	}
	waitAgree(t, nodes, 30*time.Second)
	if got := query(nodes[2], "stuck"); got != "1" {
		t.Fatalf("stuck = %q on the restarted node", got)
	}
}

// sameJSON compares JSON ignoring layout: genesis files store the app state
// re-indented.
func sameJSON(a, b []byte) bool {
	var ca, cb bytes.Buffer
	return json.Compact(&ca, a) == nil && json.Compact(&cb, b) == nil && bytes.Equal(ca.Bytes(), cb.Bytes())
}
