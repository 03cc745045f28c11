package verifier_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/backend/ollama"
	"github.com/idlegrid/idlegrid/internal/chain"
	"github.com/idlegrid/idlegrid/internal/gateway"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/link"
	"github.com/idlegrid/idlegrid/internal/node"
)

// testLog logs to stderr when IDLEGRID_TEST_LOG is set.
func testLog() *slog.Logger {
	if os.Getenv("IDLEGRID_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// TestRealOllamaConvictionTime measures, on the real Ollama with `up`'s
// defaults (a canary every 30 s, 1% of responses sampled with text,
// probation 3 cases and 10%, the dev genesis), how long a provider that
// serves tiny-q4sim as tiny takes to be convicted after it joins, how
// many consumer requests it serves before, and that the honest provider
// is not convicted. Long (minutes): skipped with -short.
func TestRealOllamaConvictionTime(t *testing.T) {
	u := os.Getenv("OLLAMA_URL")
	if u == "" {
		t.Skip("OLLAMA_URL not set: start a test Ollama (tiny, tiny-q4sim) with shared/scripts/ollama-test-server.sh")
	}
	if testing.Short() {
		t.Skip("minutes of real Ollama traffic")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	o := ollama.New(u, nil)
	ms, err := o.Models(ctx)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(ms, func(m backend.Model) bool { return m.Name == "tiny:latest" || m.Name == "tiny" })
	if i < 0 {
		t.Skip("the test Ollama has no tiny model")
	}
	var honestServed, cheaterServed atomic.Int64
	cheaterKeyFile := filepath.Join(t.TempDir(), "cheater.key")
	cheaterKey, _, err := keys.LoadOrCreate(cheaterKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.StartUp(ctx, node.UpConfig{
		Addr: "127.0.0.1:0", DataDir: t.TempDir(), Backend: node.BackendOllama, OllamaURL: u, DevAPIKey: apiKey,
		Slots: 4, Link: link.Options{Heartbeat: 500 * time.Millisecond}, VerifyEvery: 30 * time.Second, Logger: testLog(),
		Gateway:         gateway.Config{Samples: gateway.SampleConfig{Share: 0.01, ShareText: true}},
		BackendOverride: &node.LocalBackend{Backend: counting{o, &honestServed}, Description: "real Ollama"},
		EditGenesis: func(g *ledger.Genesis) {
			for _, a := range g.Accounts {
				if slices.Contains(a.Roles, "provider") {
					g.Accounts = append(g.Accounts, ledger.GenesisAccount{Address: cheaterKey.Public().Address(), PubKey: cheaterKey.Public(), Stake: a.Stake, Roles: a.Roles, Info: "cheater"})
					break
				}
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		n.Shutdown(ctx)
	})
	l := chain.Ledger{Client: n.Validator.Node.Client()}
	// Steady consumer traffic: two clients, greedy and default-temperature
	// requests in turn.
	var wg sync.WaitGroup
	tctx, stop := context.WithCancel(ctx)
	defer func() { stop(); wg.Wait() }()
	for w := range 2 {
		wg.Go(func() {
			for k := 0; tctx.Err() == nil; k++ {
				body := map[string]any{"model": "tiny", "max_tokens": 32,
					"prompt": fmt.Sprintf("%d-%d %s: tell me about the sea", w, k, trafficMarker)}
				if k%2 == 0 {
					body["temperature"] = 0
				}
				b, _ := json.Marshal(body)
				req, _ := http.NewRequestWithContext(tctx, http.MethodPost, n.Gateway.URL()+"/v1/completions", bytes.NewReader(b))
				req.Header.Set("Authorization", "Bearer "+apiKey)
				if resp, err := http.DefaultClient.Do(req); err == nil {
					resp.Body.Close()
				}
			}
		})
	}
	start := time.Now()
	waitFor := func(what string, d time.Duration, cond func() bool) bool {
		for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(time.Second) {
			if cond() {
				return true
			}
		}
		t.Logf("not within %s: %s", d, what)
		return false
	}
	passed := func(k keys.PublicKey) func() bool {
		return func() bool {
			p, err := l.Provider(ctx, k.Address())
			return err == nil && p.Audits-p.Failures >= gateway.DefaultProbationCases
		}
	}
	if !waitFor("the up provider's probation", 5*time.Minute, passed(n.Provider.Key)) {
		t.Fatal("the honest provider did not pass its probation")
	}
	t.Logf("up's own provider passed probation %s after start", time.Since(start).Round(time.Second))

	cheater := renamed{Backend: o, claimed: []backend.Model{ms[i]}, actual: "tiny-q4sim"}
	p, err := node.StartProvider(node.ProviderConfig{Gateway: n.Gateway.URL(), KeyFile: cheaterKeyFile, Slots: 4, Link: link.Options{Heartbeat: 500 * time.Millisecond},
		Backend: &node.LocalBackend{Backend: counting{cheater, &cheaterServed}, Description: "tiny-q4sim as tiny"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop() })
	if err := p.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	joined := time.Now()
	honestServed.Store(0)
	var firstFail time.Duration
	jailed := waitFor("the cheater's conviction", 6*time.Minute, func() bool {
		if firstFail == 0 {
			for _, v := range n.Verifier.Verdicts() {
				if v.Provider == cheaterKey.Public() && !v.Verdict.Pass {
					firstFail = time.Since(joined)
				}
			}
		}
		info, err := l.Provider(ctx, cheaterKey.Public().Address())
		return err == nil && info.Jailed
	})
	took := time.Since(joined)
	c, h := cheaterServed.Load(), honestServed.Load()
	t.Logf("cheater: first failed verdict %s after joining; jailed %v after %s; served %d of %d consumer requests (%.1f%%) before",
		firstFail.Round(time.Second), jailed, took.Round(time.Second), c, c+h, 100*float64(c)/float64(max(c+h, 1)))
	if info, err := l.Provider(ctx, n.Provider.Key.Address()); err != nil || info.Jailed || info.Failures > 0 {
		t.Errorf("honest provider: %+v %v", info, err)
	}
	if !jailed {
		t.Error("the cheater was not convicted")
	}
}
