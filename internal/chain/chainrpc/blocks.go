package chainrpc

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	rpchttp "github.com/cometbft/cometbft/rpc/client/http"
	"github.com/cometbft/cometbft/types"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
)

// BlockReader reads a node's genesis and blocks from its RPC server, and
// the state an audit compares with its replay: it is the audit's
// BlockSource and StateSource over RPC, and the explorer's block source.
type BlockReader struct {
	c *rpchttp.HTTP
}

// NewBlockReader connects to the node at rpcURL.
func NewBlockReader(rpcURL string) (*BlockReader, error) {
	c, err := rpchttp.New(rpcURL)
	if err != nil {
		return nil, fmt.Errorf("RPC client for %s: %w", rpcURL, err)
	}
	return &BlockReader{c: c}, nil
}

// Genesis implements audit.BlockSource.
func (r *BlockReader) Genesis(ctx context.Context) (*types.GenesisDoc, error) {
	res, err := r.c.Genesis(ctx)
	if err != nil {
		return nil, err
	}
	return res.Genesis, nil
}

// Latest implements audit.BlockSource.
func (r *BlockReader) Latest(ctx context.Context) (int64, []byte, error) {
	res, err := r.c.ABCIInfo(ctx)
	if err != nil {
		return 0, nil, err
	}
	return res.Response.LastBlockHeight, res.Response.LastBlockAppHash, nil
}

// Block implements audit.BlockSource.
func (r *BlockReader) Block(ctx context.Context, h int64) (*types.Block, error) {
	res, err := r.c.Block(ctx, &h)
	if err != nil {
		return nil, err
	}
	return res.Block, nil
}

// Accounts implements audit.StateSource with one query per account; the height
// is the highest any answer reports.
func (r *BlockReader) Accounts(ctx context.Context, addrs []keys.Address) (map[keys.Address]AccountInfo, int64, error) {
	out := map[keys.Address]AccountInfo{}
	var height int64
	for _, a := range addrs {
		res, err := r.c.ABCIQuery(ctx, PathAccount, []byte(a))
		if err != nil {
			return nil, 0, err
		}
		height = max(height, res.Response.Height)
		if res.Response.Code == QueryCodeNotFound {
			continue
		}
		if res.Response.Code != 0 {
			return nil, 0, &QueryError{Path: PathAccount, Code: res.Response.Code, Log: res.Response.Log}
		}
		var info AccountInfo
		if err := json.Unmarshal(res.Response.Value, &info); err != nil {
			return nil, 0, fmt.Errorf("account %s: %w", a, err)
		}
		out[a] = info
	}
	return out, height, nil
}

// Supply implements audit.StateSource.
func (r *BlockReader) Supply(ctx context.Context) (ledger.Supply, error) {
	res, err := r.c.ABCIQuery(ctx, PathSupply, nil)
	if err != nil {
		return ledger.Supply{}, err
	}
	var s ledger.Supply
	return s, json.Unmarshal(res.Response.Value, &s)
}

// Epoch implements audit.StateSource.
func (r *BlockReader) Epoch(ctx context.Context, n uint64) (ledger.EpochRecord, []ledger.Payout, bool, error) {
	var rec ledger.EpochRecord
	var ps []ledger.Payout
	arg := []byte(strconv.FormatUint(n, 10))
	ok, err := r.query(ctx, PathEpoch, arg, &rec)
	if err != nil || !ok {
		return rec, nil, false, err
	}
	ok, err = r.query(ctx, PathPayouts, arg, &ps)
	return rec, ps, ok, err
}

// query decodes the answer to an ABCI query into v; ok is false when the
// node answers not found.
func (r *BlockReader) query(ctx context.Context, path string, arg []byte, v any) (bool, error) {
	res, err := r.c.ABCIQuery(ctx, path, arg)
	if err != nil {
		return false, err
	}
	switch res.Response.Code {
	case 0:
		return true, json.Unmarshal(res.Response.Value, v)
	case QueryCodeNotFound:
		return false, nil
	}
	return false, &QueryError{Path: path, Code: res.Response.Code, Log: res.Response.Log}
}
