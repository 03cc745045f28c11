package pgtemp

import (
	"errors"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestStartQueryStop(t *testing.T) {
	ctx := t.Context()
	s, err := Start(ctx)
	if errors.Is(err, ErrNoPostgres) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	url, err := s.CreateDatabase(ctx, "pgtemp_check")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	var db string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil || db != "pgtemp_check" {
		t.Errorf("current_database() = %q, %v", db, err)
	}
	conn.Close(ctx)
	if _, err := s.CreateDatabase(ctx, "bad; DROP"); err == nil {
		t.Error("a database name with SQL in it was accepted")
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := os.Stat(s.dir); !os.IsNotExist(err) {
		t.Errorf("directory %s left behind: %v", s.dir, err)
	}
	if c, err := pgx.Connect(ctx, url); err == nil {
		c.Close(ctx)
		t.Error("server still answers after Stop")
	}
}
