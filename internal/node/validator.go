package node

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"

	"github.com/idlegrid/idlegrid/internal/chain"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
)

// Validator is a running ledger node: CometBFT with the ledger application
// in-process.
type Validator struct {
	Node *chain.Node
	App  *chain.App
}

// StartValidator runs the node whose CometBFT home is home; the ledger state
// lives in home/data/ledger. rpcListen, when set, overrides the RPC listen
// address of the home's config (e.g. "tcp://127.0.0.1:26657").
func StartValidator(ctx context.Context, home, rpcListen, metricsListen string, log *slog.Logger) (*Validator, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	app, err := chain.OpenApp(filepath.Join(home, "data"), log)
	if err != nil {
		return nil, err
	}
	n, err := chain.StartNode(ctx, chain.NodeConfig{Home: home, App: app, Logger: log, RPCListenAddr: rpcListen, MetricsListenAddr: metricsListen})
	if err != nil {
		app.Close()
		return nil, err
	}
	return &Validator{Node: n, App: app}, nil
}

// RPC is the URL of the validator's RPC server.
func (v *Validator) RPC() string { return v.Node.RPCAddr() }

// Stop stops the node, then closes the ledger state.
func (v *Validator) Stop() error {
	return errors.Join(v.Node.Stop(), v.App.Close())
}

// Dev genesis amounts for `idlegrid up`: a consumer with money to spend,
// most of it locked in a deposit for the gateway and the rest free (to
// fund other accounts, e.g. a provider's stake), a gateway and a provider
// staked well above the minimums.
const (
	devConsumerBalance = 1_000_000 * money.Unit
	devConsumerDeposit = 900_000 * money.Unit
	devGatewayBalance  = 10_000 * money.Unit
	devGatewayStake    = 10_000 * money.Unit
	devProviderStake   = 1_000 * money.Unit
	devVerifierBalance = 1_000 * money.Unit
	devVerifierStake   = 1_000 * money.Unit
)

// DevGenesis is the ledger genesis of the embedded network: the dev
// consumer funded, its balance locked in a deposit for the gateway; the gateway, the local
// provider and the dev verifier registered and staked (the verifier also
// funded, to pay for its canaries). Epochs are short (blocks come only with
// settlements) so that a local run sees rewards.
func DevGenesis(consumer, gateway, provider, verifier keys.PublicKey) ledger.Genesis {
	params := ledger.DefaultParams()
	params.EpochBlocks, params.VestingBlocks = 20, 200
	return ledger.Genesis{
		Params: params,
		Accounts: []ledger.GenesisAccount{
			{Address: consumer.Address(), PubKey: consumer, Balance: devConsumerBalance,
				Approvals: []ledger.GenesisApproval{{Gateway: gateway.Address(), Deposit: devConsumerDeposit}}},
			{Address: gateway.Address(), PubKey: gateway, Balance: devGatewayBalance, Stake: devGatewayStake,
				Roles: []string{"gateway"}, Info: "idlegrid up gateway"},
			{Address: provider.Address(), PubKey: provider, Stake: devProviderStake,
				Roles: []string{"provider"}, Info: "idlegrid up provider"},
			{Address: verifier.Address(), PubKey: verifier, Balance: devVerifierBalance, Stake: devVerifierStake,
				Roles: []string{"verifier"}, Info: "idlegrid up verifier",
				Approvals: []ledger.GenesisApproval{{Gateway: gateway.Address(), Deposit: devVerifierBalance}}},
		},
	}
}

// initDevChain prepares the single-validator home for `up` (kept as is when
// it exists).
func initDevChain(home, chainID string, g ledger.Genesis) error {
	appState, err := json.Marshal(g)
	if err != nil {
		return err
	}
	return chain.InitSingle(home, chainID, appState)
}
