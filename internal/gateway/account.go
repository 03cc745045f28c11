package gateway

import (
	"context"
	"net/http"

	"github.com/idlegrid/idlegrid/internal/gateway/api/apitypes"
	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/store"
)

// handleAccount shows the caller's funds and spend.
func (g *Gateway) handleAccount(w http.ResponseWriter, r *http.Request) {
	key, e := g.authenticate(r)
	if e == nil {
		var v apitypes.Account
		if v, e = g.account(r.Context(), key); e == nil {
			writeJSON(w, http.StatusOK, v)
			return
		}
	}
	apierr.WriteOpenAI(w, e)
}

// AccountFor is what GET /v1/account answers to a request with apiKey as
// its bearer token, without HTTP (the web UI's account page). A refusal
// is an *apierr.Error with the status the API would answer; an empty key
// is refused, as it is from a remote caller.
func (g *Gateway) AccountFor(ctx context.Context, apiKey string) (apitypes.Account, error) {
	if apiKey == "" {
		return apitypes.Account{}, missingKey()
	}
	key, e := g.lookupKey(ctx, apiKey)
	if e == nil {
		var v apitypes.Account
		if v, e = g.account(ctx, key); e == nil {
			return v, nil
		}
	}
	return apitypes.Account{}, e
}

// account builds the account view of key's account.
func (g *Gateway) account(ctx context.Context, key store.APIKey) (apitypes.Account, *apierr.Error) {
	sp, err := g.cfg.Store.ConsumerSpend(ctx, key.Account)
	if err != nil {
		g.log.Error("read spend", "account", key.Account, "err", err)
		return apitypes.Account{}, apierr.Internal("could not read the account's receipts")
	}
	v := apitypes.Account{Object: "account", Account: key.Account, Pending: sp.Pending, Settled: sp.Settled,
		Receipts: apitypes.ReceiptCounts{Settled: sp.SettledCount, Pending: sp.PendingCount, Rejected: sp.RejectedCount}}
	if g.funds != nil {
		f, err := g.cfg.Ledger.ConsumerFunds(ctx, key.Account)
		if err != nil {
			return apitypes.Account{}, apierr.Unavailable("ledger_unavailable", "The gateway cannot read this account from the ledger right now (%v); please retry.", err)
		}
		spendable := f.Spendable()
		v.Ledger, v.Balance, v.Deposit, v.Unlocking, v.Spendable = true, &f.Balance, &f.Deposit, &f.Unlocking, &spendable
		if v.Reserved, v.Pending, err = g.funds.holdings(ctx, key.Account); err != nil {
			g.log.Error("read holdings", "account", key.Account, "err", err)
			return apitypes.Account{}, apierr.Internal("could not read the account's reservations")
		}
	}
	return v, nil
}
