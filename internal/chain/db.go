package chain

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/cockroachdb/pebble"
	dbm "github.com/cometbft/cometbft-db"
	cfg "github.com/cometbft/cometbft/config"
)

// dbSet opens the node's databases and remembers them, so that Stop can
// close the ones CometBFT leaves open (the tx index).
type dbSet struct {
	log *slog.Logger
	mu  sync.Mutex
	dbs []*guardedDB
}

// open implements cfg.DBProvider like cfg.DefaultDBProvider, except that
// pebble logs through slog and every database is guarded.
func (s *dbSet) open(ctx *cfg.DBContext) (dbm.DB, error) {
	var db dbm.DB
	var err error
	if dbm.BackendType(ctx.Config.DBBackend) == dbm.PebbleDBBackend {
		db, err = dbm.NewPebbleDBWithOpts(ctx.ID, ctx.Config.DBDir(), &pebble.Options{Logger: pebbleLogger{l: s.log}})
	} else {
		db, err = cfg.DefaultDBProvider(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s database in %s: %w", ctx.ID, ctx.Config.DBDir(), err)
	}
	g := &guardedDB{db: db}
	s.mu.Lock()
	s.dbs = append(s.dbs, g)
	s.mu.Unlock()
	return g, nil
}

// closeAll closes every database not closed yet.
func (s *dbSet) closeAll() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, d := range s.dbs {
		errs = append(errs, d.Close())
	}
	return errors.Join(errs...)
}

// errDBClosed is what a guarded database returns for writes after Close.
var errDBClosed = errors.New("database closed")

// guardedDB makes a database safe to close while CometBFT goroutines still
// use it. Node.Stop closes the databases when the node's services have
// stopped, but some goroutines outlive them: the consensus reactor's
// per-peer routines sleep for seconds between block store reads, and pebble
// panics on any use after Close. Close therefore waits for the calls in
// progress, and afterwards reads find nothing (which those routines skip)
// and writes fail. Close is idempotent: CometBFT closes some databases
// itself and Stop closes them all.
type guardedDB struct {
	db     dbm.DB
	mu     sync.RWMutex
	closed bool
}

var _ dbm.DB = (*guardedDB)(nil)

// use read-locks g for one call and reports whether g is still open; the
// caller unlocks (each caller defers g.mu.RUnlock before calling use).
func (g *guardedDB) use() bool {
	g.mu.RLock()
	return !g.closed
}

// Get implements dbm.DB; after Close it finds nothing.
func (g *guardedDB) Get(key []byte) ([]byte, error) {
	defer g.mu.RUnlock()
	if !g.use() {
		return nil, nil
	}
	return g.db.Get(key)
}

// Has implements dbm.DB; after Close it finds nothing.
func (g *guardedDB) Has(key []byte) (bool, error) {
	defer g.mu.RUnlock()
	if !g.use() {
		return false, nil
	}
	return g.db.Has(key)
}

// write runs one write unless g is closed.
func (g *guardedDB) write(f func() error) error {
	defer g.mu.RUnlock()
	if !g.use() {
		return errDBClosed
	}
	return f()
}

// Set implements dbm.DB.
func (g *guardedDB) Set(k, v []byte) error { return g.write(func() error { return g.db.Set(k, v) }) }

// SetSync implements dbm.DB.
func (g *guardedDB) SetSync(k, v []byte) error {
	return g.write(func() error { return g.db.SetSync(k, v) })
}

// Delete implements dbm.DB.
func (g *guardedDB) Delete(k []byte) error { return g.write(func() error { return g.db.Delete(k) }) }

// DeleteSync implements dbm.DB.
func (g *guardedDB) DeleteSync(k []byte) error {
	return g.write(func() error { return g.db.DeleteSync(k) })
}

// Compact implements dbm.DB.
func (g *guardedDB) Compact(start, end []byte) error {
	return g.write(func() error { return g.db.Compact(start, end) })
}

// Print implements dbm.DB.
func (g *guardedDB) Print() error { return g.write(g.db.Print) }

// Iterator implements dbm.DB.
func (g *guardedDB) Iterator(start, end []byte) (dbm.Iterator, error) {
	defer g.mu.RUnlock()
	if !g.use() {
		return nil, errDBClosed
	}
	return g.db.Iterator(start, end)
}

// ReverseIterator implements dbm.DB.
func (g *guardedDB) ReverseIterator(start, end []byte) (dbm.Iterator, error) {
	defer g.mu.RUnlock()
	if !g.use() {
		return nil, errDBClosed
	}
	return g.db.ReverseIterator(start, end)
}

// Stats implements dbm.DB.
func (g *guardedDB) Stats() map[string]string {
	defer g.mu.RUnlock()
	if !g.use() {
		return map[string]string{}
	}
	return g.db.Stats()
}

// NewBatch implements dbm.DB; the batch's writes are guarded too.
func (g *guardedDB) NewBatch() dbm.Batch {
	defer g.mu.RUnlock()
	if !g.use() {
		return closedBatch{}
	}
	return &guardedBatch{Batch: g.db.NewBatch(), g: g}
}

// Close implements dbm.DB: it waits for the calls in progress, closes the
// database the first time and returns nil afterwards.
func (g *guardedDB) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil
	}
	g.closed = true
	return g.db.Close()
}

// guardedBatch commits only while its database is open.
type guardedBatch struct {
	dbm.Batch
	g *guardedDB
}

// Write implements dbm.Batch.
func (b *guardedBatch) Write() error { return b.g.write(b.Batch.Write) }

// WriteSync implements dbm.Batch.
func (b *guardedBatch) WriteSync() error { return b.g.write(b.Batch.WriteSync) }

// closedBatch is a batch of a closed database: it takes nothing.
type closedBatch struct{}

func (closedBatch) Set(_, _ []byte) error { return errDBClosed }
func (closedBatch) Delete([]byte) error   { return errDBClosed }
func (closedBatch) Write() error          { return errDBClosed }
func (closedBatch) WriteSync() error      { return errDBClosed }
func (closedBatch) Close() error          { return nil }
