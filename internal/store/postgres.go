package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/pressly/goose/v3"

	// Registers the "pgx" database/sql driver.
	_ "github.com/jackc/pgx/v5/stdlib"
)

var postgresDialect = dialect{name: "postgres", goose: goose.DialectPostgres,
	lockConsumer: `SELECT consumer FROM funds_locks WHERE consumer = $1 FOR UPDATE`}

// postgresConns bounds one gateway's connections. Receipts are written by
// one committer (group commit), so the pool serves lookups, reservations
// and settlement bookkeeping; PostgreSQL's default max_connections (100)
// leaves room for several gateways.
const postgresConns = 16

// IsPostgresURL reports whether s names a PostgreSQL database
// (postgres:// or postgresql://) rather than a SQLite file.
func IsPostgresURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// OpenPostgres connects to the PostgreSQL database at url (a postgres://
// URL, as libpq and pgx take it) and migrates its schema to the latest
// version. Several gateways may open the same database: they share API
// keys, receipts, reservations and the peer directory. Commits wait for
// PostgreSQL's own durability (synchronous_commit, on by default), so
// WithProcessDurability changes nothing here.
func OpenPostgres(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if !IsPostgresURL(dsn) {
		return nil, errors.New("store: a PostgreSQL URL starts with postgres:// or postgresql://")
	}
	where := redact(dsn)
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", where, err)
	}
	db.SetMaxOpenConns(postgresConns)
	db.SetMaxIdleConns(postgresConns)
	if err := db.PingContext(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("store: connect to %s: %w", where, err), db.Close())
	}
	// Two gateways starting at once must not both run the migrations:
	// an advisory lock held for the session serializes them.
	conn, err := db.Conn(ctx)
	if err == nil {
		_, err = conn.ExecContext(ctx, `SELECT pg_advisory_lock(7432001)`)
		if err == nil {
			err = migrate(ctx, db, postgresDialect)
			_, uerr := conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(7432001)`)
			err = errors.Join(err, uerr)
		}
		err = errors.Join(err, conn.Close())
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("store: migrate %s: %w", where, err), db.Close())
	}
	return newStore(ctx, db, db, postgresDialect, o)
}

// redact drops the password from a database URL, for messages.
func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "the PostgreSQL database"
	}
	return u.Redacted()
}
