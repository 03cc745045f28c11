package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/idlegrid/idlegrid/internal/store/pgtemp"
)

// One throwaway PostgreSQL server for the package's tests, started by the
// first test that needs it; each test gets a database of its own.
var pg struct {
	once sync.Once
	srv  *pgtemp.Server
	err  error
	n    atomic.Int64
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pg.srv != nil {
		if err := pg.srv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop PostgreSQL:", err)
		}
	}
	os.Exit(code)
}

// postgresURL returns the URL of a new, empty database, or skips the test
// when PostgreSQL is not installed.
func postgresURL(t testing.TB) string {
	t.Helper()
	pg.once.Do(func() { pg.srv, pg.err = pgtemp.Start(context.Background()) })
	if errors.Is(pg.err, pgtemp.ErrNoPostgres) {
		t.Skipf("skipping the PostgreSQL tests: %v", pg.err)
	}
	if pg.err != nil {
		t.Fatalf("start PostgreSQL: %v", pg.err)
	}
	url, err := pg.srv.CreateDatabase(t.Context(), fmt.Sprintf("store_%d", pg.n.Add(1)))
	if err != nil {
		t.Fatal(err)
	}
	return url
}

func openPostgres(t *testing.T) *Store {
	t.Helper()
	s, err := OpenPostgres(t.Context(), postgresURL(t))
	if err != nil {
		t.Fatalf("OpenPostgres: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestPostgres(t *testing.T) { runSuite(t, openPostgres) }

// TestPostgresConcurrentMigrations: gateways started together on an empty
// database migrate it once between them.
func TestPostgresConcurrentMigrations(t *testing.T) {
	url := postgresURL(t)
	var wg sync.WaitGroup
	stores := make([]*Store, 4)
	errs := make([]error, 4)
	for i := range stores {
		wg.Go(func() { stores[i], errs[i] = OpenPostgres(t.Context(), url) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("OpenPostgres %d: %v", i, err)
		}
		defer stores[i].Close()
	}
	var version, rows int64
	if err := stores[0].read.QueryRowContext(t.Context(),
		`SELECT MAX(version_id), COUNT(*) FROM goose_db_version WHERE version_id > 0`).Scan(&version, &rows); err != nil {
		t.Fatal(err)
	}
	if version != 5 || rows != 5 {
		t.Errorf("schema version %d in %d rows, want 5 in 5", version, rows)
	}
}

func TestOpenPostgresBadURL(t *testing.T) {
	ctx := t.Context()
	for _, url := range []string{"", "gateway.db", "mysql://x"} {
		if s, err := OpenPostgres(ctx, url); err == nil {
			s.Close()
			t.Errorf("OpenPostgres(%q) accepted", url)
		}
	}
	// Nobody listens on port 1; the password must not appear in the error.
	_, err := OpenPostgres(ctx, "postgres://gw:hunter2secret@127.0.0.1:1/idlegrid?sslmode=disable&connect_timeout=2")
	if err == nil {
		t.Fatal("OpenPostgres to a closed port succeeded")
	}
	if s := err.Error(); strings.Contains(s, "hunter2secret") {
		t.Errorf("error shows the password: %s", s)
	}
}
