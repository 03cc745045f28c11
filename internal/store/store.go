// Package store is the gateway's SQL store: API keys, signed receipts and,
// for gateways that share a database, admission reservations and the
// directory of which gateway serves which model.
//
// SQLite (modernc.org/sqlite, no cgo) is the default backend (Open);
// PostgreSQL (pgx) lets several gateways share one database
// (OpenPostgres). Queries use $N placeholders and portable SQL; what
// differs per backend lives in the dialect, the Open functions and the
// migration files under migrations/sqlite and migrations/postgres.
//
// Receipts are money: SaveReceipt returns only once the receipt is durable on
// disk, stores each request_id at most once, and Receipt hands back exactly
// the bytes that were signed (or an error), never a reconstruction.
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/idlegrid/idlegrid/internal/keys"

	// Registers the "sqlite" database/sql driver.
	"modernc.org/sqlite"
)

// Errors callers branch on. They are wrapped with context; test with errors.Is.
var (
	// ErrNotFound: no API key, receipt or id matches.
	ErrNotFound = errors.New("not found")
	// ErrRevoked: the API key exists but was revoked.
	ErrRevoked = errors.New("api key revoked")
	// ErrDuplicate: the request_id (or API key secret) is already stored.
	ErrDuplicate = errors.New("already exists")
	// ErrAlreadySettled: MarkSettled was given a receipt that is settled.
	ErrAlreadySettled = errors.New("receipt already settled")
	// ErrCorrupt: stored data no longer decodes or verifies.
	ErrCorrupt = errors.New("corrupt stored data")
	// ErrOutOfRange: a token count or amount does not fit the store's signed
	// 64-bit integer columns.
	ErrOutOfRange = errors.New("value out of the store's range")
)

//go:embed migrations/sqlite/*.sql migrations/postgres/*.sql
var migrations embed.FS

// busyTimeout bounds how long a statement waits for SQLite's file lock (held
// briefly by checkpoints, or by another process such as a backup tool) before
// failing; writers inside this process queue in Go instead (see Open).
const busyTimeout = 10 * time.Second

// Store is the gateway's database. It is safe for concurrent use.
type Store struct {
	// write has exactly one connection. SQLite admits one writer at a time;
	// queueing writers on database/sql's pool is fair and cheap, whereas
	// letting many connections race for the lock means busy-sleeping and,
	// under load, SQLITE_BUSY errors once busy_timeout runs out.
	write *sql.DB
	// read serves queries; in WAL mode readers never block the writer nor
	// each other.
	read *sql.DB
	now  func() time.Time
	d    dialect
	// processDurable: WithProcessDurability (no sync at commit).
	processDurable bool
	// gateway, when set, scopes settlement to this gateway's receipts
	// (ForGateway).
	gateway string

	// Prepared once: preparing costs more than running these queries.
	insertReceipt *sql.Stmt
	lookupKey     *sql.Stmt

	saves     chan *pendingSave // to the committer (see commit.go)
	closing   chan struct{}     // closed by Close
	committed chan struct{}     // closed when the committer has exited
	closeOnce sync.Once

	// ckpt is the background WAL checkpointer's connection (SQLite only;
	// see checkpoint.go), kicked by the committer every checkpointEvery
	// commits (sinceCkpt is the committer's own count).
	ckpt       *sql.DB
	ckptKick   chan struct{}
	ckptDone   chan struct{}
	ckptFinish atomic.Bool // the WAL is long; the committer finishes a checkpoint
	walFrames  int         // walFrameLimit; tests lower it
	sinceCkpt  int
	log        *slog.Logger

	// saving counts receipts handed to the committer and not yet written;
	// MarkSettled hands the writer over when it is not zero.
	saving atomic.Int32
	// settleChunk bounds the receipts one MarkSettled transaction marks:
	// maxSettleChunk. settleSynced (the benchmarks' baseline, with a
	// settleChunk above the batch) syncs the marking and yields to no
	// receipt.
	settleChunk  int
	settleSynced bool
}

// Option configures Open.
type Option func(*options)

type options struct {
	log            *slog.Logger
	processDurable bool
	gateway        string
	ckpt           *sql.DB // set by Open
}

// ForGateway scopes what a gateway settles to the receipts it
// countersigned: UnsettledReceipts, CountReceipts and PendingByConsumer
// leave out other gateways' receipts. Gateways that share a database each
// settle their own receipts with their own ledger key (the ledger refuses a
// receipt countersigned by another gateway than the sender).
func ForGateway(gateway keys.PublicKey) Option {
	return func(o *options) { o.gateway = gateway.String() }
}

// WithProcessDurability commits without waiting for the disk (SQLite WAL
// with synchronous=NORMAL): a committed receipt survives the gateway process
// being killed, but the last moments of commits can be lost if the machine
// itself loses power. It removes an fsync from every request's latency.
func WithProcessDurability() Option { return func(o *options) { o.processDurable = true } }

// Open opens (creating if needed) the SQLite database at path, creating its
// parent directory with mode 0700, and migrates the schema to the latest
// version.
func Open(ctx context.Context, path string, opts ...Option) (*Store, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if err := syncWithFdatasync(); err != nil {
		return nil, err
	}
	syncPragma := "synchronous(FULL)"
	if o.processDurable {
		syncPragma = "synchronous(NORMAL)"
	}
	if path == "" {
		return nil, errors.New("store: empty database path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("store: resolve %q: %w", path, err)
	}
	// 0700: the directory holds key hashes and the receipts that are owed
	// money; other local users have no business reading them.
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("store: create directory for %s: %w", abs, err)
	}
	// Create the file 0600 before SQLite does (it would use 0644); SQLite
	// gives its -wal and -shm files the database file's mode.
	f, err := os.OpenFile(abs, os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: create %s: %w", abs, err)
	}
	f.Close()

	write, err := openPool(ctx, sqliteDSN(abs, url.Values{
		"_pragma": {
			pragma("busy_timeout", busyTimeout.Milliseconds()),
			// WAL: readers proceed while a receipt is being written.
			"journal_mode(WAL)",
			// FULL by default, not NORMAL: in WAL mode NORMAL skips the
			// fsync at commit, so a power cut can drop transactions that
			// already returned. A receipt that SaveReceipt acknowledged is
			// money owed to a provider, so every commit is synced unless
			// the operator chose WithProcessDurability.
			syncPragma,
			// Checkpoints run in the background, not in a receipt's
			// commit (checkpoint.go).
			"wal_autocheckpoint(0)",
			"foreign_keys(ON)",
		},
		// Take the write lock at BEGIN, so a transaction never fails halfway
		// when upgrading from a read lock.
		"_txlock": {"immediate"},
	}), 1)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", abs, err)
	}
	if err := migrate(ctx, write, sqliteDialect); err != nil {
		return nil, errors.Join(fmt.Errorf("store: migrate %s: %w", abs, err), write.Close())
	}

	// Readers are opened after the writer has switched the file to WAL and
	// created the schema; query_only makes a stray write through this pool
	// fail loudly rather than bypass the single writer.
	read, err := openPool(ctx, sqliteDSN(abs, url.Values{
		"_pragma": {
			pragma("busy_timeout", busyTimeout.Milliseconds()),
			"foreign_keys(ON)",
			"query_only(1)",
		},
	}), max(4, runtime.NumCPU()))
	if err != nil {
		return nil, errors.Join(fmt.Errorf("store: open %s for reading: %w", abs, err), write.Close())
	}
	ckpt, err := openPool(ctx, sqliteDSN(abs, url.Values{
		"_pragma": {pragma("busy_timeout", busyTimeout.Milliseconds()), syncPragma},
	}), 1)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("store: open %s for checkpoints: %w", abs, err), read.Close(), write.Close())
	}
	o.ckpt = ckpt
	return newStore(ctx, write, read, sqliteDialect, o)
}

// newStore prepares the statements and starts the committer.
func newStore(ctx context.Context, write, read *sql.DB, d dialect, o options) (*Store, error) {
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	s := &Store{write: write, read: read, now: time.Now, d: d, processDurable: o.processDurable, gateway: o.gateway,
		saves: make(chan *pendingSave, maxBatch), closing: make(chan struct{}), committed: make(chan struct{}),
		ckpt: o.ckpt, log: o.log, walFrames: walFrameLimit, settleChunk: maxSettleChunk}
	var err error
	if s.insertReceipt, err = write.PrepareContext(ctx, insertReceiptSQL); err == nil {
		s.lookupKey, err = read.PrepareContext(ctx, lookupAPIKeySQL)
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("store: prepare statements: %w", err), s.closePools())
	}
	go s.committer()
	if s.ckpt != nil {
		s.ckptKick, s.ckptDone = make(chan struct{}, 1), make(chan struct{})
		go s.checkpointer()
	}
	return s, nil
}

// closePools closes the connections, the writer last.
func (s *Store) closePools() error {
	var errs []error
	if s.ckpt != nil {
		errs = append(errs, s.ckpt.Close())
	}
	if s.read != s.write {
		errs = append(errs, s.read.Close())
	}
	return errors.Join(append(errs, s.write.Close())...)
}

// Close closes the database. The writer closes last so that SQLite
// checkpoints the WAL into the main file when the last connection goes.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { close(s.closing) })
	<-s.committed
	if s.ckptDone != nil {
		<-s.ckptDone
	}
	// Saves queued after the committer's last batch are answered, not lost
	// silently: their callers get ErrClosed.
	for {
		select {
		case p := <-s.saves:
			s.saving.Add(-1)
			p.done <- ErrClosed
			continue
		default:
		}
		break
	}
	return errors.Join(s.insertReceipt.Close(), s.lookupKey.Close(), s.closePools())
}

// syncWithFdatasync makes SQLite commit with fdatasync(2) instead of fsync(2)
// in this process, as SQLite does wherever its build finds fdatasync (the
// transpiled library keeps fsync unless told). fdatasync writes a file's
// data and what is needed to read it back, its size included, but not its
// timestamps: durability is the same, and a commit need not wait for the
// file system's journal to record a new modification time
// (BenchmarkSaveReceiptWhileSettling compares the two). Where the library
// cannot (macOS, Windows) commits keep fsync.
func syncWithFdatasync() error {
	if _, err := sqlite.Fdatasync(true); err != nil && !errors.Is(err, sqlite.ErrFdatasyncUnavailable) {
		return fmt.Errorf("store: commit with fdatasync: %w", err)
	}
	return nil
}

func pragma(name string, v int64) string { return fmt.Sprintf("%s(%d)", name, v) }

// sqliteDSN builds a file: URI so that any path (spaces, '?', '#', '%') is
// escaped rather than cut at the first '?' by the driver.
func sqliteDSN(abs string, params url.Values) string {
	p := filepath.ToSlash(abs)
	if !strings.HasPrefix(p, "/") {
		p = "/" + p // Windows drive letter: file:///C:/...
	}
	u := url.URL{Scheme: "file", Path: p, RawQuery: params.Encode()}
	return u.String()
}

func openPool(ctx context.Context, dsn string, conns int) (*sql.DB, error) {
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	// Connections are cheap to keep and pragmas are per connection; never
	// recycle them for nothing.
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	if err := db.PingContext(ctx); err != nil {
		return nil, errors.Join(err, db.Close())
	}
	return db, nil
}

func migrate(ctx context.Context, db *sql.DB, d dialect) error {
	fsys, err := fs.Sub(migrations, "migrations/"+d.name)
	if err != nil {
		return err
	}
	// The global registry holds Go migrations registered by any imported
	// package; this schema is exactly the embedded SQL files.
	p, err := goose.NewProvider(d.goose, db, fsys, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return err
	}
	if _, err := p.Up(ctx); err != nil {
		return err
	}
	current, target, err := p.GetVersions(ctx)
	if err != nil {
		return err
	}
	// goose ignores applied versions it does not know, so an older binary
	// would otherwise run against a schema it does not understand.
	if current > target {
		return fmt.Errorf("database schema version %d is newer than this program's %d", current, target)
	}
	return nil
}

// dialect is what differs between the SQL backends.
type dialect struct {
	name  string // directory under migrations/
	goose goose.Dialect
	// lockConsumer, run after inserting the consumer's row into
	// funds_locks, holds that row until the transaction ends; empty where
	// a write transaction already excludes every other (SQLite).
	lockConsumer string
}

var sqliteDialect = dialect{name: "sqlite", goose: goose.DialectSQLite3}

// unsynced makes the writing connection c commit without syncing (SQLite:
// synchronous=NORMAL, in WAL mode no sync at commit) until synced restores
// it; PostgreSQL does it per transaction instead (unsyncedTx).
func (d dialect) unsynced(ctx context.Context, c *sql.Conn) error {
	if d.name != sqliteDialect.name {
		return nil
	}
	_, err := c.ExecContext(ctx, "PRAGMA synchronous = NORMAL")
	return err
}

// synced restores the writing connection's syncs after unsynced: FULL, or
// NORMAL for a store opened WithProcessDurability.
func (d dialect) synced(ctx context.Context, c *sql.Conn, processDurable bool) error {
	if d.name != sqliteDialect.name || processDurable {
		return nil
	}
	if _, err := c.ExecContext(ctx, "PRAGMA synchronous = FULL"); err != nil {
		return err
	}
	var level int
	if err := c.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&level); err != nil {
		return err
	}
	if level != 2 {
		return fmt.Errorf("synchronous is %d after setting FULL (2)", level)
	}
	return nil
}

// unsyncedTx makes transaction tx commit without waiting for the disk
// (PostgreSQL: synchronous_commit off for this transaction only).
func (d dialect) unsyncedTx(ctx context.Context, tx *sql.Tx) error {
	if d.name == sqliteDialect.name {
		return nil
	}
	_, err := tx.ExecContext(ctx, "SET LOCAL synchronous_commit TO OFF")
	return err
}

// txBeginner is what both *sql.DB and *sql.Conn offer.
type txBeginner interface {
	BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error)
}

// querier is what both *sql.DB and *sql.Tx offer.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// inTx runs fn in a transaction on db and commits it, or rolls back if fn
// fails.
func inTx(ctx context.Context, db txBeginner, fn func(*sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		// ErrTxDone means database/sql already rolled back (context
		// cancelled); that is not a second failure worth reporting.
		if rbErr := tx.Rollback(); rbErr != nil && !errors.Is(rbErr, sql.ErrTxDone) {
			return errors.Join(err, rbErr)
		}
		return err
	}
	return tx.Commit()
}

// micros is the stored form of a time: Unix microseconds.
func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }
