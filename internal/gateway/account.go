package gateway

import (
	"net/http"

	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
)

// accountView is the answer of GET /v1/account. Amounts are integers in base
// units (10⁻⁶ token).
type accountView struct {
	Object  string       `json:"object"`
	Account keys.Address `json:"account"`
	// Ledger is false when the gateway runs without a ledger; the ledger
	// fields are then absent.
	Ledger  bool          `json:"ledger"`
	Balance *money.Amount `json:"balance,omitempty"`
	// Deposit is what the account locked for this gateway on the ledger:
	// requests are admitted against it (Spendable), and receipts paid
	// from it. Unlocking was taken out of it: it still pays what this
	// gateway admitted before, and returns to the balance later.
	Deposit   *money.Amount `json:"deposit,omitempty"`
	Unlocking *money.Amount `json:"unlocking,omitempty"`
	Spendable *money.Amount `json:"spendable,omitempty"`
	// Reserved is held by this account's requests in flight.
	Reserved money.Amount `json:"reserved"`
	// Pending is charged by receipts the ledger has not settled yet.
	Pending money.Amount `json:"pending_settlement"`
	// Settled is spend the ledger has settled; Rejected is receipts it
	// refused (not charged to this account).
	Settled  money.Amount  `json:"settled_spend"`
	Receipts receiptCounts `json:"receipts"`
}

type receiptCounts struct {
	Settled  int64 `json:"settled"`
	Pending  int64 `json:"pending"`
	Rejected int64 `json:"rejected"`
}

// handleAccount shows the caller's funds and spend.
func (g *Gateway) handleAccount(w http.ResponseWriter, r *http.Request) {
	key, e := g.authenticate(r)
	if e != nil {
		apierr.WriteOpenAI(w, e)
		return
	}
	sp, err := g.cfg.Store.ConsumerSpend(r.Context(), key.Account)
	if err != nil {
		g.log.Error("read spend", "account", key.Account, "err", err)
		apierr.WriteOpenAI(w, apierr.Internal("could not read the account's receipts"))
		return
	}
	v := accountView{Object: "account", Account: key.Account, Pending: sp.Pending, Settled: sp.Settled,
		Receipts: receiptCounts{Settled: sp.SettledCount, Pending: sp.PendingCount, Rejected: sp.RejectedCount}}
	if g.funds != nil {
		f, err := g.cfg.Ledger.ConsumerFunds(r.Context(), key.Account)
		if err != nil {
			apierr.WriteOpenAI(w, apierr.Unavailable("ledger_unavailable", "The gateway cannot read this account from the ledger right now (%v); please retry.", err))
			return
		}
		spendable := f.Spendable()
		v.Ledger, v.Balance, v.Deposit, v.Unlocking, v.Spendable = true, &f.Balance, &f.Deposit, &f.Unlocking, &spendable
		if v.Reserved, v.Pending, err = g.funds.holdings(r.Context(), key.Account); err != nil {
			g.log.Error("read holdings", "account", key.Account, "err", err)
			apierr.WriteOpenAI(w, apierr.Internal("could not read the account's reservations"))
			return
		}
	}
	writeJSON(w, http.StatusOK, v)
}
