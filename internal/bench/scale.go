package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/chain"
	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/gateway"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/node"
	"github.com/idlegrid/idlegrid/internal/store/pgtemp"
)

// ScaleConfig configures the multi-gateway benchmark.
type ScaleConfig struct {
	// Gateways lists the numbers of gateways to measure, each in its own
	// run on a fresh database and ledger.
	Gateways []int
	// Providers is the total number of simulated providers, spread evenly
	// over the gateways (the same capacity in every run), each with Slots.
	Providers, Slots int
	// Clients run closed loops for Duration, spread evenly over the
	// gateways; each asks for MaxTokens tokens.
	Clients   int
	Duration  time.Duration
	MaxTokens int
	Out       io.Writer
}

// DefaultScale is what `idlegrid bench scale` runs.
func DefaultScale() ScaleConfig {
	return ScaleConfig{Gateways: []int{1, 2, 4}, Providers: 4, Slots: 64, Clients: 64, Duration: 10 * time.Second, MaxTokens: 8}
}

// ScaleRun is one number of gateways' result.
type ScaleRun struct {
	Gateways  int
	Requests  int64
	Elapsed   time.Duration
	Settled   int64
	SettledIn time.Duration // from the first request to the last receipt settled
}

// RPS is requests served per second.
func (r ScaleRun) RPS() float64 { return float64(r.Requests) / r.Elapsed.Seconds() }

// SettledPerSecond is receipts settled on the ledger per second.
func (r ScaleRun) SettledPerSecond() float64 { return float64(r.Settled) / r.SettledIn.Seconds() }

// ScaleResult is every run.
type ScaleResult struct{ Runs []ScaleRun }

// Summary is the one-line result, with each run's ratio to the first.
func (r ScaleResult) Summary() string {
	var parts []string
	for _, run := range r.Runs {
		parts = append(parts, fmt.Sprintf("%d gateway(s) %.0f req/s (%.2f×), %.0f settled/s (%.2f×)",
			run.Gateways, run.RPS(), run.RPS()/r.Runs[0].RPS(), run.SettledPerSecond(), run.SettledPerSecond()/r.Runs[0].SettledPerSecond()))
	}
	return "bench scale: " + strings.Join(parts, "; ")
}

// Scale measures gateways sharing one PostgreSQL and one in-process
// validator: for each number of gateways, the providers are spread over
// them, the clients call them round-robin, every request is admitted
// against the shared reservations and billed by a receipt, and every
// receipt must settle. Everything runs in this process on this machine's
// cores, so more gateways share the same CPUs: the ratios show what
// sharing the database costs, not what more machines would add.
func Scale(ctx context.Context, cfg ScaleConfig) (ScaleResult, error) {
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if len(cfg.Gateways) == 0 || cfg.Providers <= 0 || cfg.Slots <= 0 || cfg.Clients <= 0 || cfg.Duration <= 0 || cfg.MaxTokens <= 0 {
		return ScaleResult{}, errors.New("bench scale: gateways, providers, slots, clients, duration and max tokens must be positive")
	}
	srv, err := pgtemp.Start(ctx)
	if err != nil {
		return ScaleResult{}, fmt.Errorf("bench scale needs PostgreSQL: %w", err)
	}
	defer srv.Stop()
	fmt.Fprintf(cfg.Out, "started a throwaway PostgreSQL on 127.0.0.1:%d\n", srv.Port)
	var res ScaleResult
	for i, n := range cfg.Gateways {
		if n <= 0 {
			return res, fmt.Errorf("bench scale: %d gateways", n)
		}
		url, err := srv.CreateDatabase(ctx, fmt.Sprintf("scale_%d", i))
		if err != nil {
			return res, err
		}
		run, err := scaleRun(ctx, cfg, n, url)
		if err != nil {
			return res, fmt.Errorf("%d gateways: %w", n, err)
		}
		fmt.Fprintf(cfg.Out, "%d gateway(s): %d requests in %.1fs: %.0f requests/s; %d receipts settled in %.1fs: %.0f receipts/s\n",
			n, run.Requests, run.Elapsed.Seconds(), run.RPS(), run.Settled, run.SettledIn.Seconds(), run.SettledPerSecond())
		res.Runs = append(res.Runs, run)
	}
	return res, nil
}

// scaleParties are a run's ledger accounts.
type scaleParties struct {
	gateways, providers []keys.PrivateKey
	consumers           []keys.Address
}

func newScaleParties(gateways, providers, consumers int) (scaleParties, error) {
	var p scaleParties
	gen := func(n int) ([]keys.PrivateKey, error) {
		var out []keys.PrivateKey
		for range n {
			k, err := keys.Generate()
			if err != nil {
				return nil, err
			}
			out = append(out, k)
		}
		return out, nil
	}
	var err error
	if p.gateways, err = gen(gateways); err != nil {
		return p, err
	}
	if p.providers, err = gen(providers); err != nil {
		return p, err
	}
	cs, err := gen(consumers)
	for _, c := range cs {
		p.consumers = append(p.consumers, c.Public().Address())
	}
	return p, err
}

func (p scaleParties) genesis() ([]byte, error) {
	g := ledger.Genesis{Params: ledger.DefaultParams()}
	var approvals []ledger.GenesisApproval
	for _, k := range p.gateways {
		g.Accounts = append(g.Accounts, ledger.GenesisAccount{Address: k.Public().Address(), PubKey: k.Public(), Stake: 1_000_000 * money.Unit, Roles: []string{"gateway"}})
		approvals = append(approvals, ledger.GenesisApproval{Gateway: k.Public().Address(), Deposit: 1_000_000 * money.Unit})
	}
	for _, k := range p.providers {
		g.Accounts = append(g.Accounts, ledger.GenesisAccount{Address: k.Public().Address(), PubKey: k.Public(), Stake: 1_000 * money.Unit, Roles: []string{"provider"}})
	}
	for _, c := range p.consumers {
		// A deposit per gateway, each out of the consumer's balance.
		g.Accounts = append(g.Accounts, ledger.GenesisAccount{Address: c, Balance: money.Amount(len(approvals)) * 1_000_000 * money.Unit, Approvals: approvals})
	}
	return json.Marshal(g)
}

func scaleRun(ctx context.Context, cfg ScaleConfig, n int, dbURL string) (ScaleRun, error) {
	dir, err := os.MkdirTemp("", "idlegrid-bench-scale-")
	if err != nil {
		return ScaleRun{}, err
	}
	defer os.RemoveAll(dir)
	p, err := newScaleParties(n, cfg.Providers, cfg.Clients)
	if err != nil {
		return ScaleRun{}, err
	}
	appState, err := p.genesis()
	if err != nil {
		return ScaleRun{}, err
	}
	home := filepath.Join(dir, "validator")
	if err := chain.InitSingle(home, benchChainID, appState); err != nil {
		return ScaleRun{}, err
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	val, err := node.StartValidator(sctx, home, "", "", nil)
	if err != nil {
		return ScaleRun{}, err
	}
	defer val.Stop()

	var gws []*node.Gateway
	var providers []*node.Provider
	defer func() {
		for _, pr := range providers {
			pr.Stop()
		}
		for _, g := range gws {
			dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			g.Shutdown(dctx)
			cancel()
		}
	}()
	for i, k := range p.gateways {
		gdir := filepath.Join(dir, fmt.Sprintf("gateway-%d", i))
		if err := keys.Save(filepath.Join(gdir, "gateway.key"), k); err != nil {
			return ScaleRun{}, err
		}
		g, err := node.StartGateway(sctx, node.GatewayConfig{Addr: "127.0.0.1:0", DataDir: gdir, ChainID: benchChainID, DatabaseURL: dbURL,
			PeerInterval: 500 * time.Millisecond,
			Gateway: gateway.Config{Ledger: chainrpc.NewSigner(val.Node.Client(), k, benchChainID), MaxQueued: 1 << 16,
				SettleInterval: 500 * time.Millisecond, SettleBatchSize: 2000, SettleInFlight: 2}})
		if err != nil {
			return ScaleRun{}, err
		}
		gws = append(gws, g)
	}
	for i, c := range p.consumers {
		if _, err := gws[0].Store.EnsureAPIKey(sctx, scaleKey(i), "bench", c); err != nil {
			return ScaleRun{}, err
		}
	}
	mc := sim.DefaultConfig().Models[0]
	mc.FirstToken, mc.TokensPerSecond, mc.PromptTokensPerSecond = 0, 0, 0
	for i, k := range p.providers {
		kf := filepath.Join(dir, fmt.Sprintf("provider-%d.key", i))
		if err := keys.Save(kf, k); err != nil {
			return ScaleRun{}, err
		}
		s, err := sim.New(sim.Config{Models: []sim.ModelConfig{mc}})
		if err != nil {
			return ScaleRun{}, err
		}
		pr, err := node.StartProvider(node.ProviderConfig{Gateway: gws[i%n].URL(), KeyFile: kf,
			Backend: &node.LocalBackend{Backend: s, Description: "simulator"}, Slots: cfg.Slots})
		if err != nil {
			return ScaleRun{}, err
		}
		providers = append(providers, pr)
		if err := pr.WaitConnected(sctx); err != nil {
			return ScaleRun{}, err
		}
	}
	fmt.Fprintf(cfg.Out, "%d gateway(s), %d providers, %d clients: running for %s\n", n, cfg.Providers, cfg.Clients, cfg.Duration)

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Clients, MaxConnsPerHost: 0}}
	request := func(ctx context.Context, i int) error {
		body := fmt.Sprintf(`{"model":%q,"max_tokens":%d,"messages":[{"role":"user","content":"scale %d"}]}`, mc.Name, cfg.MaxTokens, i)
		g := gws[i%n]
		req, err := http.NewRequestWithContext(ctx, "POST", g.URL()+"/v1/chat/completions", bytes.NewReader([]byte(body)))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+scaleKey(i%len(p.consumers)))
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("gateway %d: %s: %s", i%n, resp.Status, b)
		}
		return err
	}
	start := time.Now()
	var served atomic.Int64
	_, err = maxRPS(ctx, cfg.Clients, cfg.Duration, func(i int) error {
		err := request(ctx, i)
		if err == nil {
			served.Add(1)
		}
		return err
	})
	elapsed := time.Since(start)
	if err != nil {
		return ScaleRun{}, err
	}
	// Every receipt must settle; count them in the shared database.
	want := served.Load()
	deadline := time.Now().Add(2 * time.Minute)
	var settled int64
	for {
		settled, err = countSettled(ctx, gws)
		if err != nil {
			return ScaleRun{}, err
		}
		if settled >= want {
			break
		}
		if time.Now().After(deadline) {
			return ScaleRun{}, fmt.Errorf("%d of %d receipts settled after 2 minutes", settled, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return ScaleRun{Gateways: n, Requests: want, Elapsed: elapsed, Settled: settled, SettledIn: time.Since(start)}, nil
}

// countSettled adds up every gateway's settled receipts.
func countSettled(ctx context.Context, gws []*node.Gateway) (int64, error) {
	var total int64
	for _, g := range gws {
		c, err := g.Store.CountReceipts(ctx)
		if err != nil {
			return 0, err
		}
		if c.Rejected > 0 {
			return 0, fmt.Errorf("the ledger rejected %d receipts", c.Rejected)
		}
		total += c.Settled
	}
	return total, nil
}

// scaleKey is consumer i's API key.
func scaleKey(i int) string { return fmt.Sprintf("ig-bench-scale-consumer-%04d", i) }
