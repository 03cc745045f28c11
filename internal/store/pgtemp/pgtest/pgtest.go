// Package pgtest gives tests a throwaway PostgreSQL database: started in a
// temp dir for the test, stopped when it ends, and a skip with the reason
// when PostgreSQL is not installed. Only tests import it.
package pgtest

import (
	"errors"
	"testing"

	"github.com/idlegrid/idlegrid/internal/store/pgtemp"
)

// Database starts a PostgreSQL server for t and returns the URL of an
// empty database called name on it; it skips t when PostgreSQL is absent.
func Database(t testing.TB, name string) string {
	t.Helper()
	srv, err := pgtemp.Start(t.Context())
	if errors.Is(err, pgtemp.ErrNoPostgres) {
		t.Skipf("skipping: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Error(err)
		}
	})
	url, err := srv.CreateDatabase(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	return url
}
