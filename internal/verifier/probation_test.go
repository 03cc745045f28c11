package verifier_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/backend/ollama"
	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/gateway"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/link"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/node"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/verifier"
)

// trafficMarker marks the consumer traffic of the probation test apart
// from canaries.
const trafficMarker = "probation traffic"

// counting counts the consumer requests a backend serves.
type counting struct {
	backend.Backend
	n *atomic.Int64
}

func (c counting) Generate(ctx context.Context, req protocol.Request, emit func(backend.Delta) error) (backend.Result, error) {
	if strings.Contains(req.Prompt, trafficMarker) {
		c.n.Add(1)
	}
	return c.Backend.Generate(ctx, req, emit)
}

// TestProbationOnTheNetwork: on an `up` network with the simulator whose
// own provider has passed its probation, a provider that joins gets at
// most the gateway's probation share of consumer traffic while the
// verifier audits it back to back; an honest one is uncapped once it has
// passed its cases, and a cheater stays capped until it is convicted,
// after which no consumer request reaches it.
func TestProbationOnTheNetwork(t *testing.T) {
	for _, cheater := range []bool{false, true} {
		t.Run(map[bool]string{false: "honest", true: "cheater"}[cheater], func(t *testing.T) { probationRun(t, cheater) })
	}
}

func probationRun(t *testing.T, cheater bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	ref, err := sim.New(fastSim(0))
	if err != nil {
		t.Fatal(err)
	}
	honest, err := ref.Models(ctx)
	if err != nil {
		t.Fatal(err)
	}
	serve := func(weights uint64) backend.Backend {
		s, err := sim.New(fastSim(weights))
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(sim.NewServer(s))
		t.Cleanup(srv.Close)
		return claiming{Backend: ollama.New(srv.URL, nil), claimed: honest}
	}
	var oldServed, newServed atomic.Int64
	vkey, err := keys.Generate()
	if err != nil {
		t.Fatal(err)
	}
	newKeyFile := filepath.Join(t.TempDir(), "newcomer.key")
	newKey, _, err := keys.LoadOrCreate(newKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.StartUp(ctx, node.UpConfig{
		Addr: "127.0.0.1:0", DataDir: t.TempDir(), Backend: node.BackendOllama, OllamaURL: "unused", DevAPIKey: apiKey,
		Slots: 8, Link: link.Options{Heartbeat: 500 * time.Millisecond},
		// The verifier learns of the newcomer from the sample feed (a
		// fifth of the traffic, as few as the newcomer gets on probation).
		Gateway:         gateway.Config{Samples: gateway.SampleConfig{Share: 0.2, ShareText: true}},
		BackendOverride: &node.LocalBackend{Backend: counting{serve(0), &oldServed}, Description: "audited provider"},
		EditGenesis: func(g *ledger.Genesis) {
			g.Params.VerdictQuorum, g.Params.VerdictDelayBlocks, g.Params.ConvictFailures = 1, 2, 2
			g.Accounts = append(g.Accounts, ledger.GenesisAccount{Address: vkey.Public().Address(), PubKey: vkey.Public(),
				Balance: 10 * money.Unit, Stake: 1_000 * money.Unit, Roles: []string{"verifier"}})
			for _, a := range g.Accounts {
				if slices.Contains(a.Roles, "provider") {
					g.Accounts = append(g.Accounts, ledger.GenesisAccount{Address: newKey.Public().Address(), PubKey: newKey.Public(), Stake: a.Stake, Roles: a.Roles, Info: "newcomer"})
					break
				}
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
	v := newVerifier(t, n, ref, vkey, func(c *verifier.Config) { c.Interval, c.Key, c.SampleInterval = time.Hour, vkey, 200*time.Millisecond })
	vctx, vcancel := context.WithCancel(ctx)
	vdone := make(chan struct{})
	go func() {
		defer close(vdone)
		v.Run(vctx)
	}()
	defer func() { vcancel(); <-vdone }()
	l := chainrpc.StateReader{Client: n.Validator.Node.Client()}
	request := func() {
		t.Helper()
		// No prefix shared with other requests: no affinity.
		prompt := fmt.Sprint(time.Now().UnixNano()) + " " + trafficMarker
		body, _ := json.Marshal(map[string]any{"model": "sim", "prompt": prompt, "max_tokens": 8, "temperature": 0})
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, n.Gateway.URL()+"/v1/completions", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+apiKey)
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
		defer rcancel()
		resp, err := http.DefaultClient.Do(req.WithContext(rctx))
		if err != nil {
			if ctx.Err() == nil {
				t.Fatal(err)
			}
			return
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("consumer request: %s", resp.Status)
		}
	}
	// Consumer traffic keeps blocks coming while the verifier audits the
	// network's own provider through its probation.
	until := func(what string, cond func(chainrpc.ProviderInfo) bool, who keys.PublicKey) {
		t.Helper()
		for {
			if p, err := l.Provider(ctx, who.Address()); err == nil && cond(p) {
				return
			}
			if ctx.Err() != nil {
				p, err := l.Provider(context.Background(), who.Address())
				by := map[string]int{}
				for _, x := range v.Verdicts() {
					by[x.Source+" "+x.Provider.String()[:8]+fmt.Sprint(" pass=", x.Verdict.Pass)]++
				}
				t.Fatalf("timed out waiting for %s: %+v %v; newcomer %s served %d; verdicts %v", what, p, err, newKey.Public().String()[:8], newServed.Load(), by)
			}
			request()
			time.Sleep(5 * time.Millisecond)
		}
	}
	until("the network's provider to pass its probation", func(p chainrpc.ProviderInfo) bool { return p.Audits-p.Failures >= gateway.DefaultProbationCases },
		n.Provider.Key)

	weights := uint64(0)
	if cheater {
		weights = 99
	}
	p, err := node.StartProvider(node.ProviderConfig{Gateway: n.Gateway.URL(), KeyFile: newKeyFile, Slots: 8, Link: link.Options{Heartbeat: 500 * time.Millisecond},
		Backend: &node.LocalBackend{Backend: counting{serve(weights), &newServed}, Description: "newcomer"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop() })
	if err := p.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	oldServed.Store(0)
	var left func(chainrpc.ProviderInfo) bool // when probation ends
	if cheater {
		left = func(p chainrpc.ProviderInfo) bool { return p.Jailed }
	} else {
		left = func(p chainrpc.ProviderInfo) bool { return p.Audits >= gateway.DefaultProbationCases }
	}
	until("the newcomer's probation to end", left, newKey.Public())
	n.Gateway.API.RefreshParams(ctx)
	total, mine := oldServed.Load()+newServed.Load(), newServed.Load()
	t.Logf("during probation the newcomer served %d of %d consumer requests", mine, total)
	if float64(mine) > gateway.DefaultProbationShare*float64(total)+1 {
		t.Errorf("on probation the newcomer served %d of %d consumer requests, more than %.0f%%", mine, total, 100*gateway.DefaultProbationShare)
	}
	oldServed.Store(0)
	newServed.Store(0)
	for range 100 {
		request()
	}
	after := newServed.Load()
	t.Logf("after probation the newcomer served %d of 100", after)
	switch {
	case cheater && after > 0:
		t.Errorf("the convicted newcomer served %d consumer requests", after)
	case !cheater && after == 0:
		// How much it gets now is the scheduler's (price, speed,
		// reputation); TestProbationCap checks that the cap lifts.
		t.Error("out of probation the honest newcomer served no request")
	}
}
