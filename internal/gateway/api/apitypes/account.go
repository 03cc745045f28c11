package apitypes

import (
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
)

// Account is the answer of GET /v1/account: the caller's funds and spend.
// Amounts are integers in base units (10⁻⁶ token).
type Account struct {
	// Object is "account".
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
	// Settled is spend the ledger has settled.
	Settled  money.Amount  `json:"settled_spend"`
	Receipts ReceiptCounts `json:"receipts"`
}

// ReceiptCounts counts the account's receipts at this gateway; Rejected
// ones were refused by the ledger (not charged to the account).
type ReceiptCounts struct {
	Settled  int64 `json:"settled"`
	Pending  int64 `json:"pending"`
	Rejected int64 `json:"rejected"`
}
