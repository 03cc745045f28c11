package chain

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/bloom"
	dbm "github.com/cometbft/cometbft-db"
	abci "github.com/cometbft/cometbft/abci/types"
	cmtproto "github.com/cometbft/cometbft/api/cometbft/types/v1"

	"github.com/idlegrid/idlegrid/internal/ledger"
)

// AppVersion is the version of the application's state machine, reported
// to CometBFT; it changes when a block would execute differently.
//
//	1: the ledger as first released on CometBFT
//	2: a provider's record counts its passed cases per model digest
//	   (ProviderRecord.Passed)
const AppVersion = 2

// ledgerCacheBytes is the ledger database's block cache, which pebble's
// memtables (up to 8 MiB) share (see OpenApp).
const ledgerCacheBytes = 64 << 20

// Bookkeeping keys of the application itself. They start with a zero byte,
// which no ledger key does, and are not part of the app hash: they record
// which height the ledger state belongs to.
var (
	keyHeight  = []byte("\x00meta/height")
	keyAppHash = []byte("\x00meta/app_hash")
	// keyAppVersion is the AppVersion that wrote the state (absent: 1).
	keyAppVersion = []byte("\x00meta/app_version")
)

// App is the ABCI application: the ledger state machine on a persistent
// key-value store. FinalizeBlock executes a block into staged changes;
// Commit writes them and the new height in one synced batch, so a node that
// stops at any point restarts from its last committed height (CometBFT
// replays at most the block in flight).
type App struct {
	abci.BaseApplication
	db  dbm.DB
	log *slog.Logger

	// CometBFT calls each ABCI connection (consensus, mempool, query) in
	// order but the connections concurrently, so CheckTx can admit
	// transactions while a block executes. mu guards the committed height
	// and the staged block; checkMu the mempool checker.
	mu      sync.Mutex
	height  int64  // last committed height
	appHash []byte // app hash at height
	staged  *staged
	checkMu sync.Mutex
	checker *ledger.Checker

	closeOnce sync.Once
	closeErr  error
}

type staged struct {
	height  int64
	changes []ledger.Change
	appHash []byte
}

var _ abci.Application = (*App)(nil)

// OpenApp opens (creating if needed) the ledger state in dir.
func OpenApp(dir string, log *slog.Logger) (*App, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Settlement looks up request ids that mostly do not exist yet: bloom
	// filters answer those without reading every level, provided the
	// filter blocks stay cached. Pebble charges its memtables (two of 4 MiB
	// while one flushes) to the block cache, so with its default 8 MiB cache
	// nothing stays cached and every lookup reads and decompresses filter
	// and index blocks from disk.
	cache := pebble.NewCache(ledgerCacheBytes)
	defer cache.Unref() // the open database holds its own reference
	opts := &pebble.Options{Logger: pebbleLogger{l: log}, Cache: cache}
	opts.EnsureDefaults()
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		opts.Levels[i].FilterType = pebble.TableFilter
	}
	db, err := dbm.NewPebbleDBWithOpts("ledger", dir, opts)
	if err != nil {
		return nil, fmt.Errorf("open ledger state in %s: %w", dir, err)
	}
	app, err := NewApp(db, log)
	if err != nil {
		db.Close()
		return nil, err
	}
	return app, nil
}

// NewApp runs the ledger on db, resuming from the height recorded there.
func NewApp(db dbm.DB, log *slog.Logger) (*App, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	app := &App{db: db, log: log}
	h, err := db.Get(keyHeight)
	if err != nil {
		return nil, fmt.Errorf("ledger state: read height: %w", err)
	}
	if h != nil {
		if len(h) != 8 {
			return nil, fmt.Errorf("ledger state: height record of %d bytes", len(h))
		}
		app.height = int64(binary.BigEndian.Uint64(h))
		v, err := db.Get(keyAppVersion)
		if err != nil {
			return nil, fmt.Errorf("ledger state: read app version: %w", err)
		}
		written := uint64(1)
		if len(v) == 8 {
			written = binary.BigEndian.Uint64(v)
		}
		if written != AppVersion {
			return nil, fmt.Errorf("ledger state at height %d was written by app version %d and this idlegrid runs version %d, whose rules it cannot be upgraded to: remove the node's data to start a new chain", app.height, written, AppVersion)
		}
		if app.appHash, err = db.Get(keyAppHash); err != nil {
			return nil, fmt.Errorf("ledger state: read app hash: %w", err)
		}
		app.checker, err = ledger.NewChecker(db)
		if err == nil {
			_, err = ledger.View{R: db}.EpochState()
		}
		if err != nil {
			return nil, fmt.Errorf("ledger state at height %d cannot be read (%w); a state written by an older idlegrid cannot be upgraded: remove the node's data to start a new chain", app.height, err)
		}
	}
	return app, nil
}

// Close closes the state store; later calls do nothing. The node must be
// stopped first.
func (app *App) Close() error {
	app.closeOnce.Do(func() { app.closeErr = app.db.Close() })
	return app.closeErr
}

// Reader is the committed ledger state, for in-process queries.
func (app *App) Reader() ledger.Reader { return app.db }

// DB is the state store itself, for tools that read it whole (the audit of
// a stopped node's home) and tests that doctor it. It holds the committed
// state only while no block is being executed.
func (app *App) DB() dbm.DB { return app.db }

// Info tells CometBFT where the application is, so it replays only the
// blocks the application has not committed.
func (app *App) Info(context.Context, *abci.InfoRequest) (*abci.InfoResponse, error) {
	app.mu.Lock()
	defer app.mu.Unlock()
	return &abci.InfoResponse{
		Data:             "idlegrid ledger",
		Version:          "1",
		AppVersion:       AppVersion,
		LastBlockHeight:  app.height,
		LastBlockAppHash: app.appHash,
	}, nil
}

// InitChain writes the genesis state from the genesis document's app_state.
// It is persisted at once with height 0: if the node stops before block 1,
// CometBFT calls InitChain again, which writes the same bytes.
func (app *App) InitChain(_ context.Context, req *abci.InitChainRequest) (*abci.InitChainResponse, error) {
	app.mu.Lock()
	defer app.mu.Unlock()
	g, err := ledger.ParseGenesis(req.AppStateBytes)
	if err != nil {
		return nil, err
	}
	b, err := ledger.Init(app.db, req.ChainId, g)
	if err != nil {
		return nil, err
	}
	changes := b.Changes()
	hash := ledger.NextAppHash(nil, changes)
	if err := app.write(changes, req.InitialHeight-1, hash); err != nil {
		return nil, err
	}
	app.log.Info("ledger genesis written", "chain_id", req.ChainId, "accounts", len(g.Accounts), "app_hash", fmt.Sprintf("%X", hash))
	return &abci.InitChainResponse{AppHash: hash}, nil
}

// CheckTx admits transactions to the mempool with the ledger's cheap checks,
// at most ledger.MaxPendingTxs (and MaxPendingBytes) per sender until a
// block commits them. After each commit CometBFT re-checks the pending ones
// against a fresh checker, in order, which rebuilds their nonces, spending
// and per-sender bounds.
func (app *App) CheckTx(_ context.Context, req *abci.CheckTxRequest) (*abci.CheckTxResponse, error) {
	app.checkMu.Lock()
	defer app.checkMu.Unlock()
	if app.checker == nil {
		return &abci.CheckTxResponse{Code: ledger.CodeInvalid, Log: "ledger not initialised"}, nil
	}
	check := app.checker.Check
	if req.Type == abci.CHECK_TX_TYPE_RECHECK {
		check = app.checker.Recheck
	}
	res, err := check(req.Tx)
	if err != nil {
		return nil, err
	}
	if res.Code == ledger.CodeTooManyPending {
		app.log.Debug("mempool: sender at its pending bound", "log", res.Log)
	}
	return &abci.CheckTxResponse{Code: res.Code, Log: res.Log}, nil
}

// FinalizeBlock executes the block's transactions and stages the changes.
func (app *App) FinalizeBlock(_ context.Context, req *abci.FinalizeBlockRequest) (*abci.FinalizeBlockResponse, error) {
	// Only the consensus connection writes state, one call at a time:
	// executing the block needs no lock, which leaves CheckTx and queries
	// free meanwhile.
	app.mu.Lock()
	height, prevHash := app.height, app.appHash
	app.mu.Unlock()
	if req.Height != height+1 {
		return nil, fmt.Errorf("finalize block %d: last committed height is %d", req.Height, height)
	}
	ex, err := ledger.ExecuteBlock(app.db, uint64(req.Height), prevHash, req.Txs, commitSigners(req.DecidedLastCommit))
	if err != nil {
		return nil, err
	}
	results := make([]*abci.ExecTxResult, len(ex.Results))
	for i, res := range ex.Results {
		results[i] = &abci.ExecTxResult{Code: res.Code, Log: res.Log, Events: toABCI(res.Events)}
	}
	app.mu.Lock()
	app.staged = &staged{height: req.Height, changes: ex.Changes, appHash: ex.AppHash}
	app.mu.Unlock()
	return &abci.FinalizeBlockResponse{TxResults: results, AppHash: ex.AppHash, Events: toABCI(ex.Events)}, nil
}

// commitSigners lists the validators whose commit signatures the block
// carries for the previous height, by CometBFT address.
func commitSigners(c abci.CommitInfo) [][]byte {
	var out [][]byte
	for _, v := range c.Votes {
		if v.BlockIdFlag == cmtproto.BlockIDFlagCommit {
			out = append(out, v.Validator.Address)
		}
	}
	return out
}

// Commit persists the staged block in one synced batch.
func (app *App) Commit(context.Context, *abci.CommitRequest) (*abci.CommitResponse, error) {
	app.mu.Lock()
	defer app.mu.Unlock()
	s := app.staged
	if s == nil {
		return nil, errors.New("commit without a finalized block")
	}
	if err := app.write(s.changes, s.height, s.appHash); err != nil {
		return nil, err
	}
	app.staged = nil
	return &abci.CommitResponse{}, nil
}

// write persists changes as the state at height, atomically.
func (app *App) write(changes []ledger.Change, height int64, hash []byte) error {
	batch := app.db.NewBatch()
	defer batch.Close()
	for _, c := range changes {
		var err error
		if c.Value == nil {
			err = batch.Delete(c.Key)
		} else {
			err = batch.Set(c.Key, c.Value)
		}
		if err != nil {
			return fmt.Errorf("stage ledger write: %w", err)
		}
	}
	if err := batch.Set(keyHeight, binary.BigEndian.AppendUint64(nil, uint64(height))); err != nil {
		return err
	}
	if err := batch.Set(keyAppVersion, binary.BigEndian.AppendUint64(nil, AppVersion)); err != nil {
		return err
	}
	if len(hash) > 0 {
		if err := batch.Set(keyAppHash, hash); err != nil {
			return err
		}
	}
	if err := batch.WriteSync(); err != nil {
		return fmt.Errorf("commit ledger state at height %d: %w", height, err)
	}
	app.height, app.appHash = height, hash
	// CometBFT holds the mempool while it commits, then re-checks what is
	// still pending against this fresh checker.
	checker, err := ledger.NewChecker(app.db)
	if err != nil {
		return err
	}
	app.checkMu.Lock()
	app.checker = checker
	app.checkMu.Unlock()
	return nil
}

func toABCI(events []ledger.Event) []abci.Event {
	if len(events) == 0 {
		return nil
	}
	out := make([]abci.Event, len(events))
	for i, e := range events {
		attrs := make([]abci.EventAttribute, len(e.Attrs))
		for j, a := range e.Attrs {
			attrs[j] = abci.EventAttribute{Key: a.Key, Value: a.Value, Index: a.Index}
		}
		out[i] = abci.Event{Type: e.Type, Attributes: attrs}
	}
	return out
}
