package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/idlegrid/idlegrid/internal/receipt"
)

// StoredReceipt is a signed receipt with what the store knows about it:
// when it was saved and what the ledger made of it.
type StoredReceipt struct {
	receipt.Signed
	StoredAt time.Time
	// SettleHeight is the ledger height that settled it; 0 while pending
	// or when rejected.
	SettleHeight int64
	// Rejected is set, with the ledger's reason, when the ledger refused it.
	Rejected       bool
	RejectedReason string
}

// RecentReceipts returns up to limit receipts, newest first (the dashboard's
// recent requests). Like UnsettledReceipts, it checks every receipt it hands
// out and fails on a corrupt one.
func (s *Store) RecentReceipts(ctx context.Context, limit int) ([]StoredReceipt, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("recent receipts: limit %d: want a positive limit", limit)
	}
	rows, err := s.read.QueryContext(ctx, `
		SELECT `+receiptColumns+`, created_at, settle_height, rejected_at IS NOT NULL, rejected_reason
		FROM receipts ORDER BY created_at DESC, request_id DESC LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("recent receipts: %w", err)
	}
	defer rows.Close()
	var out []StoredReceipt
	for rows.Next() {
		var (
			r        StoredReceipt
			created  int64
			height   sql.NullInt64
			rejected bool
			reason   sql.NullString
		)
		r.Signed, err = scanReceipt(scanTail{rows, []any{&created, &height, &rejected, &reason}})
		if err != nil {
			return nil, fmt.Errorf("recent receipts: %w", err)
		}
		r.StoredAt, r.SettleHeight, r.Rejected, r.RejectedReason = fromMicros(created), height.Int64, rejected, reason.String
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("recent receipts: %w", err)
	}
	return out, nil
}

// scanTail lets scanReceipt read a row that has more columns after the
// receipt's: they go to tail.
type scanTail struct {
	row  interface{ Scan(...any) error }
	tail []any
}

func (s scanTail) Scan(dest ...any) error { return s.row.Scan(append(dest, s.tail...)...) }

// MinuteTokens is what the receipts stored in one minute add up to.
type MinuteTokens struct {
	// Minute is the start of the minute (UTC).
	Minute                   time.Time
	Requests                 int64
	PromptTokens, Completion int64
}

// TokensPerMinute sums the receipts stored since the given time by minute,
// oldest first; minutes without receipts are absent.
func (s *Store) TokensPerMinute(ctx context.Context, since time.Time) ([]MinuteTokens, error) {
	const minute = int64(time.Minute / time.Microsecond)
	rows, err := s.read.QueryContext(ctx, `
		SELECT created_at / $1 AS m, COUNT(*), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0)
		FROM receipts WHERE created_at >= $2 GROUP BY m ORDER BY m`, minute, micros(since))
	if err != nil {
		return nil, fmt.Errorf("tokens per minute: %w", err)
	}
	defer rows.Close()
	var out []MinuteTokens
	for rows.Next() {
		var m int64
		var t MinuteTokens
		if err := rows.Scan(&m, &t.Requests, &t.PromptTokens, &t.Completion); err != nil {
			return nil, fmt.Errorf("tokens per minute: %w", err)
		}
		t.Minute = fromMicros(m * minute)
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("tokens per minute: %w", err)
	}
	return out, nil
}
