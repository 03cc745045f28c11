package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/gateway"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/node"
	"github.com/idlegrid/idlegrid/internal/verify"
)

// gatewayArgs are the flags of `idlegrid gateway`: most set the gateway's
// configuration directly; the rest are checked by runGateway.
type gatewayArgs struct {
	cfg            node.GatewayConfig
	plantKeyFile   string
	keylessFrom    []string
	keylessAccount string
}

func newGatewayCmd(a *app) *cobra.Command {
	opts := &gatewayArgs{}
	cfg := &opts.cfg
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Run a gateway: the consumer APIs and the endpoint providers dial",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runGateway(cmd.Context(), a, opts)
		},
	}
	f := cmd.Flags()
	addGatewayFlags(f, gatewayFlags{addr: &cfg.Addr, dataDir: &cfg.DataDir, chainID: &cfg.ChainID, receiptSync: &cfg.ReceiptSync, gateway: &cfg.Gateway})
	f.StringVar(&cfg.DatabaseURL, "database-url", "", "PostgreSQL URL (postgres://…) to share API keys, receipts and reservations with other gateways instead of DATA-DIR's SQLite file; requests for a model no provider here serves go to a peer gateway that has one (prefer IDLEGRID_DATABASE_URL: a password in a flag shows in the process list)")
	f.StringVar(&cfg.PeerURL, "peer-url", "", "this gateway's base URL as peer gateways reach it (default: the listening address); with --database-url")
	f.StringSliceVar(&cfg.ChainRPC, "chain-rpc", nil, "validator RPC URLs of the ledger, comma-separated (e.g. http://127.0.0.1:26657); reads go to the first that answers, transactions to the first that can be reached, and all receive each transaction; without any, requests are not funds-checked, receipts are not settled and every provider that signs the handshake is served")
	f.IntVar(&cfg.Gateway.ProbationCases, "probation-cases", gateway.DefaultProbationCases, "with --chain-rpc, a provider is on probation until it has passed this many cases on the ledger (and while a failed case is in the conviction window); -1: no probation")
	f.Float64Var(&cfg.Gateway.ProbationShare, "probation-share", gateway.DefaultProbationShare, "the most of a model's requests a provider on probation gets while providers off probation have free slots")
	f.BoolVar(&cfg.Gateway.AllowUnregisteredProviders, "allow-unregistered-providers", false, "with --chain-rpc, also serve providers that are not registered and staked on the ledger (jailed ones never): only for a closed deployment of trusted providers; by default the handshake refuses them")
	f.DurationVar(&cfg.Gateway.QueueTimeout, "queue-timeout", 30*time.Second, "how long a request waits for a busy provider")
	f.IntVar(&cfg.Gateway.MaxQueued, "max-queued", 1024, "requests that may wait at once before 429")
	f.StringVar(&cfg.TLSCert, "tls-cert", "", "serve HTTPS with this certificate (PEM; with --tls-key)")
	f.StringVar(&cfg.TLSKey, "tls-key", "", "the certificate's private key (PEM)")
	f.StringSliceVar(&cfg.TLSDomains, "tls-domain", nil, "serve HTTPS with Let's Encrypt certificates for these domains (listen on :443; cached in DATA-DIR/autocert)")
	f.DurationVar(&cfg.Gateway.JobTimeout, "job-timeout", 10*time.Minute, "longest a request may take, failovers included")
	f.DurationVar(&cfg.Gateway.FirstTokenTimeout, "first-token-timeout", 30*time.Second, "a streamed job without its first token this long goes to another provider")
	f.DurationVar(&cfg.Gateway.TokenTimeout, "token-timeout", 30*time.Second, "a streamed job silent this long mid-answer is continued by another provider")
	f.DurationVar(&cfg.Gateway.ConsumerWriteTimeout, "consumer-write-timeout", gateway.DefaultConsumerWriteTimeout, "a consumer that takes no bytes of its answer this long is cut; its job is cancelled and billed to the last checkpoint")
	f.IntVar(&cfg.Gateway.MaxAttempts, "max-attempts", 4, "providers a request may try")
	f.IntVar(&cfg.Gateway.BreakerThreshold, "breaker-threshold", 3, "consecutive failures that take a provider out of rotation")
	f.DurationVar(&cfg.Gateway.BreakerCooldown, "breaker-cooldown", 10*time.Second, "how long a failing provider stays out before one trial request")
	f.Float64Var(&cfg.Limits.KeyRate, "key-rps", 20, "requests per second per API key (0: no limit)")
	f.IntVar(&cfg.Limits.KeyBurst, "key-burst", 40, "burst of requests per API key")
	f.IntVar(&cfg.Limits.KeyConcurrent, "key-concurrent", 64, "requests in flight per API key (0: no limit)")
	f.Float64Var(&cfg.Limits.IPRate, "ip-rps", 50, "requests per second per client address, loopback exempt (0: no limit)")
	f.IntVar(&cfg.Limits.IPBurst, "ip-burst", 100, "burst of requests per client address")
	f.IntVar(&cfg.Limits.IPConcurrent, "ip-concurrent", 128, "requests in flight per client address (0: no limit)")
	f.Uint32Var(&cfg.Gateway.FeeBps, "fee-bps", 0, "the gateway's fee in basis points of the consumer price, added on top of providers' price floors (the ledger's gateway_fee_bps + protocol_fee_bps lets providers keep their floors)")
	f.Float64Var(&cfg.Gateway.Samples.Share, "sample-share", 0.01, "share of served responses sampled for registered verifiers (0: none); a sample is its receipt (hashes and counts) unless --sample-text")
	f.BoolVar(&cfg.Gateway.Samples.ShareText, "sample-text", false, "also give verifiers the sampled requests and answers, so they can re-score them (consumers' text leaves the gateway: see SECURITY.md)")
	f.DurationVar(&cfg.Plant.Every, "plant-every", 0, "plant a known-good or known-bad sample this often to test the verifiers (needs --sample-text, --chain-rpc and --plant-key-file; labelled by the built-in simulator)")
	f.StringVar(&opts.plantKeyFile, "plant-key-file", "", "key file of a provider registered on the ledger that signs planted samples")
	deprecatedAlias(f, "share-samples", "sample-text")
	deprecatedAlias(f, "plant-key", "plant-key-file")
	f.StringSliceVar(&opts.keylessFrom, "keyless-from", nil, "serve requests without an API key from these client addresses or CIDR prefixes (comma-separated, e.g. 127.0.0.1/32,10.0.0.0/8; the connection's address, not a header), billed to --keyless-account; by default every request needs a key")
	f.StringVar(&opts.keylessAccount, "keyless-account", "", "ledger account billed for keyless requests (with --keyless-from)")
	return cmd
}

// runGateway serves until ctx ends, then drains in-flight requests for up
// to 30 s.
func runGateway(ctx context.Context, a *app, opts *gatewayArgs) error {
	cfg := opts.cfg
	cfg.Logger, cfg.Version = a.log, version
	if err := plantSetup(&cfg, opts.plantKeyFile); err != nil {
		return err
	}
	if err := keylessSetup(&cfg.Gateway, opts.keylessFrom, opts.keylessAccount); err != nil {
		return err
	}
	g, err := node.StartGateway(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "gateway %s listening on %s (OpenAI API at %s/v1)\n", g.Key.Public(), g.URL(), g.URL())
	if len(cfg.Gateway.Keyless) > 0 {
		fmt.Fprintf(a.stdout, "requests without an API key from %v are billed to %s\n", cfg.Gateway.Keyless, cfg.Gateway.KeylessAccount)
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return g.Shutdown(sctx)
}

// keylessSetup reads --keyless-from and --keyless-account: both or
// neither.
func keylessSetup(cfg *gateway.Config, from []string, account string) error {
	prefixes, err := gateway.ParsePrefixes(from)
	if err != nil {
		return fmt.Errorf("--keyless-from: %w", err)
	}
	if len(prefixes) == 0 {
		if account != "" {
			return errors.New("--keyless-account needs --keyless-from: the addresses whose requests it pays for")
		}
		return nil
	}
	if err := keys.Address(account).Validate(); err != nil {
		return fmt.Errorf("--keyless-from needs --keyless-account, the account keyless requests bill: %w", err)
	}
	cfg.Keyless, cfg.KeylessAccount = prefixes, keys.Address(account)
	return nil
}

// plantSetup prepares the planter: the built-in simulator is the only
// reference with log-probabilities to label samples with.
func plantSetup(cfg *node.GatewayConfig, keyFile string) error {
	if cfg.Plant.Every <= 0 {
		return nil
	}
	if keyFile == "" || !cfg.Gateway.Samples.ShareText || len(cfg.ChainRPC) == 0 {
		return errors.New("--plant-every needs --plant-key-file, --sample-text and --chain-rpc")
	}
	key, err := keys.Load(keyFile)
	if err != nil {
		return fmt.Errorf("plant key: %w", err)
	}
	s, err := sim.New(sim.DefaultConfig())
	if err != nil {
		return err
	}
	cfg.Plant.Reference, cfg.Plant.Scorer, cfg.Plant.Provider = s, verify.SimScorer{Sim: s}, key
	return nil
}
