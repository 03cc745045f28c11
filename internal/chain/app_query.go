package chain

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
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
	PathAccount = "/account" // data: address → AccountInfo
	PathReceipt = "/receipt" // data: "gateway/request_id" → ledger.Settlement
	PathTx      = "/tx"      // data: tx hash in hex → ledger.TxRecord
	PathDeposit = "/deposit" // data: "consumer/gateway" → DepositInfo
	PathParams  = "/params"  // → ledger.Params
	PathSupply  = "/supply"  // → ledger.Supply
	// PathEpoch: data "" → EpochInfo of the running epoch; an epoch number
	// → the finished epoch's ledger.EpochRecord.
	PathEpoch      = "/epoch"
	PathPayouts    = "/payouts"    // data: epoch number → []ledger.Payout, sorted by account
	PathPayout     = "/payout"     // data: "epoch/address" → ledger.PayoutProof
	PathGovernance = "/governance" // → GovernanceInfo
	PathProvider   = "/provider"   // data: address → ProviderInfo (verification record)
	PathCase       = "/case"       // data: evidence hash in hex → ledger.Case
	// PathCases → []OpenCase: the cases that have not matured, with the
	// receipts and texts of canary cases (anyone may replay them).
	PathCases = "/cases"
)

// OpenCase is a case still collecting verdicts; Opening holds a canary
// case's receipts and texts (empty for a sample case).
type OpenCase struct {
	Evidence receipt.Hash        `json:"evidence"`
	Case     ledger.Case         `json:"case"`
	Opening  *ledger.CaseOpening `json:"opening,omitempty"`
}

// ProviderInfo is a provider's verification record and reputation.
type ProviderInfo struct {
	Address keys.Address `json:"address"`
	ledger.ProviderRecord
	// Reputation is in thousandths; it weighs the provider's rewards.
	Reputation uint64 `json:"reputation_milli"`
	Jailed     bool   `json:"jailed"`
	// Stake is the provider's bonded stake (gateways serve only providers
	// staked at least min_provider_stake).
	Stake money.Amount `json:"stake"`
}

// EpochInfo is the running epoch and the last finished one.
type EpochInfo struct {
	ledger.EpochState
	// EndHeight is the height whose block ends the epoch.
	EndHeight uint64 `json:"end_height"`
	Height    int64  `json:"height"`
}

// GovernanceInfo is who approves parameter changes and the version the
// next change's approvals must sign.
type GovernanceInfo struct {
	ChainID       string             `json:"chain_id"`
	ParamsVersion uint64             `json:"params_version"`
	Validators    []ledger.Validator `json:"validators"`
}

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
	// Claimable and Unvested split the account's vesting schedules at the
	// height of the answer.
	Claimable money.Amount `json:"claimable"`
	Unvested  money.Amount `json:"unvested"`
}

// DepositInfo is what a consumer locked for a gateway.
type DepositInfo struct {
	Consumer keys.Address `json:"consumer"`
	Gateway  keys.Address `json:"gateway"`
	ledger.Deposit
	// Drawable is what the gateway's receipts can still be paid from at
	// the height of the answer: the locked part and what is unlocking.
	Drawable money.Amount `json:"drawable"`
}

// ParseReceiptRef reads the argument of PathReceipt, "gateway/request_id":
// request ids are unique only per gateway, so a settlement is named by both.
func ParseReceiptRef(ref string) (keys.Address, string, error) {
	g, id, cut := strings.Cut(ref, "/")
	gateway := keys.Address(g)
	if !cut || gateway.Validate() != nil || id == "" {
		return "", "", fmt.Errorf("receipt %q: want GATEWAY/REQUEST_ID (settlements are kept per gateway: the address of the gateway that settled it, a slash, the request id)", ref)
	}
	return gateway, id, nil
}

// ReceiptRef is the argument of PathReceipt for gateway's receipt requestID.
func ReceiptRef(gateway keys.Address, requestID string) string {
	return string(gateway) + "/" + requestID
}

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
		resp.Code, resp.Log = QueryCodeInternal, err.Error()
	}
	return resp, nil
}

func (app *App) query(path, arg string, height int64) (any, uint32, error) {
	view := ledger.View{R: app.db}
	notFound := func(what string) (any, uint32, error) {
		return nil, QueryCodeNotFound, fmt.Errorf("%s %q not found", what, arg)
	}
	internal := func(err error) (any, uint32, error) { return nil, QueryCodeInternal, err }
	// found answers a lookup: the value, not found, or a storage error.
	found := func(v any, ok bool, err error, what string) (any, uint32, error) {
		switch {
		case err != nil:
			return internal(err)
		case !ok:
			return notFound(what)
		}
		return v, 0, nil
	}
	hashArg := func(what string) (receipt.Hash, error) {
		var h receipt.Hash
		if err := h.UnmarshalText([]byte(strings.ToLower(arg))); err != nil {
			return h, fmt.Errorf("%s: %w", what, err)
		}
		return h, nil
	}
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
		return AccountInfo{Address: addr, Account: a, Claimable: a.Claimable(uint64(height)), Unvested: a.Unvested(uint64(height))}, 0, nil
	case PathReceipt:
		gateway, id, err := ParseReceiptRef(arg)
		if err != nil {
			return nil, QueryCodeBadRequest, err
		}
		s, ok, err := view.Settlement(gateway, id)
		return found(s, ok, err, "settled receipt")
	case PathTx:
		h, err := hashArg("tx hash")
		if err != nil {
			return nil, QueryCodeBadRequest, err
		}
		t, ok, err := view.Tx(h)
		return found(t, ok, err, "transaction")
	case PathDeposit:
		c, g, _ := strings.Cut(arg, "/")
		consumer, gateway := keys.Address(c), keys.Address(g)
		if err := consumer.Validate(); err != nil {
			return nil, QueryCodeBadRequest, err
		}
		if err := gateway.Validate(); err != nil {
			return nil, QueryCodeBadRequest, err
		}
		d, err := view.Deposit(consumer, gateway)
		if err != nil {
			return internal(err)
		}
		return DepositInfo{Consumer: consumer, Gateway: gateway, Deposit: d, Drawable: d.Drawable(uint64(height))}, 0, nil
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
	case PathEpoch:
		if arg == "" {
			st, err := view.EpochState()
			if err != nil {
				return internal(err)
			}
			p, err := view.Params()
			if err != nil {
				return internal(err)
			}
			return EpochInfo{EpochState: st, EndHeight: st.Start + p.EpochBlocks - 1, Height: height}, 0, nil
		}
		n, err := strconv.ParseUint(arg, 10, 64)
		if err != nil {
			return nil, QueryCodeBadRequest, fmt.Errorf("epoch %q: want a number", arg)
		}
		r, ok, err := view.Epoch(n)
		return found(r, ok, err, "finished epoch")
	case PathPayouts:
		n, err := strconv.ParseUint(arg, 10, 64)
		if err != nil {
			return nil, QueryCodeBadRequest, fmt.Errorf("epoch %q: want a number", arg)
		}
		if _, ok, err := view.Epoch(n); err != nil || !ok {
			return found(nil, ok, err, "finished epoch")
		}
		ps, err := view.Payouts(n)
		if err != nil {
			return internal(err)
		}
		return append([]ledger.Payout{}, ps...), 0, nil
	case PathPayout:
		e, a, _ := strings.Cut(arg, "/")
		n, err := strconv.ParseUint(e, 10, 64)
		if err != nil {
			return nil, QueryCodeBadRequest, fmt.Errorf("payout %q: want EPOCH/ADDRESS", arg)
		}
		addr := keys.Address(a)
		if err := addr.Validate(); err != nil {
			return nil, QueryCodeBadRequest, err
		}
		pr, ok, err := view.PayoutProof(n, addr)
		switch {
		case err != nil:
			return internal(err)
		case !ok:
			return nil, QueryCodeNotFound, fmt.Errorf("no payout to %s in epoch %d (the epoch has not ended, or the account earned nothing in it)", addr, n)
		}
		return pr, 0, nil
	case PathProvider:
		addr := keys.Address(arg)
		if err := addr.Validate(); err != nil {
			return nil, QueryCodeBadRequest, err
		}
		a, ok, err := view.Account(addr)
		switch {
		case err != nil:
			return internal(err)
		case !ok || !a.Has(ledger.RoleProvider):
			return notFound("provider")
		}
		r, err := view.ProviderRecord(addr)
		if err != nil {
			return internal(err)
		}
		return ProviderInfo{Address: addr, ProviderRecord: r, Reputation: r.Reputation(), Jailed: a.Jailed, Stake: a.Stake}, 0, nil
	case PathCase:
		h, err := hashArg("evidence hash")
		if err != nil {
			return nil, QueryCodeBadRequest, err
		}
		c, ok, err := view.Case(h)
		return found(c, ok, err, "case")
	case PathCases:
		evs, err := view.OpenCases(uint64(max(height, 0)))
		if err != nil {
			return internal(err)
		}
		out := []OpenCase{}
		for _, ev := range evs {
			c, ok, err := view.Case(ev)
			if err != nil {
				return internal(err)
			}
			if !ok || c.Matured {
				continue
			}
			oc := OpenCase{Evidence: ev, Case: c}
			if c.Canary {
				o, ok, err := view.CaseOpening(ev)
				if err != nil {
					return internal(err)
				}
				if ok {
					oc.Opening = &o
				}
			}
			out = append(out, oc)
		}
		return out, 0, nil
	case PathGovernance:
		id, err := view.ChainID()
		if err != nil {
			return internal(err)
		}
		v, err := view.ParamsVersion()
		if err != nil {
			return internal(err)
		}
		vals, err := view.Validators()
		if err != nil {
			return internal(err)
		}
		return GovernanceInfo{ChainID: id, ParamsVersion: v, Validators: append([]ledger.Validator{}, vals...)}, 0, nil
	}
	return nil, QueryCodeBadRequest, fmt.Errorf("unknown query path %q", path)
}
