package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/idlegrid/idlegrid/internal/chain"
	"github.com/idlegrid/idlegrid/internal/gateway"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/link"
	"github.com/idlegrid/idlegrid/internal/store"
)

// UpConfig configures `idlegrid up`.
type UpConfig struct {
	Addr      string
	DataDir   string
	ChainID   string
	Backend   string // auto, ollama, sim
	OllamaURL string
	// DevAPIKey fixes the dev API key (IDLEGRID_DEV_API_KEY); empty: one
	// is created on first start and printed once.
	DevAPIKey string
	Slots     int
	// ReceiptSync: see GatewayConfig.
	ReceiptSync string
	// ChainRPCAddr is where the validator serves its RPC (`idlegrid ledger
	// --rpc`); empty picks a free loopback port.
	ChainRPCAddr string
	// BackendOverride, when set, is used instead of resolving Backend
	// (tests pass a simulator they control; the network closes it).
	BackendOverride *LocalBackend
	Link            link.Options
	Gateway         gateway.Config
	// EditParams, when set, adjusts the dev chain's genesis parameters
	// (tests); it applies only when the chain is created.
	EditParams func(*ledger.Params)
	Version    string
	Logger     *slog.Logger
}

// Network is everything `up` runs.
type Network struct {
	Validator *Validator
	Gateway   *Gateway
	Provider  *Provider
	Backend   *LocalBackend
	// Account is the dev consumer account the API key bills.
	Account keys.Address
	// APIKey is the dev key when it was created or fixed by this start.
	APIKey string
}

// StartUp starts the embedded network: a single-validator ledger, the
// gateway settling on it, a local provider (Ollama or the simulator) and the
// funded dev account with its API key.
func StartUp(ctx context.Context, cfg UpConfig) (*Network, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ChainID == "" {
		cfg.ChainID = DefaultChainID
	}
	n := &Network{}
	fail := func(err error) (*Network, error) {
		n.Shutdown(context.Background())
		return nil, err
	}
	var ids [3]keys.PrivateKey
	for i, name := range []string{"dev-account.key", "gateway.key", "provider.key"} {
		k, _, err := keys.LoadOrCreate(filepath.Join(cfg.DataDir, name))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		ids[i] = k
	}
	dev, gwKey, provKey := ids[0], ids[1], ids[2]
	n.Account = dev.Public().Address()
	home := filepath.Join(cfg.DataDir, "chain")
	genesis := DevGenesis(dev.Public(), gwKey.Public(), provKey.Public())
	if cfg.EditParams != nil {
		cfg.EditParams(&genesis.Params)
	}
	if err := initDevChain(home, cfg.ChainID, genesis); err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	rpc := "tcp://127.0.0.1:0"
	if cfg.ChainRPCAddr != "" {
		rpc = "tcp://" + strings.TrimPrefix(strings.TrimPrefix(cfg.ChainRPCAddr, "tcp://"), "http://")
	}
	v, err := StartValidator(ctx, home, rpc, cfg.Logger.With("role", "validator"))
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	n.Validator = v
	gcfg := cfg.Gateway
	gcfg.Ledger = chain.NewSigner(v.Node.Client(), gwKey, cfg.ChainID)
	gw, err := StartGateway(ctx, GatewayConfig{Addr: cfg.Addr, DataDir: cfg.DataDir, ChainID: cfg.ChainID, Link: cfg.Link, ReceiptSync: cfg.ReceiptSync,
		Gateway: gcfg, Version: cfg.Version, Logger: cfg.Logger.With("role", "gateway")})
	if err != nil {
		return fail(err)
	}
	n.Gateway = gw
	if n.APIKey, err = devAPIKey(ctx, gw.Store, cfg.DevAPIKey, n.Account); err != nil {
		return fail(err)
	}
	n.Backend = cfg.BackendOverride
	if n.Backend == nil {
		if n.Backend, err = OpenBackend(ctx, cfg.Backend, cfg.OllamaURL, cfg.Logger); err != nil {
			return fail(err)
		}
	}
	n.Provider, err = StartProvider(ProviderConfig{Gateway: gw.URL(), KeyFile: filepath.Join(cfg.DataDir, "provider.key"),
		Backend: n.Backend, Slots: cfg.Slots, Link: cfg.Link, Version: cfg.Version, Logger: cfg.Logger.With("role", "provider")})
	if err != nil {
		return fail(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := n.Provider.WaitConnected(wctx); err != nil {
		return fail(err)
	}
	return n, nil
}

// devAPIKey makes sure the dev account has an API key: the fixed one when
// given, a new one on first start, otherwise none is created (it was shown
// at its creation and only its hash is stored).
func devAPIKey(ctx context.Context, st *store.Store, fixed string, account keys.Address) (string, error) {
	if fixed != "" {
		if _, err := st.EnsureAPIKey(ctx, fixed, "dev", account); err != nil {
			return "", fmt.Errorf("dev API key: %w", err)
		}
		return fixed, nil
	}
	existing, err := st.ListAPIKeys(ctx)
	if err != nil {
		return "", err
	}
	for _, k := range existing {
		if k.Account == account && k.RevokedAt.IsZero() {
			return "", nil
		}
	}
	secret, _, err := st.CreateAPIKey(ctx, "dev", account)
	return secret, err
}

// Shutdown stops the network: consumers' in-flight requests get until ctx
// ends to finish, then the provider and backend stop.
func (n *Network) Shutdown(ctx context.Context) error {
	var errs []error
	if n.Gateway != nil {
		errs = append(errs, n.Gateway.Drain(ctx))
	}
	// The provider goes before the hub closes, so it does not see a lost
	// gateway and try to reconnect.
	if n.Provider != nil {
		errs = append(errs, n.Provider.Stop())
	}
	if n.Gateway != nil {
		errs = append(errs, n.Gateway.Close())
	}
	if n.Backend != nil {
		n.Backend.Close()
	}
	if n.Validator != nil {
		errs = append(errs, n.Validator.Stop())
	}
	return errors.Join(errs...)
}

// PrintBanner tells the person who ran `up` how to use the network.
func (n *Network) PrintBanner(w io.Writer, dataDir string) {
	url := n.Gateway.URL()
	fmt.Fprintf(w, "\nidlegrid is up.\n\n")
	fmt.Fprintf(w, "  OpenAI API base URL:  %s/v1\n", url)
	fmt.Fprintf(w, "  Ollama API base URL:  %s\n", url)
	if n.APIKey != "" {
		fmt.Fprintf(w, "  API key:              %s\n", n.APIKey)
	} else {
		fmt.Fprintf(w, "  API key:              created on first start (shown once); make another with\n")
		fmt.Fprintf(w, "                        idlegrid keys create --data-dir %s\n", dataDir)
	}
	fmt.Fprintf(w, "  Dev account:          %s (funded on the local ledger)\n", n.Account)
	fmt.Fprintf(w, "  Ledger RPC:           %s (idlegrid ledger balance --rpc %s)\n", n.Validator.RPC(), n.Validator.RPC())
	fmt.Fprintf(w, "  Provider:             %s, serving %s\n", n.Provider.Key, n.Backend.Description)
	fmt.Fprintf(w, "  Data directory:       %s\n\n", dataDir)
	fmt.Fprintf(w, "Try:\n  curl %s/v1/chat/completions -H 'Authorization: Bearer <API key>' \\\n", url)
	fmt.Fprintf(w, "    -H 'Content-Type: application/json' -d '{\"model\":\"<model from /v1/models>\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}'\n\n")
	fmt.Fprintf(w, "Press Ctrl-C to stop.\n")
}
