package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	abci "github.com/cometbft/cometbft/abci/types"
	"github.com/spf13/cobra"

	"github.com/idlegrid/idlegrid/internal/chain"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/node"
)

// validatorDeps is what the validator commands need from the ledger: the
// application a node runs and the genesis app state. Tests replace them.
type validatorDeps struct {
	// newApp opens the ABCI application whose state lives under home.
	newApp func(home string, log *slog.Logger) (abci.Application, error)
	// appState returns the genesis app state: the --app-state file when
	// one is given, else default parameters with the --fund accounts.
	appState func(file string, fund []string) (json.RawMessage, error)
}

func defaultValidatorDeps() validatorDeps {
	return validatorDeps{
		newApp: func(home string, log *slog.Logger) (abci.Application, error) {
			return chain.OpenApp(filepath.Join(home, "data"), log)
		},
		appState: ledgerAppState,
	}
}

// ledgerAppState builds the ledger genesis: from file (parameters it omits
// take their defaults), or the default parameters; then each --fund
// ADDRESS=AMOUNT adds a funded account. It is validated here, so a bad
// genesis fails at init rather than when the validators start.
func ledgerAppState(file string, fund []string) (json.RawMessage, error) {
	g := ledger.Genesis{Params: ledger.DefaultParams()}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("--app-state: %w", err)
		}
		if g, err = ledger.ParseGenesis(b); err != nil {
			return nil, fmt.Errorf("--app-state %s: %w", file, err)
		}
	}
	for _, f := range fund {
		addr, amount, ok := strings.Cut(f, "=")
		if !ok {
			return nil, fmt.Errorf("--fund %q: want ADDRESS=AMOUNT", f)
		}
		amt, err := money.Parse(amount)
		if err != nil {
			return nil, fmt.Errorf("--fund %q: %w", f, err)
		}
		g.Accounts = append(g.Accounts, ledger.GenesisAccount{Address: keys.Address(addr), Balance: amt})
	}
	if err := g.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(g)
}

func newValidatorCmd(a *app) *cobra.Command {
	return newValidatorCmdWith(a, defaultValidatorDeps())
}

func newValidatorCmdWith(a *app, deps validatorDeps) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "validator",
		Short: "Set up and run ledger validators (CometBFT nodes)",
	}
	cmd.AddCommand(newValidatorInitCmd(a, deps), newValidatorStartCmd(a, deps))
	return cmd
}

// validatorInitArgs are the flags of `idlegrid validator init`.
type validatorInitArgs struct {
	validators   int
	out, chainID string
	appStateFile string
	fund         []string
	network      chain.NetworkOptions
}

func newValidatorInitCmd(a *app, deps validatorDeps) *cobra.Command {
	opts := &validatorInitArgs{}
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Write the homes of a validator network: keys, one genesis, peers wired to each other",
		Long: `Write one CometBFT home per validator under --out (node0, node1, …): its
keys, the shared genesis naming every validator with equal power, and a
config.toml listening on loopback with the other validators as persistent
peers. Start each with ` + "`idlegrid validator start --home DIR/nodeI`" + `.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runValidatorInit(cmd.Context(), a, deps, opts)
		},
	}
	f := cmd.Flags()
	f.IntVar(&opts.validators, "validators", 4, "number of validators (4 tolerates one down)")
	f.StringVar(&opts.out, "out", "validators", "directory to write node0 … nodeN-1 into")
	f.StringVar(&opts.chainID, "chain-id", node.DefaultChainID, "chain id")
	f.StringVar(&opts.appStateFile, "app-state", "", "ledger genesis JSON file (params, accounts with balances, stakes, roles, approvals; see docs/ledger.md); default: default params")
	f.StringArrayVar(&opts.fund, "fund", nil, "ADDRESS=AMOUNT: fund an account at genesis (repeatable)")
	f.IntVar(&opts.network.BasePort, "base-port", 0, "node i gets P2P port base+2i and RPC port base+2i+1 (default: free ports)")
	return cmd
}

// runValidatorInit writes the validators' homes.
func runValidatorInit(_ context.Context, a *app, deps validatorDeps, opts *validatorInitArgs) error {
	appState, err := deps.appState(opts.appStateFile, opts.fund)
	if err != nil {
		return err
	}
	homes, err := chain.InitNetwork(opts.out, opts.validators, opts.chainID, appState, opts.network)
	if err != nil {
		return err
	}
	printHomes(a.stdout, opts.chainID, homes)
	return nil
}

func printHomes(w io.Writer, chainID string, homes []string) {
	fmt.Fprintf(w, "wrote %d validator homes for chain %s:\n", len(homes), chainID)
	for _, h := range homes {
		fmt.Fprintf(w, "  idlegrid validator start --home %s\n", h)
	}
}

// validatorStartArgs are the flags of `idlegrid validator start`.
type validatorStartArgs struct {
	home        string
	metricsAddr string
}

func newValidatorStartCmd(a *app, deps validatorDeps) *cobra.Command {
	opts := &validatorStartArgs{}
	cmd := &cobra.Command{
		Use:   "start",
		Short: "Run one validator until interrupted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runValidatorStart(cmd.Context(), a, deps, opts)
		},
	}
	cmd.Flags().StringVar(&opts.home, "home", "", "the validator's CometBFT home (from validator init); required")
	cmd.Flags().StringVar(&opts.metricsAddr, "metrics-addr", "", "serve CometBFT's Prometheus metrics (block height, rounds, mempool, peers) here, e.g. 127.0.0.1:26660")
	return cmd
}

// runValidatorStart runs the validator of --home until ctx ends.
func runValidatorStart(ctx context.Context, a *app, deps validatorDeps, opts *validatorStartArgs) (err error) {
	if opts.home == "" {
		return errors.New("--home is required")
	}
	app, err := deps.newApp(opts.home, a.log)
	if err != nil {
		return fmt.Errorf("validator application: %w", err)
	}
	defer func() {
		if c, ok := app.(io.Closer); ok {
			err = errors.Join(err, c.Close())
		}
	}()
	n, err := chain.StartNode(ctx, chain.NodeConfig{Home: opts.home, App: app, Logger: a.log, MetricsListenAddr: opts.metricsAddr})
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "validator running from %s, RPC at %s\n", opts.home, n.RPCAddr())
	if opts.metricsAddr != "" {
		fmt.Fprintf(a.stdout, "metrics at http://%s/metrics\n", opts.metricsAddr)
	}
	<-ctx.Done()
	a.log.Info("stopping validator")
	return n.Stop()
}
