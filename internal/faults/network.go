package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/gateway/api/apitypes"
	"github.com/idlegrid/idlegrid/internal/gateway/client"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
)

// Genesis amounts: consumers can pay for far more than a run asks, so no
// receipt falls back on a gateway's stake unless something is wrong.
const (
	consumerBalance = 1_000_000 * money.Unit
	gatewayStake    = 5_000 * money.Unit
	providerStake   = 500 * money.Unit
)

// network is every process of a run and the identities behind them.
type network struct {
	bin, dir, chainID string

	validators []*process
	rpcs       []string // validator i's RPC URL
	sims       []*process
	gateways   []*process
	gwURLs     []string
	gwKeys     []keys.PublicKey
	providers  []*process
	provKeys   []keys.PublicKey
	consumers  []keys.Address
	apiKeys    [][]string // [gateway][consumer]
}

// all lists every process.
func (n *network) all() []*process {
	var ps []*process
	ps = append(ps, n.validators...)
	ps = append(ps, n.sims...)
	ps = append(ps, n.gateways...)
	return append(ps, n.providers...)
}

// ofKind lists the processes of kind k.
func (n *network) ofKind(k Kind) []*process {
	switch k {
	case KindValidator:
		return n.validators
	case KindGateway:
		return n.gateways
	case KindProvider:
		return n.providers
	case KindSim:
		return n.sims
	}
	return nil
}

// stopAll ends every process that still runs.
func (n *network) stopAll() {
	for _, p := range n.all() {
		p.stop()
	}
}

// freeAddr returns a loopback address with a port nothing listens on now.
// Gateways and simulators keep theirs across restarts, so their clients
// (providers, the load) find them again.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// newKey writes a fresh key file and returns its public key.
func newKey(path string) (keys.PublicKey, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return keys.PublicKey{}, err
	}
	k, err := keys.Generate()
	if err != nil {
		return keys.PublicKey{}, err
	}
	if err := keys.Save(path, k); err != nil {
		return keys.PublicKey{}, err
	}
	return k.Public(), nil
}

// setup writes the identities and the genesis, initialises the validator
// network and starts every process: validators, simulators, gateways
// (with an API key per consumer), then providers.
func setup(ctx context.Context, cfg Config) (*network, error) {
	n := &network{bin: cfg.Binary, dir: cfg.Dir, chainID: "idlegrid-faults"}
	logs := filepath.Join(cfg.Dir, "logs")
	if err := os.MkdirAll(logs, 0o700); err != nil {
		return nil, err
	}
	newProc := func(name string, kind Kind, ready string, args ...string) *process {
		return &process{name: name, kind: kind, bin: cfg.Binary, args: args, log: filepath.Join(logs, name+".log"), ready: regexp.MustCompile(ready)}
	}
	g := ledger.Genesis{Params: ledger.DefaultParams()}
	// No epoch emission: every change of balance in the run then comes
	// from a settled receipt, so the books reconcile to the unit.
	g.Params.EpochEmission = 0
	gwDirs := make([]string, cfg.Gateways)
	for i := range cfg.Gateways {
		gwDirs[i] = filepath.Join(cfg.Dir, fmt.Sprintf("gateway%d", i))
		pub, err := newKey(filepath.Join(gwDirs[i], "gateway.key"))
		if err != nil {
			return nil, err
		}
		n.gwKeys = append(n.gwKeys, pub)
		g.Accounts = append(g.Accounts, ledger.GenesisAccount{Address: pub.Address(), PubKey: pub, Stake: gatewayStake, Roles: []string{"gateway"}})
	}
	pvDirs := make([]string, cfg.Providers)
	for i := range cfg.Providers {
		pvDirs[i] = filepath.Join(cfg.Dir, fmt.Sprintf("provider%d", i))
		pub, err := newKey(filepath.Join(pvDirs[i], "provider.key"))
		if err != nil {
			return nil, err
		}
		n.provKeys = append(n.provKeys, pub)
		g.Accounts = append(g.Accounts, ledger.GenesisAccount{Address: pub.Address(), PubKey: pub, Stake: providerStake, Roles: []string{"provider"}})
	}
	for i := range cfg.Consumers {
		pub, err := newKey(filepath.Join(cfg.Dir, "consumers", fmt.Sprintf("consumer%d.key", i)))
		if err != nil {
			return nil, err
		}
		acct := ledger.GenesisAccount{Address: pub.Address(), Balance: consumerBalance}
		// Each gateway gets an equal deposit: money one gateway admits
		// against is money no other can spend.
		for _, gw := range n.gwKeys {
			acct.Approvals = append(acct.Approvals, ledger.GenesisApproval{Gateway: gw.Address(), Deposit: consumerBalance / money.Amount(len(n.gwKeys))})
		}
		n.consumers = append(n.consumers, pub.Address())
		g.Accounts = append(g.Accounts, acct)
	}
	genesis, err := json.Marshal(g)
	if err != nil {
		return nil, err
	}
	appState := filepath.Join(cfg.Dir, "genesis.json")
	if err := os.WriteFile(appState, genesis, 0o600); err != nil {
		return nil, err
	}
	netDir := filepath.Join(cfg.Dir, "validators")
	if out, err := exec.CommandContext(ctx, cfg.Binary, "validator", "init", "--validators", fmt.Sprint(cfg.Validators),
		"--chain-id", n.chainID, "--out", netDir, "--app-state", appState).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("validator init: %w\n%s", err, out)
	}
	for i := range cfg.Validators {
		p := newProc(fmt.Sprintf("validator%d", i), KindValidator, `RPC at (http://\S+)`,
			"validator", "start", "--home", filepath.Join(netDir, fmt.Sprintf("node%d", i)))
		n.validators = append(n.validators, p)
	}
	if err := startAll(ctx, n.validators); err != nil {
		return n, err
	}
	for _, v := range n.validators {
		n.rpcs = append(n.rpcs, v.readyValue())
	}
	if err := waitCaughtUp(ctx, n.rpcs[0], n.rpcs); err != nil {
		return n, err
	}

	simURLs := make([]string, cfg.Providers)
	for i := range cfg.Providers {
		addr, err := freeAddr()
		if err != nil {
			return n, err
		}
		simURLs[i] = "http://" + addr
		n.sims = append(n.sims, newProc(fmt.Sprintf("sim%d", i), KindSim, `Ollama API at (http://\S+)`,
			"sim", "--addr", addr, "--tokens-per-second", fmt.Sprint(cfg.TokensPerSecond)))
	}
	if err := startAll(ctx, n.sims); err != nil {
		return n, err
	}

	for i := range cfg.Gateways {
		addr, err := freeAddr()
		if err != nil {
			return n, err
		}
		n.gwURLs = append(n.gwURLs, "http://"+addr)
		apiKeys := make([]string, len(n.consumers))
		for c, consumer := range n.consumers {
			out, err := exec.CommandContext(ctx, cfg.Binary, "keys", "create", "--data-dir", gwDirs[i], "--account", string(consumer)).Output()
			if err != nil {
				return n, fmt.Errorf("keys create: %w", err)
			}
			apiKeys[c] = strings.TrimSpace(string(out))
		}
		n.apiKeys = append(n.apiKeys, apiKeys)
		// Each gateway queries a different validator first, so one
		// validator's death does not stall every gateway at once.
		rpcs := append(append([]string{}, n.rpcs[i%len(n.rpcs):]...), n.rpcs[:i%len(n.rpcs)]...)
		n.gateways = append(n.gateways, newProc(fmt.Sprintf("gateway%d", i), KindGateway, `listening on (http://\S+) `,
			"gateway", "--addr", addr, "--data-dir", gwDirs[i], "--chain-id", n.chainID,
			"--chain-rpc", strings.Join(rpcs, ","), "--settle-interval", "500ms",
			"--key-rps", "0", "--key-concurrent", "0"))
	}
	if err := startAll(ctx, n.gateways); err != nil {
		return n, err
	}

	for i := range cfg.Providers {
		gw := n.gwURLs[i%len(n.gwURLs)]
		n.providers = append(n.providers, newProc(fmt.Sprintf("provider%d", i), KindProvider, `(serving)`,
			"provide", "--gateway", gw, "--backend", "ollama", "--ollama-url", simURLs[i],
			"--data-dir", pvDirs[i], "--chain-id", n.chainID, "--no-control", "--slots", "4"))
	}
	if err := startAll(ctx, n.providers); err != nil {
		return n, err
	}
	for _, u := range n.gwURLs {
		if err := waitModel(ctx, u, "sim"); err != nil {
			return n, err
		}
	}
	return n, nil
}

func startAll(ctx context.Context, ps []*process) error {
	for _, p := range ps {
		if err := p.start(ctx); err != nil {
			return err
		}
	}
	return nil
}

// waitModel waits until the gateway at base lists model in /v1/models.
func waitModel(ctx context.Context, base, model string) error {
	deadline := time.Now().Add(60 * time.Second)
	api := client.New(base, "")
	for {
		models, err := api.Models(ctx)
		if err == nil && slices.ContainsFunc(models, func(m apitypes.Model) bool { return m.ID == model }) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gateway %s never listed model %q", base, model)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// waitCaughtUp waits until the validator at rpc has left block sync and
// reached the height the others had when it began waiting, so it votes
// again before another validator may be killed.
func waitCaughtUp(ctx context.Context, rpc string, all []string) error {
	c, err := chainrpc.NewHTTPClient(rpc)
	if err != nil {
		return err
	}
	var target int64
	for _, u := range all {
		if u == rpc {
			continue
		}
		if o, err := chainrpc.NewHTTPClient(u); err == nil {
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			if st, err := o.Status(sctx); err == nil {
				target = max(target, st.Height)
			}
			cancel()
		}
	}
	deadline := time.Now().Add(readyTimeout)
	for {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := c.Status(sctx)
		cancel()
		if err == nil && !st.CatchingUp && st.Height >= target {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("validator at %s did not catch up to height %d within %v (last: %+v, %v)", rpc, target, readyTimeout, st, err)
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
