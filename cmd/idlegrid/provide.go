package main

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/node"
	"github.com/idlegrid/idlegrid/internal/provider"
)

func newProvideCmd(a *app) *cobra.Command {
	var (
		cfg                 node.ProviderConfig
		backendKind, ollama string
		dataDir             string
		priceIn, priceOut   string
		gatewayKey          string
	)
	cmd := &cobra.Command{
		Use:   "provide --gateway URL",
		Short: "Sell this machine's idle model capacity through a gateway",
		Long: `Run a provider agent: it dials out to the gateway (no open port needed),
advertises the models of the local Ollama with their digests, serves jobs and
signs a receipt for each. The key is created on first run in the data
directory (mode 0600).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.Gateway == "" {
				return fmt.Errorf("--gateway is required, e.g. --gateway http://127.0.0.1:8420")
			}
			var err error
			if cfg.PricePrompt, err = money.Parse(priceIn); err != nil {
				return fmt.Errorf("--price-in: %w", err)
			}
			if cfg.PriceCompletion, err = money.Parse(priceOut); err != nil {
				return fmt.Errorf("--price-out: %w", err)
			}
			if gatewayKey != "" {
				if cfg.ExpectGateway, err = keys.ParsePublicKey(gatewayKey); err != nil {
					return fmt.Errorf("--gateway-key: %w", err)
				}
			}
			ctx := cmd.Context()
			b, err := node.OpenBackend(ctx, backendKind, ollama, a.log)
			if err != nil {
				return err
			}
			defer b.Close()
			cfg.Backend, cfg.Logger, cfg.Version = b, a.log, version
			if cfg.KeyFile == "" {
				cfg.KeyFile = filepath.Join(dataDir, "provider.key")
			}
			p, err := node.StartProvider(cfg)
			if err != nil {
				return err
			}
			if p.Created {
				fmt.Fprintf(a.stdout, "created provider key %s\n", cfg.KeyFile)
			}
			fmt.Fprintf(a.stdout, "provider %s (address %s) serving %s via %s\n", p.Key, p.Key.Address(), b.Description, cfg.Gateway)
			select {
			case <-ctx.Done():
			case <-p.Done():
			}
			return p.Stop()
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Gateway, "gateway", "", "gateway base URL, e.g. https://gateway.example:8420")
	f.StringVar(&backendKind, "backend", node.BackendOllama, "model backend: ollama, sim or auto")
	f.StringVar(&ollama, "ollama-url", node.DefaultOllamaURL(), "Ollama base URL (default from OLLAMA_HOST)")
	f.StringSliceVar(&cfg.Models, "models", nil, "only offer these models (default: all local models)")
	f.IntVar(&cfg.Slots, "slots", 4, "jobs to run at once")
	f.StringVar(&dataDir, "data-dir", defaultDataDir(), "directory for the provider key")
	f.StringVar(&cfg.KeyFile, "key-file", "", "provider key file (default DATA-DIR/provider.key)")
	f.StringVar(&priceIn, "price-in", provider.DefaultPricePrompt.String(), "price floor per million prompt tokens, in tokens")
	f.StringVar(&cfg.ExpectChainID, "chain-id", "", "refuse a gateway on another chain (default: accept any)")
	f.StringVar(&gatewayKey, "gateway-key", "", "refuse a gateway with another key, hex (default: accept any)")
	f.StringVar(&priceOut, "price-out", provider.DefaultPriceCompletion.String(), "price floor per million completion tokens, in tokens")
	return cmd
}
