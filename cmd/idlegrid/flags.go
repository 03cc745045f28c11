package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/idlegrid/idlegrid/internal/gateway"
	"github.com/idlegrid/idlegrid/internal/node"
	"github.com/idlegrid/idlegrid/internal/store"
)

// The CLI's names for the same things, everywhere:
//
//	--chain-rpc URL     a validator RPC this command talks to
//	--X-addr HOST:PORT  an address this process listens on (--addr,
//	                    --chain-rpc-addr, --control-addr, --metrics-addr)
//	--key-file FILE     the key file this command signs with
//	--sample-*          the gateway's sample feed (--sample-share,
//	                    --sample-text)
//
// Names a command used before them stay for one release as hidden,
// deprecated aliases (deprecatedAlias). The flags two commands share are
// added by one function in this file, so they cannot drift apart.

// defaultRPC is where `idlegrid up` serves its validator's RPC.
const defaultRPC = "http://127.0.0.1:26657"

// defaultDataDir is ~/.idlegrid, or ./.idlegrid when there is no home.
func defaultDataDir() string {
	home, err := os.UserHomeDir()
	if err != nil {
		return ".idlegrid"
	}
	return filepath.Join(home, ".idlegrid")
}

// deprecatedAlias keeps old as a hidden name of the flag called name: it
// sets the same value and warns that it is deprecated when used.
func deprecatedAlias(fs *pflag.FlagSet, old, name string) {
	f := fs.Lookup(name)
	if f == nil {
		panic("deprecatedAlias: no flag --" + name)
	}
	fs.AddFlag(&pflag.Flag{Name: old, Usage: f.Usage, Value: f.Value, DefValue: f.DefValue, NoOptDefVal: f.NoOptDefVal,
		Hidden: true, Deprecated: "use --" + name})
}

// changedFlag reports whether the user set the flag called name or any of
// its aliases.
func changedFlag(fs *pflag.FlagSet, names ...string) bool {
	for _, n := range names {
		if fs.Changed(n) {
			return true
		}
	}
	return false
}

// gatewayFlags are the settings `up` and `gateway` share, bound by
// addGatewayFlags to one gateway's configuration.
type gatewayFlags struct {
	addr, dataDir, chainID, receiptSync *string
	gateway                             *gateway.Config
}

// addGatewayFlags adds the flags of a gateway that `up` and `gateway` both
// take, with the same names, defaults and meaning.
func addGatewayFlags(f *pflag.FlagSet, t gatewayFlags) {
	f.StringVar(t.addr, "addr", "127.0.0.1:8420", "address the gateway listens on (loopback by default)")
	f.StringVar(t.dataDir, "data-dir", defaultDataDir(), "directory for keys and the gateway database")
	f.StringVar(t.chainID, "chain-id", node.DefaultChainID, "chain id receipts are signed for")
	f.StringVar(t.receiptSync, "receipt-sync", "disk", "disk: fsync every receipt before the answer ends; process: survive a killed gateway, not a power cut (faster)")
	// up's defaults come from node.DevUpConfig; a gateway's are the same.
	d := node.DevUpConfig().Gateway
	f.IntVar(&t.gateway.DefaultMaxTokens, "default-max-tokens", d.DefaultMaxTokens, "max tokens for requests that set none")
	f.Int64Var(&t.gateway.MaxBodyBytes, "max-body-bytes", d.MaxBodyBytes, "largest accepted request body")
	f.IntVar(&t.gateway.SettleBatchSize, "settle-batch", d.SettleBatchSize, "receipts per settlement batch")
	f.DurationVar(&t.gateway.SettleInterval, "settle-interval", d.SettleInterval, "a partial settlement batch goes out this often")
	f.DurationVar(&t.gateway.KeepSettled, "keep-settled", d.KeepSettled, "delete receipts from the gateway's store this long after the ledger settled them (the ledger keeps them all); 0 keeps them forever")
	f.Int64Var(&t.gateway.ResponseMemory, "response-memory", gateway.DefaultResponseMemory, "bytes of /v1/responses conversations kept in memory for previous_response_id (-1: keep none)")
	f.DurationVar(&t.gateway.ResponseTTL, "response-ttl", gateway.DefaultResponseTTL, "how long a /v1/responses conversation is kept for previous_response_id")
}

// gatewayStoreFlags are how a command finds the store a gateway uses: the
// shared PostgreSQL database when --database-url (or
// IDLEGRID_DATABASE_URL) is set, as `idlegrid gateway` does, else
// DATA-DIR/gateway.db.
type gatewayStoreFlags struct {
	dataDir     string
	databaseURL string
}

func (g *gatewayStoreFlags) add(cmd *cobra.Command, dataDirUsage string) {
	pf := cmd.PersistentFlags()
	pf.StringVar(&g.dataDir, "data-dir", defaultDataDir(), dataDirUsage)
	pf.StringVar(&g.databaseURL, "database-url", "", "the gateways' shared PostgreSQL database (postgres://…), as given to idlegrid gateway --database-url; prefer IDLEGRID_DATABASE_URL (a password in a flag shows in the process list)")
}

// open opens the gateway's store. where names it for messages (without a
// password). With mustExist, a missing SQLite file is an error instead of
// being created.
func (g *gatewayStoreFlags) open(ctx context.Context, mustExist bool) (st *store.Store, where string, err error) {
	if g.databaseURL != "" {
		if !store.IsPostgresURL(g.databaseURL) {
			return nil, "", fmt.Errorf("--database-url: want a postgres:// or postgresql:// URL")
		}
		st, err := store.OpenPostgres(ctx, g.databaseURL)
		return st, "the shared PostgreSQL database", err
	}
	db := filepath.Join(g.dataDir, "gateway.db")
	if mustExist {
		if _, err := os.Stat(db); err != nil {
			return nil, db, fmt.Errorf("no gateway database at %s (a gateway on PostgreSQL: --database-url or IDLEGRID_DATABASE_URL)", db)
		}
	}
	st, err = store.Open(ctx, db)
	return st, db, err
}
