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

// RPCAudit reads blocks and state from a node's RPC server.
type RPCAudit struct {
	c *rpchttp.HTTP
}

// NewRPCAudit connects to the node at rpcURL.
func NewRPCAudit(rpcURL string) (*RPCAudit, error) {
	c, err := rpchttp.New(rpcURL)
	if err != nil {
		return nil, fmt.Errorf("RPC client for %s: %w", rpcURL, err)
	}
	return &RPCAudit{c: c}, nil
}

// Genesis implements BlockSource.
func (r *RPCAudit) Genesis(ctx context.Context) (*types.GenesisDoc, error) {
	res, err := r.c.Genesis(ctx)
	if err != nil {
		return nil, err
	}
	return res.Genesis, nil
}

// Latest implements BlockSource.
func (r *RPCAudit) Latest(ctx context.Context) (int64, []byte, error) {
	res, err := r.c.ABCIInfo(ctx)
	if err != nil {
		return 0, nil, err
	}
	return res.Response.LastBlockHeight, res.Response.LastBlockAppHash, nil
}

// Block implements BlockSource.
func (r *RPCAudit) Block(ctx context.Context, h int64) (*types.Block, error) {
	res, err := r.c.Block(ctx, &h)
	if err != nil {
		return nil, err
	}
	return res.Block, nil
}

// Accounts implements StateSource with one query per account; the height
// is the highest any answer reports.
func (r *RPCAudit) Accounts(ctx context.Context, addrs []keys.Address) (map[keys.Address]AccountInfo, int64, error) {
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

// Supply implements StateSource.
func (r *RPCAudit) Supply(ctx context.Context) (ledger.Supply, error) {
	res, err := r.c.ABCIQuery(ctx, PathSupply, nil)
	if err != nil {
		return ledger.Supply{}, err
	}
	var s ledger.Supply
	return s, json.Unmarshal(res.Response.Value, &s)
}

// Epoch implements StateSource.
func (r *RPCAudit) Epoch(ctx context.Context, n uint64) (ledger.EpochRecord, []ledger.Payout, bool, error) {
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
func (r *RPCAudit) query(ctx context.Context, path string, arg []byte, v any) (bool, error) {
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
