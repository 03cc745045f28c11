package verifier_test

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/backend/ollama"
	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/link"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/node"
	"github.com/idlegrid/idlegrid/internal/protocol"
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

// renamed serves another model than the one it advertises: it claims
// claimed (names and digests) and runs actual.
type renamed struct {
	backend.Backend
	claimed []backend.Model
	actual  string
}

func (r renamed) Models(context.Context) ([]backend.Model, error) { return r.claimed, nil }

func (r renamed) Generate(ctx context.Context, req protocol.Request, emit func(backend.Delta) error) (backend.Result, error) {
	req.Model = r.actual
	return r.Backend.Generate(ctx, req, emit)
}

// network starts `up` with a provider whose backend serves weights (0: the
// honest model) under the honest model's digest, and a staked verifier
// account; it returns the network, the reference (the honest model) and
// the verifier's key.
func network(t *testing.T, weights uint64, extra ...keys.PrivateKey) (*node.Network, *sim.Sim, keys.PrivateKey) {
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
	n, vkey := networkWith(t, claiming{Backend: ollama.New(srv.URL, nil), claimed: honest}, extra...)
	return n, ref, vkey
}

// networkWith starts `up` with provider as the provider's backend and a
// staked verifier account (and the extra ones, staked alike: then cases
// mature 20 blocks after they open, time for the others to vote).
func networkWith(t *testing.T, provider backend.Backend, extra ...keys.PrivateKey) (*node.Network, keys.PrivateKey) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := &node.LocalBackend{Backend: provider, Description: "test provider"}
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
			if len(extra) > 0 {
				g.Params.VerdictDelayBlocks = 20
			}
			for _, k := range append([]keys.PrivateKey{vkey}, extra...) {
				g.Accounts = append(g.Accounts, ledger.GenesisAccount{Address: k.Public().Address(), PubKey: k.Public(),
					Balance: 10 * money.Unit, Stake: 1_000 * money.Unit, Roles: []string{"verifier"}})
			}
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
	return n, vkey
}

func newVerifier(t *testing.T, n *node.Network, ref backend.Backend, vkey keys.PrivateKey, edit ...func(*verifier.Config)) *verifier.Verifier {
	t.Helper()
	c := n.Validator.Node.Client()
	signer := chainrpc.NewSigner(c, vkey, node.DefaultChainID)
	cfg := verifier.Config{
		Gateway: n.Gateway.URL(), APIKey: apiKey, Reference: ref, CaseSize: 2, Dir: filepath.Join(t.TempDir(), "evidence"),
		Post: func(ctx context.Context, tx ledger.Tx) error {
			res, err := signer.Send(ctx, tx)
			if err != nil {
				return err
			}
			return res.Err()
		},
	}
	for _, f := range edit {
		f(&cfg)
	}
	v, err := verifier.New(cfg)
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
	l := chainrpc.StateReader{Client: n.Validator.Node.Client()}
	waitProvider(t, ctx, l, n.Provider.Key.Address(), func(p chainrpc.ProviderInfo) bool { return p.Audits >= 2 })
	if p, _ := l.Provider(ctx, n.Provider.Key.Address()); p.Jailed || p.Failures != 0 || p.Reputation != 1000 {
		t.Errorf("honest provider on the ledger: %+v", p)
	}
}

// TestCheaterConvicted: a provider serving other weights than the digest
// it claims fails its cases and is convicted on the ledger.
func TestCheaterConvicted(t *testing.T) {
	n, ref, vkey := network(t, 99)
	// Two cases end its probation: the last canary below is routed as
	// any consumer's.
	v := newVerifier(t, n, ref, vkey, func(c *verifier.Config) { c.ProbationCases = 2 })
	for _, p := range audit(t, v, 2) {
		if p.Verdict.Pass || p.Err != "" {
			t.Fatalf("cheater: %+v", p)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l := chainrpc.StateReader{Client: n.Validator.Node.Client()}
	// The cases mature two blocks after their verdicts: send a transfer
	// so that blocks keep coming.
	signer := chainrpc.NewSigner(n.Validator.Node.Client(), vkey, node.DefaultChainID)
	for range 3 {
		signer.Send(ctx, ledger.Tx{Kind: ledger.KindTransfer, To: n.Account, Amount: 1})
	}
	waitProvider(t, ctx, l, n.Provider.Key.Address(), func(p chainrpc.ProviderInfo) bool { return p.Jailed })
	if p, _ := l.Provider(ctx, n.Provider.Key.Address()); p.Convictions != 1 || p.Failures < 2 {
		t.Errorf("cheater on the ledger: %+v", p)
	}
	// The gateway drops a jailed provider at the next block it sees (or,
	// caught between blocks, routes around it): no canary reaches it.
	n.Gateway.API.RefreshParams(ctx)
	_, err := v.Step(ctx)
	dropped := err != nil && strings.Contains(err.Error(), "0 providers online")
	avoided := err != nil && strings.Contains(err.Error(), "jailed by the ledger") && strings.Contains(err.Error(), "no_allowed_provider")
	if !dropped && !avoided {
		t.Fatalf("a canary to the convicted provider: %v", err)
	}
}

// TestVerifiersJudgeEachOthersCanaries: cases are decided by verifier
// stake, so one verifier of three (a third of the stake) cannot convict
// alone; the second replays the canary cases the first opened, from the
// texts on the ledger, and votes too; together they convict the cheater.
func TestVerifiersJudgeEachOthersCanaries(t *testing.T) {
	second, err := keys.Generate()
	if err != nil {
		t.Fatal(err)
	}
	n, ref, vkey := network(t, 99, second)
	opener := newVerifier(t, n, ref, vkey)
	l := chainrpc.StateReader{Client: n.Validator.Node.Client()}
	judge := newVerifier(t, n, ref, second, func(c *verifier.Config) { c.Key, c.Cases = second, node.LedgerCases(l) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	judged := 0
	for i := 0; judged < 2; i++ {
		if i > 40 {
			t.Fatalf("%d canaries, %d cases judged by the second verifier", i, judged)
		}
		if _, err := opener.Step(ctx); err != nil {
			t.Fatalf("canary %d: %v", i, err)
		}
		ps, err := judge.JudgeCases(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			if p.Source != "case" || p.Verdict.Pass || p.Err != "" {
				t.Fatalf("second verifier on an open case: %+v", p)
			}
			judged++
		}
	}
	signer := chainrpc.NewSigner(n.Validator.Node.Client(), vkey, node.DefaultChainID)
	for range 22 {
		signer.Send(ctx, ledger.Tx{Kind: ledger.KindTransfer, To: n.Account, Amount: 1})
	}
	waitProvider(t, ctx, l, n.Provider.Key.Address(), func(p chainrpc.ProviderInfo) bool { return p.Jailed })
}

func waitProvider(t *testing.T, ctx context.Context, l chainrpc.StateReader, addr keys.Address, done func(chainrpc.ProviderInfo) bool) {
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

// TestRealOllamaQuantizedCheater: with a real Ollama (OLLAMA_URL), a
// provider that serves tiny-q4sim (the same weights rounded to a 4-bit
// grid) while claiming tiny's digest is caught by canaries replayed on the
// real tiny; an honest provider of tiny passes.
func TestRealOllamaQuantizedCheater(t *testing.T) {
	url := os.Getenv("OLLAMA_URL")
	if url == "" {
		t.Skip("OLLAMA_URL not set: start a test Ollama with shared/scripts/ollama-test-server.sh start")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	o := ollama.New(url, nil)
	models, err := o.Models(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var tiny []backend.Model
	for _, m := range models {
		if m.Name == "tiny:latest" {
			tiny = append(tiny, m)
		}
	}
	if len(tiny) != 1 {
		t.Fatalf("no tiny model at %s: %v", url, models)
	}
	for _, tc := range []struct {
		name     string
		provider backend.Backend
		cheats   bool
	}{
		{"honest tiny", claiming{Backend: o, claimed: tiny}, false},
		{"tiny-q4sim claiming tiny", renamed{Backend: o, claimed: tiny, actual: "tiny-q4sim:latest"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, vkey := networkWith(t, tc.provider)
			v := newVerifier(t, n, o, vkey, func(c *verifier.Config) { c.Models, c.CaseSize, c.MaxTokens = []string{"tiny"}, 8, 48 })
			// Two failed cases convict, after which the gateway may stop
			// routing to the cheater: audit two cases of a cheater, three
			// of an honest provider.
			cases := 3
			if tc.cheats {
				cases = 2
			}
			ps := audit(t, v, cases)
			failed := 0
			for _, p := range ps {
				if p.Err != "" {
					t.Fatalf("verdict not posted: %+v", p)
				}
				if !p.Verdict.Pass {
					failed++
				}
				t.Logf("pass %v: %s", p.Verdict.Pass, p.Verdict.Reason)
			}
			if tc.cheats && failed != 2 || !tc.cheats && failed != 0 {
				t.Fatalf("%d of %d cases failed", failed, len(ps))
			}
			// Two failed cases convict once they mature: blocks keep coming
			// with a few transfers.
			l := chainrpc.StateReader{Client: n.Validator.Node.Client()}
			signer := chainrpc.NewSigner(n.Validator.Node.Client(), vkey, node.DefaultChainID)
			for range 3 {
				signer.Send(ctx, ledger.Tx{Kind: ledger.KindTransfer, To: n.Account, Amount: 1})
			}
			if tc.cheats {
				waitProvider(t, ctx, l, n.Provider.Key.Address(), func(p chainrpc.ProviderInfo) bool { return p.Jailed })
			} else if p, err := l.Provider(ctx, n.Provider.Key.Address()); err != nil || p.Jailed || p.Failures != 0 {
				t.Errorf("honest provider on the ledger: %+v %v", p, err)
			}
		})
	}
}

// TestProbationBackToBack: a provider the verifier has not judged gets
// its probation cases back to back, not one canary per Interval.
func TestProbationBackToBack(t *testing.T) {
	n, ref, vkey := network(t, 0)
	v := newVerifier(t, n, ref, vkey, func(c *verifier.Config) { c.Interval, c.ProbationCases = time.Hour, 2 })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		v.Run(ctx)
	}()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(time.Minute)
	for len(v.Verdicts()) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d verdicts within a minute with one canary an hour outside probation", len(v.Verdicts()))
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, p := range v.Verdicts() {
		if p.Source != "canary" || !p.Verdict.Pass {
			t.Errorf("probation verdict: %+v", p)
		}
	}
}
