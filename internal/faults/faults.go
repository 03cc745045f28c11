// Package faults is the process-level fault test: it runs a whole idlegrid
// network as separate processes of the real binary — a four-validator
// chain, gateways, provider agents and the simulators behind them — sends
// streaming and non-streaming requests through it, SIGKILLs and restarts
// processes of every kind while the load runs, and then checks from the
// ledger that nothing was lost or billed twice: every answered request is
// billed by settled receipts (in segments when a provider died mid-answer:
// its last checkpoint, then the continuation), no token twice, the
// accounts moved exactly what the settled
// receipts say, the validators agree on the app hash and `idlegrid audit`
// replays the chain cleanly.
//
// The same run serves `go test -run Chaos` (a short one) and
// `idlegrid bench chaos --processes --duration 10m` (a long one).
package faults

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/money"
)

// Config sets up a run.
type Config struct {
	// Binary is the idlegrid executable every process runs.
	Binary string
	// Dir holds the processes' homes, data and logs (logs/NAME.log).
	Dir string
	// Duration is how long the load runs; faults are injected meanwhile.
	Duration time.Duration
	// Validators, Gateways, Providers, Consumers: how many of each. Each
	// provider has its own simulator process and serves gateway i mod
	// Gateways.
	Validators, Gateways, Providers, Consumers int
	// Clients is how many requests are in flight at once.
	Clients int
	// MaxTokens bounds each request's max_tokens (8 + a random part of it).
	MaxTokens int
	// TokensPerSecond is the simulators' generation speed: slow enough
	// that kills land mid-answer.
	TokensPerSecond int
	// FaultEvery is the mean interval between kills; Downtime the mean
	// time a killed process stays down before its restart.
	FaultEvery, Downtime time.Duration
	// DrainTimeout bounds the wait for the gateways to settle every stored
	// receipt once the load has stopped.
	DrainTimeout time.Duration
	// Seed makes the choice of requests and victims repeatable.
	Seed uint64
	// Out receives progress lines; nil for none.
	Out io.Writer
}

// DefaultConfig is a short run: a minute of load, a kill every 4 s.
func DefaultConfig() Config {
	return Config{
		Duration:        time.Minute,
		Validators:      4,
		Gateways:        2,
		Providers:       4,
		Consumers:       2,
		Clients:         8,
		MaxTokens:       64,
		TokensPerSecond: 50,
		FaultEvery:      4 * time.Second,
		Downtime:        2 * time.Second,
		DrainTimeout:    2 * time.Minute,
		Seed:            uint64(time.Now().UnixNano()),
	}
}

// Result is what a run did and found.
type Result struct {
	Duration time.Duration
	// Faults counts kills per kind; MaxDown is the longest a killed
	// process took to serve again.
	Faults  map[Kind]int
	MaxDown time.Duration
	// Sent, Completed and Failed count requests; FailedBy counts failures
	// by kind of error, FailedExample holds the first failure of each kind.
	Sent, Completed, Failed int
	FailedBy                map[string]int
	FailedExample           map[string]string
	// Receipts is how many receipts settled, Continued how many of them
	// finished an answer another provider began (request id "…-cN").
	// Segmented counts answers billed by more than one receipt: a provider
	// that died mid-answer is paid by its last checkpoint, under the
	// request's own id, and the provider that continued by its "-cN" one.
	Receipts, Continued, Segmented int
	// TokensDelivered is the completion tokens of completed answers as the
	// clients counted them, TokensBilled those their settled receipts bill.
	TokensDelivered, TokensBilled uint64
	// BilledFailed counts failed requests that were nonetheless billed:
	// the gateway stored the receipt for the delivered answer before it
	// died or before the consumer read the end. UnbilledLength counts
	// completed answers with no receipt: the provider died after sending
	// the last token max_tokens allowed and before signing, so nothing is
	// billed (see gateway failover).
	BilledFailed, UnbilledLength int
	// Paid is what consumers paid in total, Fees what of it went to the
	// treasury and the gateways.
	Paid, Fees money.Amount
	// Height and AppHash are where the validators agreed at the end.
	Height  int64
	AppHash string
	// Problems lists every failed check; a good run has none.
	Problems []string
}

// OK reports whether every check passed.
func (r *Result) OK() bool { return len(r.Problems) == 0 }

// Summary prints the run's figures and its problems.
func (r *Result) Summary() string {
	var b strings.Builder
	var kinds []string
	total := 0
	for _, k := range Kinds {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, r.Faults[k]))
		total += r.Faults[k]
	}
	fmt.Fprintf(&b, "faults injected: %d SIGKILLs (%s), longest down %.1fs\n", total, strings.Join(kinds, ", "), r.MaxDown.Seconds())
	fmt.Fprintf(&b, "requests: %d sent, %d completed, %d failed", r.Sent, r.Completed, r.Failed)
	if len(r.FailedBy) > 0 {
		var why []string
		for k, v := range r.FailedBy {
			why = append(why, fmt.Sprintf("%s %d", k, v))
		}
		sort.Strings(why)
		fmt.Fprintf(&b, " (%s)", strings.Join(why, ", "))
		for _, k := range slices.Sorted(maps.Keys(r.FailedExample)) {
			fmt.Fprintf(&b, "\n  first %s: %s", k, r.FailedExample[k])
		}
	}
	fmt.Fprintf(&b, "\nreceipts settled: %d (%d continuations; %d answers billed in segments), %d for failed requests, %d completed answers unbilled at max_tokens\n",
		r.Receipts, r.Continued, r.Segmented, r.BilledFailed, r.UnbilledLength)
	fmt.Fprintf(&b, "completed answers: %d tokens delivered, %d billed\n", r.TokensDelivered, r.TokensBilled)
	fmt.Fprintf(&b, "consumers paid %s, of which fees %s; validators agree at height %d, app hash %s\n", r.Paid, r.Fees, r.Height, r.AppHash)
	if r.OK() {
		fmt.Fprintf(&b, "all checks passed in %s", r.Duration.Round(time.Second))
	} else {
		fmt.Fprintf(&b, "%d PROBLEMS:", len(r.Problems))
		for _, p := range r.Problems {
			fmt.Fprintf(&b, "\n  %s", p)
		}
	}
	return b.String()
}

// Run sets the network up, runs the load and the faults for cfg.Duration,
// drains settlement and checks the books. An error means the run could not
// be carried out (a process would not start); failed checks are in
// Result.Problems.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Binary == "" || cfg.Dir == "" {
		return nil, errors.New("faults: Binary and Dir are required")
	}
	if cfg.Validators < 4 || cfg.Gateways < 1 || cfg.Providers < 1 || cfg.Consumers < 1 || cfg.Clients < 1 || cfg.MaxTokens < 1 {
		return nil, fmt.Errorf("faults: need at least 4 validators (one may be down) and one of everything else: %+v", cfg)
	}
	if cfg.FaultEvery <= 0 || cfg.Downtime <= 0 {
		return nil, errors.New("faults: FaultEvery and Downtime must be positive")
	}
	out := cfg.Out
	if out == nil {
		out = io.Discard
	}
	start := time.Now()
	fmt.Fprintf(out, "starting %d validators, %d simulators, %d gateways, %d providers (logs in %s)\n",
		cfg.Validators, cfg.Providers, cfg.Gateways, cfg.Providers, cfg.Dir)
	n, err := setup(ctx, cfg)
	if n != nil {
		defer n.stopAll()
	}
	if err != nil {
		return nil, fmt.Errorf("faults: setup: %w", err)
	}
	rpc, err := chainrpc.NewHTTPClient(n.rpcs[0])
	if err != nil {
		return nil, err
	}
	l := chainrpc.StateReader{Client: rpc}
	before, err := takeSnapshot(ctx, l, n)
	if err != nil {
		return nil, fmt.Errorf("faults: %w", err)
	}

	fmt.Fprintf(out, "load for %v, a SIGKILL every ~%v\n", cfg.Duration, cfg.FaultEvery)
	began := time.Now()
	lctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	type injected struct {
		faults []fault
		err    error
	}
	injc := make(chan injected, 1)
	go func() {
		f, err := inject(lctx, cfg, n, began, out)
		injc <- injected{f, err}
	}()
	outcomes := load(lctx, cfg, n)
	inj := <-injc
	if inj.err != nil {
		return nil, fmt.Errorf("faults: %w", inj.err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res := &Result{Faults: map[Kind]int{}, FailedBy: map[string]int{}, FailedExample: map[string]string{}}
	for _, f := range inj.faults {
		res.Faults[f.kind]++
		res.MaxDown = max(res.MaxDown, f.down)
	}
	fmt.Fprintf(out, "load stopped after %.1fs: %d requests; draining settlement\n", time.Since(began).Seconds(), len(outcomes))
	for _, p := range n.all() {
		if !p.running() {
			res.Problems = append(res.Problems, fmt.Sprintf("%s is not running at the end (log: %s)", p.name, p.log))
		}
	}
	res.Problems = append(res.Problems, drain(ctx, cfg, n)...)
	if err := checkBooks(ctx, n, l, before, outcomes, res); err != nil {
		return nil, fmt.Errorf("faults: %w", err)
	}
	res.Problems = append(res.Problems, checkChain(ctx, n, res)...)
	res.Duration = time.Since(start)
	return res, nil
}

// TempDir makes a directory for a run under the system's temporary
// directory.
func TempDir() (string, error) { return os.MkdirTemp("", "idlegrid-faults-") }
