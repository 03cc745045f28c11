package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
)

// Shared admission: when several gateways serve one consumer, each request's
// worst-case cost is reserved in the database, under a lock on the
// consumer's row, against what the ledger says the consumer has. Everything
// that may still be charged counts: every gateway's live reservations and
// every gateway's receipts the ledger has not charged yet. FundsView
// bounds both the total (Balance) and one gateway's share (Allowance); the
// gateway passes its deposit on the ledger as Allowance and leaves Balance
// open, since each gateway's receipts are paid from its own deposit.

// ErrInsufficientFunds: the consumer's funds do not cover a reservation.
var ErrInsufficientFunds = errors.New("insufficient funds")

// Hold is money reserved for one request in flight at one gateway.
type Hold struct {
	// ID names the reservation (the request's id); unique.
	ID       string
	Consumer keys.Address
	Gateway  keys.PublicKey
	Amount   money.Amount
	// Expires is when the reservation lapses if nobody releases it (its
	// gateway died): the request's deadline plus a grace.
	Expires time.Time
}

// FundsView is a consumer's funds as read from the ledger.
type FundsView struct {
	// Balance bounds what every gateway holds together; Allowance what
	// this gateway holds (its deposit on the ledger).
	Balance, Allowance money.Amount
	// AsOf is when the reading was taken, minus the clock skew and ledger
	// lag to tolerate: receipts settled after it may not show in Balance
	// yet, so they count as pending.
	AsOf time.Time
}

// Holdings is what a consumer's funds are committed to, in total (every
// gateway) and at one gateway.
type Holdings struct {
	Reserved, Pending         money.Amount
	ReservedHere, PendingHere money.Amount
}

// Reserve records h if the consumer's funds in v cover it on top of its
// holdings: Balance ≥ Reserved + Pending + Amount and Allowance ≥
// ReservedHere + PendingHere + Amount. Otherwise it returns
// ErrInsufficientFunds (wrapped) and records nothing. It returns the
// holdings it decided on, without h. Two Reserve calls for one consumer,
// from any gateways, are serialized by a lock on the consumer's row.
func (s *Store) Reserve(ctx context.Context, h Hold, v FundsView) (Holdings, error) {
	if h.ID == "" {
		return Holdings{}, errors.New("reserve: empty reservation id")
	}
	if uint64(h.Amount) > math.MaxInt64 {
		return Holdings{}, fmt.Errorf("reserve %q: %w: amount %d", h.ID, ErrOutOfRange, h.Amount)
	}
	var got Holdings
	err := inTx(ctx, s.write, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO funds_locks (consumer) VALUES ($1) ON CONFLICT (consumer) DO NOTHING`, string(h.Consumer)); err != nil {
			return err
		}
		if s.d.lockConsumer != "" {
			var c string
			if err := tx.QueryRowContext(ctx, s.d.lockConsumer, string(h.Consumer)).Scan(&c); err != nil {
				return err
			}
		}
		now := micros(s.now())
		// Lapsed reservations of this consumer go now; the sums below
		// ignore them either way.
		if _, err := tx.ExecContext(ctx,
			`DELETE FROM reservations WHERE consumer = $1 AND expires_at <= $2`, string(h.Consumer), now); err != nil {
			return err
		}
		var err error
		if got, err = holdings(ctx, tx, h.Consumer, h.Gateway, v.AsOf, now); err != nil {
			return err
		}
		total, errT := got.Reserved.Add(got.Pending)
		here, errH := got.ReservedHere.Add(got.PendingHere)
		if err := errors.Join(errT, errH); err != nil {
			return fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		if !fits(v.Balance, total, h.Amount) || !fits(v.Allowance, here, h.Amount) {
			return ErrInsufficientFunds
		}
		_, err = tx.ExecContext(ctx,
			`INSERT INTO reservations (id, consumer, gateway, amount, expires_at) VALUES ($1, $2, $3, $4, $5)`,
			h.ID, string(h.Consumer), h.Gateway.String(), int64(h.Amount), micros(h.Expires))
		return err
	})
	if err != nil {
		return got, fmt.Errorf("reserve %s for %s: %w", h.Amount, h.Consumer, err)
	}
	return got, nil
}

// fits reports whether committed + amount ≤ funds, without overflow.
func fits(funds, committed, amount money.Amount) bool {
	return committed <= funds && amount <= funds-committed
}

// Release drops a reservation. Releasing one that is gone (released
// already, or lapsed and swept) is not an error.
func (s *Store) Release(ctx context.Context, id string) error {
	if _, err := s.write.ExecContext(ctx, `DELETE FROM reservations WHERE id = $1`, id); err != nil {
		return fmt.Errorf("release reservation %q: %w", id, err)
	}
	return nil
}

// ConsumerHoldings is what the consumer's funds are committed to now, in
// total and at gateway; asOf is as in FundsView.
func (s *Store) ConsumerHoldings(ctx context.Context, consumer keys.Address, gateway keys.PublicKey, asOf time.Time) (Holdings, error) {
	h, err := holdings(ctx, s.read, consumer, gateway, asOf, micros(s.now()))
	if err != nil {
		return Holdings{}, fmt.Errorf("holdings of %s: %w", consumer, err)
	}
	return h, nil
}

func holdings(ctx context.Context, q querier, consumer keys.Address, gateway keys.PublicKey, asOf time.Time, now int64) (Holdings, error) {
	var r, rHere, p, pHere int64
	gw := gateway.String()
	if err := q.QueryRowContext(ctx, `
		SELECT COALESCE(SUM(amount), 0), COALESCE(SUM(CASE WHEN gateway = $2 THEN amount ELSE 0 END), 0)
		FROM reservations WHERE consumer = $1 AND expires_at > $3`,
		string(consumer), gw, now).Scan(&r, &rHere); err != nil {
		return Holdings{}, err
	}
	// Unsettled receipts, and settled ones the ledger reading may predate.
	if err := q.QueryRowContext(ctx, `
		SELECT COALESCE(SUM(amount), 0), COALESCE(SUM(CASE WHEN gateway = $2 THEN amount ELSE 0 END), 0)
		FROM receipts WHERE consumer = $1 AND rejected_at IS NULL AND (settled_at IS NULL OR settled_at >= $3)`,
		string(consumer), gw, micros(asOf)).Scan(&p, &pHere); err != nil {
		return Holdings{}, err
	}
	if min(r, rHere, p, pHere) < 0 {
		return Holdings{}, fmt.Errorf("negative sum: %w", ErrCorrupt)
	}
	return Holdings{Reserved: money.Amount(r), ReservedHere: money.Amount(rHere),
		Pending: money.Amount(p), PendingHere: money.Amount(pHere)}, nil
}
