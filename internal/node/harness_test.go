package node_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/gateway"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/limits"
	"github.com/idlegrid/idlegrid/internal/link"
	"github.com/idlegrid/idlegrid/internal/node"
	"github.com/idlegrid/idlegrid/internal/store"
)

const testAPIKey = "ig-test-0123456789abcdefghijklmnop"

// testNet is an `up`-style network on loopback with the simulator behind an
// Ollama-compatible HTTP server the test can inspect and break.
type testNet struct {
	*node.Network
	URL     string
	Sim     *sim.Server
	SimURL  string
	DataDir string
}

type netOptions struct {
	sim     sim.Config
	backend *node.LocalBackend // overrides the simulator (real Ollama)
	slots   int
	gateway gateway.Config // queue limits and timeouts
	genesis func(*ledger.Genesis)
	limits  limits.Config
	keyless bool // loopback clients need no API key (up's default)
}

func fastSim() sim.Config {
	cfg := sim.DefaultConfig()
	for i := range cfg.Models {
		cfg.Models[i].FirstToken = 0
		cfg.Models[i].TokensPerSecond = 0
	}
	return cfg
}

func startNet(t *testing.T, opts netOptions) *testNet {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tn := &testNet{DataDir: t.TempDir()}
	b := opts.backend
	if b == nil {
		if opts.sim.Models == nil {
			opts.sim = fastSim()
		}
		s, err := sim.New(opts.sim)
		if err != nil {
			t.Fatal(err)
		}
		tn.Sim = sim.NewServer(s)
		srv := httptest.NewServer(tn.Sim)
		t.Cleanup(srv.Close)
		tn.SimURL = srv.URL
		if b, err = node.OpenBackend(ctx, node.BackendOllama, srv.URL, nil); err != nil {
			t.Fatal(err)
		}
	}
	if opts.slots == 0 {
		opts.slots = 256
	}
	n, err := node.StartUp(ctx, node.UpConfig{
		Addr: "127.0.0.1:0", DataDir: tn.DataDir, Backend: node.BackendOllama, OllamaURL: "unused", DevAPIKey: testAPIKey,
		Slots: opts.slots, Link: link.Options{Heartbeat: 500 * time.Millisecond}, Logger: testLogger(t),
		BackendOverride: b, Gateway: opts.gateway, EditGenesis: opts.genesis, Limits: opts.limits, KeylessLoopback: opts.keyless,
	})
	if err != nil {
		t.Fatal(err)
	}
	tn.Network = n
	tn.URL = n.Gateway.URL()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return tn
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("IDLEGRID_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// authTransport adds the API key to every request (for Ollama's client,
// which has no API key option).
type authTransport struct{ key string }

func (a authTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+a.key)
	return http.DefaultTransport.RoundTrip(r)
}

// stakedProvider makes a provider key file for a test network's extra
// provider and the genesis edit that registers and stakes it like up's
// own: the gateway serves only providers the ledger admits.
func stakedProvider(t *testing.T, name string) (keyFile string, register func(*ledger.Genesis)) {
	t.Helper()
	keyFile = filepath.Join(t.TempDir(), name+".key")
	k, _, err := keys.LoadOrCreate(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return keyFile, func(g *ledger.Genesis) {
		for _, a := range g.Accounts {
			if slices.Contains(a.Roles, "provider") {
				pub := k.Public()
				g.Accounts = append(g.Accounts, ledger.GenesisAccount{Address: pub.Address(), PubKey: pub, Stake: a.Stake, Roles: a.Roles, Info: name})
				return
			}
		}
		t.Fatal("no provider at genesis")
	}
}

// checkStoredReceipt opens the gateway database of a stopped network and
// verifies the receipt for id.
func checkStoredReceipt(t *testing.T, dataDir, id string) {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(dataDir, "gateway.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s, err := st.Receipt(context.Background(), id)
	if err != nil {
		t.Fatalf("receipt %s: %v", id, err)
	}
	if err := s.Verify(); err != nil {
		t.Fatal(err)
	}
}
