package attack

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/link"
	"github.com/idlegrid/idlegrid/internal/node"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/tstest"
)

// admitAPIKey is the dev API key of the networks these tests start.
const admitAPIKey = "ig-attack-0123456789abcdefghijklmnop"

// admitNet is an `up` network on loopback (validator, gateway, the local
// provider) whose simulator the test configures, plus the accounts that
// EditGenesis added.
type admitNet struct {
	*node.Network
	URL string
}

// startAdmitNet starts an `up` network with the simulator sc behind an
// Ollama-compatible server; genesis edits the chain before it starts.
func startAdmitNet(t *testing.T, sc sim.Config, genesis func(*ledger.Genesis)) *admitNet {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b := admitBackend(t, sc)
	n, err := node.StartUp(ctx, node.UpConfig{
		Addr: "127.0.0.1:0", DataDir: t.TempDir(), Backend: node.BackendOllama, OllamaURL: "unused", DevAPIKey: admitAPIKey,
		Slots: 8, Link: link.Options{Heartbeat: 500 * time.Millisecond}, BackendOverride: b, EditGenesis: genesis,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.Shutdown(ctx)
	})
	return &admitNet{Network: n, URL: n.Gateway.URL()}
}

// admitBackend serves the simulator sc over Ollama's HTTP API.
func admitBackend(t *testing.T, sc sim.Config) *node.LocalBackend {
	t.Helper()
	s, err := sim.New(sc)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.NewServer(s))
	t.Cleanup(srv.Close)
	b, err := node.OpenBackend(context.Background(), node.BackendOllama, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// instantSim answers without delays.
func instantSim() sim.Config {
	sc := sim.DefaultConfig()
	for i := range sc.Models {
		sc.Models[i].FirstToken, sc.Models[i].TokensPerSecond = 0, 0
	}
	return sc
}

// complete sends a non-streamed completion and returns the request id of
// the answer (the receipt's), or the HTTP status when it failed.
func complete(t *testing.T, url string) (string, int) {
	t.Helper()
	body := `{"model":"sim","prompt":"hello there","max_tokens":4}`
	req, _ := http.NewRequest("POST", url+"/v1/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+admitAPIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.Header.Get("X-Request-Id"), resp.StatusCode
}

// servedBy is the provider of the stored receipt of request id.
func servedBy(t *testing.T, n *admitNet, id string) keys.PublicKey {
	t.Helper()
	s, err := n.Gateway.Store.Receipt(context.Background(), id)
	if err != nil {
		t.Fatalf("receipt %s: %v", id, err)
	}
	return s.Receipt.Provider
}

// TestH2FreshKeyRefusedAtHandshake — attacker: anyone with a fresh key
// and no stake. Attack: connect to a gateway as a provider advertising
// price 0 and a huge speed, to take its traffic, read prompts and answer
// anything with nothing at stake. Property: the gateway admits only
// providers registered and staked on the ledger; the handshake refuses
// the fresh key with close status protocol.StatusNotAdmitted and a reason
// naming `idlegrid provide init`, and no request reaches it.
func TestH2FreshKeyRefusedAtHandshake(t *testing.T) {
	n := startAdmitNet(t, instantSim(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	attacker, err := keys.Generate()
	if err != nil {
		t.Fatal(err)
	}
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(n.URL, "http")+protocol.Path, nil)
	if err != nil {
		t.Fatal(err)
	}
	l := link.New(ws, link.Options{})
	defer l.Close(errors.New("done"))
	m, err := l.ReadOne(ctx)
	if err != nil || m.Type != protocol.TypeHello {
		t.Fatalf("hello: %v %v", m, err)
	}
	h := m.Hello
	model := protocol.Model{Name: "sim:latest", Digest: admitSimDigest(t, n), TokensPerSecond: 1e9}
	err = l.WriteOne(ctx, &protocol.Message{Type: protocol.TypeAuth, Auth: &protocol.Auth{
		ProviderKey: attacker.Public(), Signature: attacker.Sign(protocol.AuthBytes(h.Nonce, h.GatewayKey, h.ChainID)),
		ProtocolVersion: protocol.Version, Capabilities: protocol.Capabilities{Slots: 64, Models: []protocol.Model{model}},
	}})
	if err != nil {
		t.Fatal(err)
	}

	// Whatever the gateway answers, the attacker takes every job it gets.
	jobs := make(chan string, 16)
	var once sync.Once
	readErr := make(chan error, 1)
	go func() {
		m, err := l.ReadOne(ctx)
		if err != nil {
			readErr <- err
			return
		}
		if m.Type != protocol.TypeWelcome {
			readErr <- errors.New("got " + string(m.Type))
			return
		}
		once.Do(func() { readErr <- nil })
		for {
			m, err := l.ReadOne(ctx)
			if err != nil {
				return
			}
			if m.Type == protocol.TypeJob {
				jobs <- m.Job.ID
			}
		}
	}()
	err = <-readErr
	if err == nil {
		// The old gateway welcomed the attacker: show what it gets.
		for range 5 {
			go func() {
				req, _ := http.NewRequest("POST", n.URL+"/v1/completions", strings.NewReader(`{"model":"sim","prompt":"secret","max_tokens":4}`))
				req.Header.Set("Authorization", "Bearer "+admitAPIKey)
				if resp, err := http.DefaultClient.Do(req); err == nil {
					resp.Body.Close()
				}
			}()
		}
		select {
		case id := <-jobs:
			t.Fatalf("a fresh, unstaked key was welcomed and received job %s (a consumer's prompt)", id)
		case <-time.After(5 * time.Second):
			t.Fatal("a fresh, unstaked key was welcomed at the handshake")
		}
	}
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != protocol.StatusNotAdmitted || !strings.Contains(ce.Reason, "idlegrid provide init") {
		t.Fatalf("refusal: want close %d naming `idlegrid provide init`, got %v", protocol.StatusNotAdmitted, err)
	}
	t.Logf("refused: %s", ce.Reason)
	for _, in := range n.Gateway.Hub.Snapshot() {
		if in.Key == attacker.Public() {
			t.Fatal("the refused key is in the hub")
		}
	}
	// Requests still go to the registered provider only.
	for range 3 {
		id, status := complete(t, n.URL)
		if status != http.StatusOK || servedBy(t, n, id) != n.Provider.Key {
			t.Fatalf("request after the refusal: status %d", status)
		}
	}
}

// admitSimDigest is the digest the network's provider offers for sim.
func admitSimDigest(t *testing.T, n *admitNet) string {
	t.Helper()
	for _, in := range n.Gateway.Hub.Snapshot() {
		for _, m := range in.Capabilities.Models {
			return m.Digest
		}
	}
	t.Fatal("no provider connected")
	return ""
}

// TestH2UnstakedProviderDroppedWithinABlock — attacker: a provider that
// was registered and staked and takes its stake out (or is jailed) while
// it keeps its connection and its traffic. Attack: serve with nothing at
// stake once the ledger no longer holds any. Property: the gateway
// re-reads the standing of its providers at every new block; the block
// that brings a provider's stake under min_provider_stake (as the block
// that jails it) disconnects it with a reason naming `idlegrid provide
// init`, and it gets no job after that; the agent retries no sooner than
// its RefusedRetry. (Jailing takes the same path: standing_test.go in
// internal/gateway.)
func TestH2UnstakedProviderDroppedWithinABlock(t *testing.T) {
	bKey, err := keys.Generate()
	if err != nil {
		t.Fatal(err)
	}
	min := ledger.DefaultParams().MinProviderStake
	n := startAdmitNet(t, instantSim(), func(g *ledger.Genesis) {
		g.Accounts = append(g.Accounts, ledger.GenesisAccount{Address: bKey.Public().Address(), PubKey: bKey.Public(),
			Balance: min, Stake: min, Roles: []string{"provider"}, Info: "provider B"})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	keyFile := filepath.Join(t.TempDir(), "b.key")
	if err := keys.Save(keyFile, bKey); err != nil {
		t.Fatal(err)
	}
	var refusedMu sync.Mutex
	var refusals []error
	b, err := node.StartProvider(node.ProviderConfig{Gateway: n.URL, KeyFile: keyFile, Backend: admitBackend(t, instantSim()), Slots: 8,
		Link: link.Options{Heartbeat: 500 * time.Millisecond}, RefusedRetry: time.Hour,
		Refused: func(err error) { refusedMu.Lock(); refusals = append(refusals, err); refusedMu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Stop() })
	if err := b.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	// B serves while staked (the local provider is paused).
	if err := n.Provider.Pause("test"); err != nil {
		t.Fatal(err)
	}
	tstest.WaitFor(t, 5*time.Second, "B serving", func() bool {
		id, status := complete(t, n.URL)
		return status == http.StatusOK && servedBy(t, n, id) == bKey.Public()
	})
	if err := n.Provider.Resume(); err != nil {
		t.Fatal(err)
	}

	// B unstakes: its stake falls under the minimum.
	res, err := chainrpc.NewSigner(n.Validator.Node.Client(), bKey, node.DefaultChainID).Send(ctx, ledger.Tx{Kind: ledger.KindUnstake, Amount: 1})
	if err != nil || res.Err() != nil {
		t.Fatalf("unstake: %v %v", err, res.Err())
	}
	committed := time.Now()
	// Within one block (the gateway polls the height every 200 ms), B is
	// disconnected; allow for a loaded machine, far below the old 30 s.
	tstest.WaitFor(t, 3*time.Second, "B disconnected after the unstake's block", func() bool {
		for _, in := range n.Gateway.Hub.Snapshot() {
			if in.Key == bKey.Public() {
				return false
			}
		}
		return true
	})
	t.Logf("B disconnected %s after the block committed", time.Since(committed).Round(time.Millisecond))
	for range 10 {
		id, status := complete(t, n.URL)
		if status != http.StatusOK {
			t.Fatalf("request after the unstake: status %d", status)
		}
		if servedBy(t, n, id) == bKey.Public() {
			t.Fatal("the unstaked provider got a job after its block")
		}
	}
	tstest.WaitFor(t, 5*time.Second, "B told of its refusal", func() bool {
		refusedMu.Lock()
		defer refusedMu.Unlock()
		return len(refusals) > 0
	})
	refusedMu.Lock()
	defer refusedMu.Unlock()
	if !errors.Is(refusals[0], protocol.ErrNotAdmitted) || !strings.Contains(refusals[0].Error(), "idlegrid provide init") {
		t.Fatalf("B's refusal: %v", refusals[0])
	}
	t.Logf("B was told: %v", refusals[0])
}
