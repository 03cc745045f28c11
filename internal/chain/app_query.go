package chain

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	abci "github.com/cometbft/cometbft/abci/types"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// Query paths the application answers, each with JSON in the response
// value. Data is the path's argument as text.
const (
	PathAccount   = "/account"   // data: address → AccountInfo
	PathReceipt   = "/receipt"   // data: request id → ledger.Settlement
	PathTx        = "/tx"        // data: tx hash in hex → ledger.TxRecord
	PathAllowance = "/allowance" // data: "consumer/gateway" → AllowanceInfo
	PathParams    = "/params"    // → ledger.Params
	PathSupply    = "/supply"    // → ledger.Supply
)

// Query result codes (0 is success).
const (
	QueryCodeNotFound   uint32 = 1
	QueryCodeBadRequest uint32 = 2
	QueryCodeInternal   uint32 = 3
)

// AccountInfo is an account as queries return it.
type AccountInfo struct {
	Address keys.Address `json:"address"`
	ledger.Account
}

// AllowanceInfo is what a gateway may still charge a consumer.
type AllowanceInfo struct {
	Consumer  keys.Address `json:"consumer"`
	Gateway   keys.Address `json:"gateway"`
	Allowance money.Amount `json:"allowance"`
}

// Query answers reads of committed state.
func (app *App) Query(_ context.Context, req *abci.QueryRequest) (*abci.QueryResponse, error) {
	app.mu.Lock()
	height := app.height
	app.mu.Unlock()
	v, code, err := app.query(req.Path, string(req.Data))
	resp := &abci.QueryResponse{Code: code, Height: height, Key: req.Data}
	if err != nil {
		resp.Log = err.Error()
		return resp, nil
	}
	if resp.Value, err = json.Marshal(v); err != nil {
		resp.Code, resp.Log = QueryCodeInternal, err.Error()
	}
	return resp, nil
}

func (app *App) query(path, arg string) (any, uint32, error) {
	view := ledger.View{R: app.db}
	notFound := func(what string) (any, uint32, error) {
		return nil, QueryCodeNotFound, fmt.Errorf("%s %q not found", what, arg)
	}
	internal := func(err error) (any, uint32, error) { return nil, QueryCodeInternal, err }
	switch path {
	case PathAccount:
		addr := keys.Address(arg)
		if err := addr.Validate(); err != nil {
			return nil, QueryCodeBadRequest, err
		}
		a, ok, err := view.Account(addr)
		switch {
		case err != nil:
			return internal(err)
		case !ok:
			return notFound("account")
		}
		return AccountInfo{Address: addr, Account: a}, 0, nil
	case PathReceipt:
		s, ok, err := view.Settlement(arg)
		switch {
		case err != nil:
			return internal(err)
		case !ok:
			return notFound("settled receipt")
		}
		return s, 0, nil
	case PathTx:
		var h receipt.Hash
		if err := h.UnmarshalText([]byte(strings.ToLower(arg))); err != nil {
			return nil, QueryCodeBadRequest, fmt.Errorf("tx hash: %w", err)
		}
		t, ok, err := view.Tx(h)
		switch {
		case err != nil:
			return internal(err)
		case !ok:
			return notFound("transaction")
		}
		return t, 0, nil
	case PathAllowance:
		c, g, _ := strings.Cut(arg, "/")
		consumer, gateway := keys.Address(c), keys.Address(g)
		if err := consumer.Validate(); err != nil {
			return nil, QueryCodeBadRequest, err
		}
		if err := gateway.Validate(); err != nil {
			return nil, QueryCodeBadRequest, err
		}
		a, err := view.Allowance(consumer, gateway)
		if err != nil {
			return internal(err)
		}
		return AllowanceInfo{Consumer: consumer, Gateway: gateway, Allowance: a}, 0, nil
	case PathParams:
		p, err := view.Params()
		if err != nil {
			return internal(err)
		}
		return p, 0, nil
	case PathSupply:
		s, err := view.Supply()
		if err != nil {
			return internal(err)
		}
		return s, 0, nil
	}
	return nil, QueryCodeBadRequest, fmt.Errorf("unknown query path %q", path)
}
