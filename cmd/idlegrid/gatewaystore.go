package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/idlegrid/idlegrid/internal/store"
)

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
