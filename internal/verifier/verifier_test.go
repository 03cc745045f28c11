package verifier_test

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/backend/ollama"
	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/chain"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/link"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/node"
	"github.com/idlegrid/idlegrid/internal/verifier"
)

const apiKey = "ig-verifier-test-0123456789abcdef"

func fastSim(weights uint64) sim.Config {
	cfg := sim.DefaultConfig()
	for i := range cfg.Models {
		cfg.Models[i].FirstToken, cfg.Models[i].TokensPerSecond = 0, 0
		if weights != 0 {
			cfg.Models[i].Weights = weights
		}
	}
	return cfg
}

// claiming serves one backend's text while advertising another's digests:
// a provider running other weights than the ones it claims.
type claiming struct {
	backend.Backend
	claimed []backend.Model
}

func (c claiming) Models(context.Context) ([]backend.Model, error) { return c.claimed, nil }

// network starts `up` with a provider whose backend serves weights (0: the
// honest model) under the honest model's digest, and a staked verifier
// account; it returns the network, the reference (the honest model) and
// the verifier's key.
func network(t *testing.T, weights uint64) (*node.Network, *sim.Sim, keys.PrivateKey) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ref, err := sim.New(fastSim(0))
	if err != nil {
		t.Fatal(err)
	}
	honest, err := ref.Models(ctx)
	if err != nil {
		t.Fatal(err)
	}
	served, err := sim.New(fastSim(weights))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.NewServer(served))
	t.Cleanup(srv.Close)
	b := &node.LocalBackend{Backend: claiming{Backend: ollama.New(srv.URL, nil), claimed: honest}, Description: "test provider"}
	vkey, err := keys.Generate()
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.StartUp(ctx, node.UpConfig{
		Addr: "127.0.0.1:0", DataDir: t.TempDir(), Backend: node.BackendOllama, OllamaURL: "unused", DevAPIKey: apiKey,
		Slots: 8, Link: link.Options{Heartbeat: 500 * time.Millisecond}, BackendOverride: b,
		EditGenesis: func(g *ledger.Genesis) {
			// One verdict decides a case; it counts two blocks later; two
			// failed cases convict.
			g.Params.VerdictQuorum, g.Params.VerdictDelayBlocks, g.Params.ConvictFailures = 1, 2, 2
			g.Accounts = append(g.Accounts, ledger.GenesisAccount{Address: vkey.Public().Address(), PubKey: vkey.Public(),
				Balance: 10 * money.Unit, Stake: 1_000 * money.Unit, Roles: []string{"verifier"}})
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		n.Shutdown(ctx)
	})
	return n, ref, vkey
}

func newVerifier(t *testing.T, n *node.Network, ref *sim.Sim, vkey keys.PrivateKey) *verifier.Verifier {
	t.Helper()
	c := n.Validator.Node.Client()
	signer := chain.NewSigner(c, vkey, node.DefaultChainID)
	v, err := verifier.New(verifier.Config{
		Gateway: n.Gateway.URL(), APIKey: apiKey, Reference: ref, CaseSize: 2, Dir: filepath.Join(t.TempDir(), "evidence"),
		Post: func(ctx context.Context, tx ledger.Tx) error {
			res, err := signer.Send(ctx, tx)
			if err != nil {
				return err
			}
			return res.Err()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// audit runs canaries until cases verdicts are posted.
func audit(t *testing.T, v *verifier.Verifier, cases int) []verifier.Posted {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := 0; len(v.Verdicts()) < cases; i++ {
		if i > 10*cases {
			t.Fatalf("%d canaries gave %d verdicts", i, len(v.Verdicts()))
		}
		if _, err := v.Step(ctx); err != nil {
			t.Fatalf("canary %d: %v", i, err)
		}
	}
	return v.Verdicts()
}

// TestHonestProviderPasses: canaries of a provider serving the model it
// claims pass, and it is never convicted.
func TestHonestProviderPasses(t *testing.T) {
	n, ref, vkey := network(t, 0)
	v := newVerifier(t, n, ref, vkey)
	for _, p := range audit(t, v, 3) {
		if !p.Verdict.Pass || p.Err != "" {
			t.Fatalf("honest provider: %+v", p)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l := chain.Ledger{Client: n.Validator.Node.Client()}
	waitProvider(t, ctx, l, n.Provider.Key.Address(), func(p chain.ProviderInfo) bool { return p.Audits >= 2 })
	if p, _ := l.Provider(ctx, n.Provider.Key.Address()); p.Jailed || p.Failures != 0 || p.Reputation != 1000 {
		t.Errorf("honest provider on the ledger: %+v", p)
	}
}

// TestCheaterConvicted: a provider serving other weights than the digest
// it claims fails its cases and is convicted on the ledger.
func TestCheaterConvicted(t *testing.T) {
	n, ref, vkey := network(t, 99)
	v := newVerifier(t, n, ref, vkey)
	for _, p := range audit(t, v, 2) {
		if p.Verdict.Pass || p.Err != "" {
			t.Fatalf("cheater: %+v", p)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l := chain.Ledger{Client: n.Validator.Node.Client()}
	// The cases mature two blocks after their verdicts: send a transfer
	// so that blocks keep coming.
	signer := chain.NewSigner(n.Validator.Node.Client(), vkey, node.DefaultChainID)
	for range 3 {
		signer.Send(ctx, ledger.Tx{Kind: ledger.KindTransfer, To: n.Account, Amount: 1})
	}
	waitProvider(t, ctx, l, n.Provider.Key.Address(), func(p chain.ProviderInfo) bool { return p.Jailed })
	if p, _ := l.Provider(ctx, n.Provider.Key.Address()); p.Convictions != 1 || p.Failures < 2 {
		t.Errorf("cheater on the ledger: %+v", p)
	}
	// The gateway learns it at its next refresh and routes around it.
	n.Gateway.API.RefreshParams(ctx)
	if _, err := v.Step(ctx); err == nil || !strings.Contains(err.Error(), "jailed by the ledger") || !strings.Contains(err.Error(), "no_allowed_provider") {
		t.Fatalf("a canary to the convicted provider: %v", err)
	}
}

func waitProvider(t *testing.T, ctx context.Context, l chain.Ledger, addr keys.Address, done func(chain.ProviderInfo) bool) {
	t.Helper()
	for {
		p, err := l.Provider(ctx, addr)
		if err == nil && done(p) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("provider %s: %+v %v", addr, p, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
