package chain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	abci "github.com/cometbft/cometbft/abci/types"

	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// Query answers reads of committed state.
func (app *App) Query(_ context.Context, req *abci.QueryRequest) (*abci.QueryResponse, error) {
	app.mu.Lock()
	height := app.height
	app.mu.Unlock()
	v, code, err := app.query(req.Path, string(req.Data), height)
	resp := &abci.QueryResponse{Code: code, Height: height, Key: req.Data}
	if err != nil {
		resp.Log = err.Error()
		return resp, nil
	}
	if resp.Value, err = json.Marshal(v); err != nil {
		resp.Code, resp.Log = chainrpc.QueryCodeInternal, err.Error()
	}
	return resp, nil
}

func (app *App) query(path, arg string, height int64) (any, uint32, error) {
	h, ok := queryHandlers[path]
	if !ok {
		return nil, chainrpc.QueryCodeBadRequest, fmt.Errorf("unknown query path %q", path)
	}
	v, err := h(query{view: ledger.View{R: app.db}, arg: arg, height: height})
	var qe *queryError
	switch {
	case err == nil:
		return v, 0, nil
	case errors.As(err, &qe):
		return nil, qe.code, qe.err
	}
	return nil, chainrpc.QueryCodeInternal, err
}

// query is one read of committed state: its argument and the height it
// answers at.
type query struct {
	view   ledger.View
	arg    string
	height int64
}

// queryError is a failed query's answer with its result code; any other
// error is a storage error (QueryCodeInternal).
type queryError struct {
	code uint32
	err  error
}

func (e *queryError) Error() string { return e.err.Error() }

func badRequest(err error) error { return &queryError{chainrpc.QueryCodeBadRequest, err} }

func (q query) notFound(what string) error {
	return &queryError{chainrpc.QueryCodeNotFound, fmt.Errorf("%s %q not found", what, q.arg)}
}

// found answers a lookup: the value, not found, or a storage error.
func (q query) found(v any, ok bool, err error, what string) (any, error) {
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, q.notFound(what)
	}
	return v, nil
}

// address reads the argument as an account address.
func (q query) address() (keys.Address, error) {
	addr := keys.Address(q.arg)
	if err := addr.Validate(); err != nil {
		return "", badRequest(err)
	}
	return addr, nil
}

// hash reads the argument as a hash in hex.
func (q query) hash(what string) (receipt.Hash, error) {
	var h receipt.Hash
	if err := h.UnmarshalText([]byte(strings.ToLower(q.arg))); err != nil {
		return h, badRequest(fmt.Errorf("%s: %w", what, err))
	}
	return h, nil
}

// epochNumber reads the argument as an epoch number.
func (q query) epochNumber() (uint64, error) {
	n, err := strconv.ParseUint(q.arg, 10, 64)
	if err != nil {
		return 0, badRequest(fmt.Errorf("epoch %q: want a number", q.arg))
	}
	return n, nil
}

// queryHandlers answer each query path.
var queryHandlers = map[string]func(query) (any, error){
	chainrpc.PathAccount:    queryAccount,
	chainrpc.PathReceipt:    queryReceipt,
	chainrpc.PathTx:         queryTx,
	chainrpc.PathDeposit:    queryDeposit,
	chainrpc.PathParams:     func(q query) (any, error) { return q.view.Params() },
	chainrpc.PathSupply:     func(q query) (any, error) { return q.view.Supply() },
	chainrpc.PathEpoch:      queryEpoch,
	chainrpc.PathPayouts:    queryPayouts,
	chainrpc.PathPayout:     queryPayout,
	chainrpc.PathProvider:   queryProvider,
	chainrpc.PathCase:       queryCase,
	chainrpc.PathCases:      queryCases,
	chainrpc.PathGovernance: queryGovernance,
}

func queryAccount(q query) (any, error) {
	addr, err := q.address()
	if err != nil {
		return nil, err
	}
	a, ok, err := q.view.Account(addr)
	if err != nil || !ok {
		return q.found(nil, ok, err, "account")
	}
	h := uint64(q.height)
	return chainrpc.AccountInfo{Address: addr, Account: a, Claimable: a.Claimable(h), Unvested: a.Unvested(h)}, nil
}

func queryReceipt(q query) (any, error) {
	gateway, id, err := chainrpc.ParseReceiptRef(q.arg)
	if err != nil {
		return nil, badRequest(err)
	}
	s, ok, err := q.view.Settlement(gateway, id)
	return q.found(s, ok, err, "settled receipt")
}

func queryTx(q query) (any, error) {
	h, err := q.hash("tx hash")
	if err != nil {
		return nil, err
	}
	t, ok, err := q.view.Tx(h)
	return q.found(t, ok, err, "transaction")
}

func queryDeposit(q query) (any, error) {
	c, g, _ := strings.Cut(q.arg, "/")
	consumer, gateway := keys.Address(c), keys.Address(g)
	if err := consumer.Validate(); err != nil {
		return nil, badRequest(err)
	}
	if err := gateway.Validate(); err != nil {
		return nil, badRequest(err)
	}
	d, err := q.view.Deposit(consumer, gateway)
	if err != nil {
		return nil, err
	}
	return chainrpc.DepositInfo{Consumer: consumer, Gateway: gateway, Deposit: d, Drawable: d.Drawable(uint64(q.height))}, nil
}

// queryEpoch answers the running epoch for an empty argument, else the
// finished epoch of that number.
func queryEpoch(q query) (any, error) {
	if q.arg == "" {
		st, err := q.view.EpochState()
		if err != nil {
			return nil, err
		}
		p, err := q.view.Params()
		if err != nil {
			return nil, err
		}
		return chainrpc.EpochInfo{EpochState: st, EndHeight: st.Start + p.EpochBlocks - 1, Height: q.height}, nil
	}
	n, err := q.epochNumber()
	if err != nil {
		return nil, err
	}
	r, ok, err := q.view.Epoch(n)
	return q.found(r, ok, err, "finished epoch")
}

func queryPayouts(q query) (any, error) {
	n, err := q.epochNumber()
	if err != nil {
		return nil, err
	}
	if _, ok, err := q.view.Epoch(n); err != nil || !ok {
		return q.found(nil, ok, err, "finished epoch")
	}
	ps, err := q.view.Payouts(n)
	if err != nil {
		return nil, err
	}
	return append([]ledger.Payout{}, ps...), nil
}

func queryPayout(q query) (any, error) {
	e, a, _ := strings.Cut(q.arg, "/")
	n, err := strconv.ParseUint(e, 10, 64)
	if err != nil {
		return nil, badRequest(fmt.Errorf("payout %q: want EPOCH/ADDRESS", q.arg))
	}
	addr := keys.Address(a)
	if err := addr.Validate(); err != nil {
		return nil, badRequest(err)
	}
	pr, ok, err := q.view.PayoutProof(n, addr)
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, &queryError{chainrpc.QueryCodeNotFound, fmt.Errorf("no payout to %s in epoch %d (the epoch has not ended, or the account earned nothing in it)", addr, n)}
	}
	return pr, nil
}

func queryProvider(q query) (any, error) {
	addr, err := q.address()
	if err != nil {
		return nil, err
	}
	a, ok, err := q.view.Account(addr)
	if err != nil || !ok || !a.Has(ledger.RoleProvider) {
		return q.found(nil, ok && a.Has(ledger.RoleProvider), err, "provider")
	}
	r, err := q.view.ProviderRecord(addr)
	if err != nil {
		return nil, err
	}
	return chainrpc.ProviderInfo{Address: addr, ProviderRecord: r, Reputation: r.Reputation(), Jailed: a.Jailed, Stake: a.Stake}, nil
}

func queryCase(q query) (any, error) {
	h, err := q.hash("evidence hash")
	if err != nil {
		return nil, err
	}
	c, ok, err := q.view.Case(h)
	return q.found(c, ok, err, "case")
}

// queryCases lists the cases that have not matured, with the receipts and
// texts of canary cases.
func queryCases(q query) (any, error) {
	evs, err := q.view.OpenCases(uint64(max(q.height, 0)))
	if err != nil {
		return nil, err
	}
	out := []chainrpc.OpenCase{}
	for _, ev := range evs {
		c, ok, err := q.view.Case(ev)
		if err != nil {
			return nil, err
		}
		if !ok || c.Matured {
			continue
		}
		oc := chainrpc.OpenCase{Evidence: ev, Case: c}
		if c.Canary {
			o, ok, err := q.view.CaseOpening(ev)
			if err != nil {
				return nil, err
			}
			if ok {
				oc.Opening = &o
			}
		}
		out = append(out, oc)
	}
	return out, nil
}

func queryGovernance(q query) (any, error) {
	id, err := q.view.ChainID()
	if err != nil {
		return nil, err
	}
	v, err := q.view.ParamsVersion()
	if err != nil {
		return nil, err
	}
	vals, err := q.view.Validators()
	if err != nil {
		return nil, err
	}
	return chainrpc.GovernanceInfo{ChainID: id, ParamsVersion: v, Validators: append([]ledger.Validator{}, vals...)}, nil
}
