// Package audit checks a ledger node against its blocks. An audit trusts
// nothing but the blocks: it re-executes every block from genesis with its
// own copy of the state machine and compares what it computes with what the
// node claims — the app hash in every block header and, at the end, the
// node's state.
package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	dbm "github.com/cometbft/cometbft-db"
	abci "github.com/cometbft/cometbft/abci/types"
	"github.com/cometbft/cometbft/store"
	"github.com/cometbft/cometbft/types"

	"github.com/idlegrid/idlegrid/internal/chain"
	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// BlockSource is where an audit reads the chain.
type BlockSource interface {
	Genesis(ctx context.Context) (*types.GenesisDoc, error)
	// Latest is the node's last committed height and app hash.
	Latest(ctx context.Context) (int64, []byte, error)
	Block(ctx context.Context, height int64) (*types.Block, error)
}

// StateSource is the node's current state, compared key by key with the
// replay. Accounts returns the node's accounts (at height, which it
// reports) and Supply its supply record.
type StateSource interface {
	Accounts(ctx context.Context, addrs []keys.Address) (map[keys.Address]chainrpc.AccountInfo, int64, error)
	Supply(ctx context.Context) (ledger.Supply, error)
	// Epoch is a finished epoch's record and payouts; ok is false if the
	// node has no record of it.
	Epoch(ctx context.Context, n uint64) (rec ledger.EpochRecord, payouts []ledger.Payout, ok bool, err error)
}

// Report is what an audit checked.
type Report struct {
	ChainID  string
	Heights  int64 // blocks re-executed
	Txs      int   // transactions re-executed
	Accounts int   // accounts compared with the node's
	// Epochs is how many finished epochs were compared, record and every
	// payout; LastEpoch is the last of them.
	Epochs    int
	LastEpoch *ledger.EpochRecord
	// Roots are the recomputed payout roots of epochs 1, 2, …, Epochs.
	Roots   []receipt.Hash
	Supply  ledger.Supply
	AppHash []byte
	// Mismatch is the first disagreement; nil when everything agreed.
	Mismatch *Mismatch
}

// Mismatch is where the node and the replay disagree.
type Mismatch struct {
	Height int64
	What   string
}

func (m *Mismatch) Error() string { return fmt.Sprintf("height %d: %s", m.Height, m.What) }

// Run replays the chain from src and compares with the node.
func Run(ctx context.Context, src BlockSource, state StateSource) (Report, error) {
	var rep Report
	gen, err := src.Genesis(ctx)
	if err != nil {
		return rep, fmt.Errorf("genesis: %w", err)
	}
	rep.ChainID = gen.ChainID
	g, err := ledger.ParseGenesis(gen.AppState)
	if err != nil {
		return rep, err
	}
	mem := memState{}
	b, err := ledger.Init(mem, gen.ChainID, g)
	if err != nil {
		return rep, err
	}
	changes := b.Changes()
	mem.apply(changes)
	hash := ledger.NextAppHash(nil, changes)
	h := gen.InitialHeight
	if h == 0 {
		h = 1
	}
	for {
		latest, latestHash, err := src.Latest(ctx)
		if err != nil {
			return rep, fmt.Errorf("node status: %w", err)
		}
		for ; h <= latest; h++ {
			blk, err := src.Block(ctx, h)
			if err != nil {
				return rep, fmt.Errorf("block %d: %w", h, err)
			}
			if !bytes.Equal(blk.Header.AppHash, hash) {
				rep.Mismatch = &Mismatch{Height: h, What: fmt.Sprintf("the block header carries app hash %X for the state after height %d; the replay computes %X", []byte(blk.Header.AppHash), h-1, hash)}
				return rep, nil
			}
			txs := make([][]byte, len(blk.Data.Txs))
			for i, tx := range blk.Data.Txs {
				txs[i] = tx
			}
			ex, err := ledger.ExecuteBlock(mem, uint64(h), hash, txs, blockSigners(blk))
			if err != nil {
				return rep, fmt.Errorf("replay block %d: %w", h, err)
			}
			mem.apply(ex.Changes)
			hash = ex.AppHash
			rep.Heights++
			rep.Txs += len(txs)
		}
		if !bytes.Equal(latestHash, hash) {
			rep.Mismatch = &Mismatch{Height: latest, What: fmt.Sprintf("the node reports app hash %X after its last block; the replay computes %X", latestHash, hash)}
			return rep, nil
		}
		rep.AppHash = hash
		m, stateHeight, err := compareState(ctx, mem, state, &rep)
		if err != nil {
			return rep, err
		}
		if stateHeight > latest {
			continue // the node moved on while we compared: replay the new blocks and compare again
		}
		rep.Mismatch = m
		return rep, nil
	}
}

// blockSigners lists the validators whose signatures blk's last commit
// carries, as FinalizeBlock receives them.
func blockSigners(blk *types.Block) [][]byte {
	var out [][]byte
	if blk.LastCommit == nil {
		return nil
	}
	for _, s := range blk.LastCommit.Signatures {
		if s.BlockIDFlag == types.BlockIDFlagCommit {
			out = append(out, s.ValidatorAddress)
		}
	}
	return out
}

// compareState compares every replayed account and the supply with the
// node's, and that the node has no account the replay lacks.
func compareState(ctx context.Context, mem memState, state StateSource, rep *Report) (*Mismatch, int64, error) {
	view := ledger.View{R: mem}
	addrs := mem.accounts()
	node, height, err := state.Accounts(ctx, addrs)
	if err != nil {
		return nil, 0, err
	}
	rep.Accounts = len(addrs)
	for _, a := range addrs {
		want, _, err := view.Account(a)
		if err != nil {
			return nil, 0, err
		}
		got, ok := node[a]
		switch {
		case !ok:
			return &Mismatch{Height: height, What: fmt.Sprintf("account %s: the node does not have it", a)}, height, nil
		case !equalJSON(got.Account, want):
			return &Mismatch{Height: height, What: fmt.Sprintf("account %s: the node says %s, the replay %s", a, asJSON(got.Account), asJSON(want))}, height, nil
		}
	}
	for a := range node {
		if _, ok, err := view.Account(a); err != nil {
			return nil, 0, err
		} else if !ok {
			return &Mismatch{Height: height, What: fmt.Sprintf("account %s: the node has it, the replay does not", a)}, height, nil
		}
	}
	want, err := view.Supply()
	if err != nil {
		return nil, 0, err
	}
	got, err := state.Supply(ctx)
	if err != nil {
		return nil, 0, err
	}
	if got != want {
		return &Mismatch{Height: height, What: fmt.Sprintf("supply: the node says %s, the replay %s", asJSON(got), asJSON(want))}, height, nil
	}
	rep.Supply = want
	return compareEpochs(ctx, view, state, rep, height)
}

// compareEpochs compares the record and the payouts of every epoch the
// replay finished with the node's, and that the node has not finished one
// more.
func compareEpochs(ctx context.Context, view ledger.View, state StateSource, rep *Report, height int64) (*Mismatch, int64, error) {
	rep.Epochs, rep.LastEpoch, rep.Roots = 0, nil, nil
	for n := uint64(1); ; n++ {
		want, ok, err := view.Epoch(n)
		if err != nil {
			return nil, 0, err
		}
		got, gotPayouts, nodeOK, err := state.Epoch(ctx, n)
		if err != nil {
			return nil, 0, err
		}
		switch {
		case !ok && !nodeOK:
			return nil, height, nil
		case !ok:
			return &Mismatch{Height: height, What: fmt.Sprintf("epoch %d: the node has a record of it, the replay has not finished it", n)}, height, nil
		case !nodeOK:
			return &Mismatch{Height: height, What: fmt.Sprintf("epoch %d: the node has no record of it", n)}, height, nil
		case got != want:
			return &Mismatch{Height: height, What: fmt.Sprintf("epoch %d: the node says %s, the replay %s", n, asJSON(got), asJSON(want))}, height, nil
		}
		wantPayouts, err := view.Payouts(n)
		if err != nil {
			return nil, 0, err
		}
		if !samePayouts(gotPayouts, wantPayouts) {
			return &Mismatch{Height: height, What: fmt.Sprintf("epoch %d payouts: the node says %s, the replay %s", n, asJSON(gotPayouts), asJSON(wantPayouts))}, height, nil
		}
		rep.Epochs++
		rep.LastEpoch = &want
		rep.Roots = append(rep.Roots, want.Root)
	}
}

func equalJSON(a, b any) bool { return asJSON(a) == asJSON(b) }

// samePayouts compares an epoch's payouts. An epoch that paid nothing (no
// emission, or no one qualified) has none, whether the source says so with
// an empty list (the RPC query) or with no list (the replay).
func samePayouts(a, b []ledger.Payout) bool {
	return len(a) == 0 && len(b) == 0 || equalJSON(a, b)
}

func asJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// memState is the audit's own copy of the ledger state.
type memState map[string][]byte

func (m memState) Get(k []byte) ([]byte, error) { return m[string(k)], nil }

func (m memState) apply(changes []ledger.Change) {
	for _, c := range changes {
		if c.Value == nil {
			delete(m, string(c.Key))
		} else {
			m[string(c.Key)] = c.Value
		}
	}
}

func (m memState) accounts() []keys.Address {
	var out []keys.Address
	for k := range m {
		if a, ok := strings.CutPrefix(k, ledger.AccountKeyPrefix); ok {
			out = append(out, keys.Address(a))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Home reads blocks and state straight from a stopped node's home
// directory: its block store, its genesis and its ledger state.
type Home struct {
	gen    *types.GenesisDoc
	blocks *store.BlockStore
	bdb    dbm.DB
	app    *chain.App
}

// OpenHome opens the node home (it must not be running).
func OpenHome(home string) (*Home, error) {
	c, err := chain.LoadConfig(home)
	if err != nil {
		return nil, err
	}
	gen, err := types.GenesisDocFromFile(c.GenesisFile())
	if err != nil {
		return nil, fmt.Errorf("genesis: %w", err)
	}
	bdb, err := dbm.NewDB("blockstore", dbm.BackendType(c.DBBackend), c.DBDir())
	if err != nil {
		return nil, fmt.Errorf("block store in %s (is the node still running?): %w", c.DBDir(), err)
	}
	app, err := chain.OpenApp(filepath.Join(home, "data"), nil)
	if err != nil {
		bdb.Close()
		return nil, err
	}
	return &Home{gen: gen, blocks: store.NewBlockStore(bdb), bdb: bdb, app: app}, nil
}

// Close closes the home's databases.
func (h *Home) Close() error { return errors.Join(h.app.Close(), h.bdb.Close()) }

// Genesis implements BlockSource.
func (h *Home) Genesis(context.Context) (*types.GenesisDoc, error) { return h.gen, nil }

// Latest implements BlockSource: the ledger's committed height and hash.
func (h *Home) Latest(ctx context.Context) (int64, []byte, error) {
	info, err := h.app.Info(ctx, &abci.InfoRequest{})
	if err != nil {
		return 0, nil, err
	}
	return info.LastBlockHeight, info.LastBlockAppHash, nil
}

// Block implements BlockSource.
func (h *Home) Block(_ context.Context, height int64) (*types.Block, error) {
	b, _ := h.blocks.LoadBlock(height)
	if b == nil {
		return nil, fmt.Errorf("block %d is not in the block store (base %d, height %d)", height, h.blocks.Base(), h.blocks.Height())
	}
	return b, nil
}

// Accounts implements StateSource from the ledger database.
func (h *Home) Accounts(ctx context.Context, addrs []keys.Address) (map[keys.Address]chainrpc.AccountInfo, int64, error) {
	view := ledger.View{R: h.app.DB()}
	out := map[keys.Address]chainrpc.AccountInfo{}
	for _, a := range addrs {
		acct, ok, err := view.Account(a)
		if err != nil {
			return nil, 0, err
		}
		if ok {
			out[a] = chainrpc.AccountInfo{Address: a, Account: acct}
		}
	}
	// Accounts the node has and the replay lacks.
	// The prefix ends in '/', so the next byte value bounds the range.
	prefix := ledger.AccountKeyPrefix
	it, err := h.app.DB().Iterator([]byte(prefix), []byte(prefix[:len(prefix)-1]+string(prefix[len(prefix)-1]+1)))
	if err != nil {
		return nil, 0, err
	}
	defer it.Close()
	for ; it.Valid(); it.Next() {
		a := keys.Address(strings.TrimPrefix(string(it.Key()), prefix))
		if _, ok := out[a]; !ok {
			acct, _, err := view.Account(a)
			if err != nil {
				return nil, 0, err
			}
			out[a] = chainrpc.AccountInfo{Address: a, Account: acct}
		}
	}
	info, err := h.app.Info(ctx, &abci.InfoRequest{})
	if err != nil {
		return nil, 0, err
	}
	return out, info.LastBlockHeight, it.Error()
}

// Supply implements StateSource.
func (h *Home) Supply(context.Context) (ledger.Supply, error) {
	return ledger.View{R: h.app.DB()}.Supply()
}

// Epoch implements StateSource.
func (h *Home) Epoch(_ context.Context, n uint64) (ledger.EpochRecord, []ledger.Payout, bool, error) {
	view := ledger.View{R: h.app.DB()}
	rec, ok, err := view.Epoch(n)
	if err != nil || !ok {
		return rec, nil, false, err
	}
	ps, err := view.Payouts(n)
	return rec, ps, err == nil, err
}
