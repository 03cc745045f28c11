package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"math"
	"time"

	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/store"
)

// SharedFunds is a database where gateways serving the same consumers keep
// their reservations and receipts, so that admission at one gateway sees
// what the others hold. The store implements it on PostgreSQL.
type SharedFunds interface {
	// Reserve records the hold if the ledger view covers it on top of
	// every gateway's holdings, or fails with store.ErrInsufficientFunds.
	Reserve(ctx context.Context, h store.Hold, v store.FundsView) (store.Holdings, error)
	Release(ctx context.Context, id string) error
	ConsumerHoldings(ctx context.Context, consumer keys.Address, gateway keys.PublicKey, asOf time.Time) (store.Holdings, error)
}

var _ SharedFunds = (*store.Store)(nil)

const (
	// ledgerLag is how much older than its reading a ledger view is taken
	// to be: another gateway's clock may run ahead of this one, and the
	// validator this gateway reads may be a block behind the one that
	// committed another gateway's settlement. Receipts settled within it
	// still count as pending, which errs toward refusing, never toward
	// overspending. Gateways' clocks must agree within a few seconds (NTP).
	ledgerLag = 10 * time.Second
	// holdGrace keeps a reservation past its request's deadline, for the
	// receipt to be stored; after that a dead gateway's hold lapses.
	holdGrace = time.Minute
	// sharedTimeout bounds one reservation's database round trips.
	sharedTimeout = 10 * time.Second
)

// reserveShared reserves cost in the shared database. A request's context
// carries its deadline, which bounds the reservation's life.
func (f *funds) reserveShared(ctx context.Context, consumer keys.Address, cost money.Amount, what string, view chainrpc.Funds, fetched time.Time) (*reservation, *apierr.Error) {
	expires := time.Now().Add(10*time.Minute + f.grace)
	if d, ok := ctx.Deadline(); ok {
		expires = d.Add(f.grace)
	}
	id := make([]byte, 12)
	rand.Read(id)
	h := store.Hold{ID: "hold_" + hex.EncodeToString(id), Consumer: consumer, Gateway: f.gateway, Amount: cost, Expires: expires}
	dctx, cancel := context.WithTimeout(ctx, sharedTimeout)
	defer cancel()
	// The deposit is this gateway's alone: only its own holdings count
	// against it (Allowance); what other gateways hold is drawn from
	// their own deposits, so the total bound is left open.
	got, err := f.shared.Reserve(dctx, h, store.FundsView{Balance: money.Amount(math.MaxUint64), Allowance: view.Spendable(), AsOf: fetched.Add(-ledgerLag)})
	switch {
	case errors.Is(err, store.ErrInsufficientFunds):
		return nil, insufficient(consumer, cost, what, view, got.Reserved, got.Pending)
	case err != nil:
		f.log.Error("shared reservation failed", "account", consumer, "err", err)
		return nil, apierr.Unavailable("funds_unavailable", "The gateway cannot reserve this request's cost right now; please retry.")
	}
	return &reservation{f: f, consumer: consumer, amount: cost, id: h.ID}, nil
}

// releaseShared drops a reservation from the shared database. If that
// fails, the reservation lapses at its expiry instead.
func (f *funds) releaseShared(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
	defer cancel()
	if err := f.shared.Release(ctx, id); err != nil {
		f.log.Warn("could not release a reservation; it lapses at its expiry", "reservation", id, "err", err)
	}
}

// holdings is what the consumer's requests in flight reserve and what its
// receipts awaiting settlement will charge: at every gateway when
// reservations are shared, at this one otherwise.
func (f *funds) holdings(ctx context.Context, consumer keys.Address) (reserved, pending money.Amount, err error) {
	if f.shared == nil {
		reserved, pending = f.snapshot(consumer)
		return reserved, pending, nil
	}
	h, err := f.shared.ConsumerHoldings(ctx, consumer, f.gateway, time.Now())
	return h.Reserved, h.Pending, err
}
