package main

import (
	"context"
	"strings"
	"testing"

	"github.com/idlegrid/idlegrid/internal/store"
	"github.com/idlegrid/idlegrid/internal/store/pgtemp/pgtest"
)

// TestKeysAndReceiptsOnPostgres: on a deployment whose gateways share
// PostgreSQL, `keys create` writes the shared table the gateways read (not
// a SQLite file in the data directory no gateway opens), `keys list` and
// `receipts verify ID` read it, with the URL from the flag or from
// IDLEGRID_DATABASE_URL.
func TestKeysAndReceiptsOnPostgres(t *testing.T) {
	url := pgtest.Database(t, "cli_keys")
	dir := t.TempDir()
	t.Setenv("IDLEGRID_DATABASE_URL", url)
	out, _, err := run(t, "keys", "create", "--name", "shared", "--data-dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	secret := strings.TrimSpace(out)
	st, err := store.OpenPostgres(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	k, err := st.LookupAPIKey(context.Background(), secret)
	if err != nil || k.Name != "shared" {
		t.Fatalf("the key created with IDLEGRID_DATABASE_URL is not in the shared database: %v (%+v)", err, k)
	}
	t.Setenv("IDLEGRID_DATABASE_URL", "")
	if out, _, err := run(t, "keys", "list", "--data-dir", dir, "--database-url", url); err != nil || !strings.Contains(out, "shared") {
		t.Fatalf("keys list --database-url: %v\n%s", err, out)
	}
	if out, _, err := run(t, "keys", "list", "--data-dir", dir); err != nil || strings.Contains(out, "shared") {
		t.Fatalf("without a database URL keys list reads the data directory's SQLite, which has no such key: %v\n%s", err, out)
	}

	sr := signedReceipt(t)
	if err := st.SaveReceipt(context.Background(), sr); err != nil {
		t.Fatal(err)
	}
	out, _, err = run(t, "receipts", "verify", sr.Receipt.RequestID, "--data-dir", t.TempDir(), "--database-url", url)
	if err != nil || !strings.Contains(out, "verifies") || strings.Contains(out, url) {
		t.Fatalf("receipts verify on PostgreSQL: %v\n%s", err, out)
	}
	if _, _, err := run(t, "keys", "list", "--database-url", "mysql://nope"); err == nil || !strings.Contains(err.Error(), "postgres://") {
		t.Fatalf("a non-PostgreSQL URL: %v", err)
	}
}
