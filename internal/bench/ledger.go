package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/idlegrid/idlegrid/internal/chain"
	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/node"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// LedgerConfig configures the settlement benchmark.
type LedgerConfig struct {
	// Validators lists the network sizes to measure, each in its own run.
	Validators []int
	// Receipts settled per run, in batches of BatchSize with up to
	// InFlight batches awaiting commit at once.
	Receipts  int
	BatchSize int
	InFlight  int
	// Out receives progress lines; nil discards them.
	Out io.Writer
}

// DefaultLedger is what `idlegrid bench ledger` runs.
func DefaultLedger() LedgerConfig {
	return LedgerConfig{Validators: []int{1, 4}, Receipts: 40_000, BatchSize: 2_000, InFlight: 4}
}

// LedgerRun is one network size's result.
type LedgerRun struct {
	Validators int
	Receipts   int
	Batches    int
	Elapsed    time.Duration
	// Commit is the latency of each batch from submission to its commit
	// being reported.
	Commit Dist
}

// PerSecond is receipts settled per second, end to end.
func (r LedgerRun) PerSecond() float64 { return float64(r.Receipts) / r.Elapsed.Seconds() }

// LedgerResult is every run.
type LedgerResult struct{ Runs []LedgerRun }

// Summary is the one-line result.
func (r LedgerResult) Summary() string {
	var parts []string
	for _, run := range r.Runs {
		parts = append(parts, fmt.Sprintf("%d validator(s): %.0f receipts/s, commit p50 %s p99 %s",
			run.Validators, run.PerSecond(), ms(run.Commit.Q(0.5)), ms(run.Commit.Q(0.99))))
	}
	return "bench ledger: " + strings.Join(parts, "; ")
}

// Ledger measures receipt settlement end to end: signed receipts → batches
// → settle-batch transactions → committed by CometBFT, on one validator and
// on a loopback network of several, all in this process. Receipts are
// signed before the clock starts; every one must settle.
func Ledger(ctx context.Context, cfg LedgerConfig) (LedgerResult, error) {
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.Receipts <= 0 || cfg.BatchSize <= 0 || cfg.InFlight <= 0 {
		return LedgerResult{}, errors.New("bench ledger: receipts, batch size and in-flight must be positive")
	}
	var res LedgerResult
	for _, n := range cfg.Validators {
		run, err := ledgerRun(ctx, cfg, n)
		if err != nil {
			return res, fmt.Errorf("%d validators: %w", n, err)
		}
		fmt.Fprintf(cfg.Out, "%d validator(s): %d receipts in %d batches in %.2fs: %.0f receipts/s; commit p50 %s p99 %s max %s\n",
			n, run.Receipts, run.Batches, run.Elapsed.Seconds(), run.PerSecond(), ms(run.Commit.Q(0.5)), ms(run.Commit.Q(0.99)), ms(run.Commit.Max()))
		res.Runs = append(res.Runs, run)
	}
	return res, nil
}

// benchParties are the accounts of a benchmark chain.
type benchParties struct {
	gateway   keys.PrivateKey
	providers []keys.PrivateKey
	consumers []keys.Address
}

const benchChainID = "idlegrid-bench"

func newBenchParties() (benchParties, error) {
	var p benchParties
	var err error
	if p.gateway, err = keys.Generate(); err != nil {
		return p, err
	}
	for range 10 {
		k, err := keys.Generate()
		if err != nil {
			return p, err
		}
		p.providers = append(p.providers, k)
	}
	for range 100 {
		k, err := keys.Generate()
		if err != nil {
			return p, err
		}
		p.consumers = append(p.consumers, k.Public().Address())
	}
	return p, nil
}

func (p benchParties) genesis(batch int) ([]byte, error) {
	params := ledger.DefaultParams()
	params.MaxBatchReceipts = uint32(max(batch, int(params.MaxBatchReceipts)))
	g := ledger.Genesis{Params: params}
	gw := p.gateway.Public()
	g.Accounts = append(g.Accounts, ledger.GenesisAccount{Address: gw.Address(), PubKey: gw, Stake: 1_000_000 * money.Unit, Roles: []string{"gateway"}})
	for _, k := range p.providers {
		g.Accounts = append(g.Accounts, ledger.GenesisAccount{Address: k.Public().Address(), PubKey: k.Public(), Stake: 1_000 * money.Unit, Roles: []string{"provider"}})
	}
	for _, c := range p.consumers {
		g.Accounts = append(g.Accounts, ledger.GenesisAccount{Address: c, Balance: 1_000_000 * money.Unit,
			Approvals: []ledger.GenesisApproval{{Gateway: gw.Address(), Deposit: 1_000_000 * money.Unit}}})
	}
	return json.Marshal(g)
}

// receipts signs n receipts in parallel.
func (p benchParties) receipts(n int) []receipt.Signed {
	out := make([]receipt.Signed, n)
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				prov := p.providers[i%len(p.providers)]
				r := receipt.Receipt{Version: receipt.Version, ChainID: benchChainID, RequestID: fmt.Sprintf("bench-%08d", i),
					Gateway: p.gateway.Public(), Provider: prov.Public(), Consumer: p.consumers[i%len(p.consumers)],
					Model: "llama3.2:1b", ModelDigest: "sha256:74701a8c35f6c8d9a4b91f3f3497643001d63e0c7a84e085bed452548fa88d45",
					PromptTokens: 200 + uint64(i%97), CompletionTokens: 100 + uint64(i%113),
					PricePromptPerMTok: 200_000, PriceCompletionPerMTok: 600_000,
					StartUnixMs: 1_790_000_000_000, EndUnixMs: 1_790_000_001_500}
				r.Amount, _ = receipt.ComputeAmount(r.PromptTokens, r.CompletionTokens, r.PricePromptPerMTok, r.PriceCompletionPerMTok)
				out[i] = receipt.Signed{Receipt: r, ProviderSignature: receipt.SignProvider(prov, &r), GatewaySignature: receipt.SignGateway(p.gateway, &r)}
			}
		}()
	}
	wg.Wait()
	return out
}

func ledgerRun(ctx context.Context, cfg LedgerConfig, n int) (LedgerRun, error) {
	dir, err := os.MkdirTemp("", "idlegrid-bench-ledger-")
	if err != nil {
		return LedgerRun{}, err
	}
	defer os.RemoveAll(dir)
	p, err := newBenchParties()
	if err != nil {
		return LedgerRun{}, err
	}
	appState, err := p.genesis(cfg.BatchSize)
	if err != nil {
		return LedgerRun{}, err
	}
	var homes []string
	if n == 1 {
		homes = []string{filepath.Join(dir, "node0")}
		err = chain.InitSingle(homes[0], benchChainID, appState)
	} else {
		homes, err = chain.InitNetwork(dir, n, benchChainID, appState, chain.NetworkOptions{})
	}
	if err != nil {
		return LedgerRun{}, err
	}
	var vals []*node.Validator
	defer func() {
		for _, v := range vals {
			v.Stop()
		}
	}()
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for _, h := range homes {
		v, err := node.StartValidator(sctx, h, "", "", nil)
		if err != nil {
			return LedgerRun{}, err
		}
		vals = append(vals, v)
	}
	fmt.Fprintf(cfg.Out, "%d validator(s) started; signing %d receipts\n", n, cfg.Receipts)
	rs := p.receipts(cfg.Receipts)

	signer := chainrpc.NewSigner(vals[0].Node.Client(), p.gateway, benchChainID)
	for _, v := range vals[1:] {
		signer.BroadcastAlso(v.Node.Client())
	}
	batches := make(chan []receipt.Signed)
	go func() {
		defer close(batches)
		for lo := 0; lo < len(rs); lo += cfg.BatchSize {
			select {
			case batches <- rs[lo:min(lo+cfg.BatchSize, len(rs))]:
			case <-ctx.Done():
				return
			}
		}
	}()
	var (
		mu        sync.Mutex
		latencies []time.Duration
		settled   int
		firstErr  error
		wg        sync.WaitGroup
	)
	start := time.Now()
	for range cfg.InFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				t0 := time.Now()
				bctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
				out, err := signer.SettleBatch(bctx, b)
				cancel()
				mu.Lock()
				latencies = append(latencies, time.Since(t0))
				settled += len(out.Settled)
				if err == nil && len(out.Rejected) > 0 {
					for id, why := range out.Rejected {
						err = fmt.Errorf("receipt %s rejected: %s", id, why)
						break
					}
				}
				if err != nil && firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return LedgerRun{}, firstErr
	}
	if settled != len(rs) {
		return LedgerRun{}, fmt.Errorf("%d of %d receipts settled", settled, len(rs))
	}
	return LedgerRun{Validators: n, Receipts: settled, Batches: len(latencies), Elapsed: elapsed, Commit: NewDist(latencies)}, nil
}
