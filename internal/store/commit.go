package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/idlegrid/idlegrid/internal/receipt"
)

// Group commit: SaveReceipt hands its row to one committer goroutine, which
// writes every receipt waiting at that moment in a single transaction and
// answers each caller when that transaction is synced. Durability is the
// same as one transaction per receipt (nobody returns before the fsync that
// covers their row), but concurrent requests share one fsync instead of
// queueing for one each.

const maxBatch = 512

// insertReceiptSQL: ON CONFLICT DO NOTHING (SQLite and PostgreSQL alike)
// turns a duplicate into zero affected rows, so detecting it needs no
// driver error codes.
const insertReceiptSQL = `
	INSERT INTO receipts (
		request_id, consumer, provider, gateway, model, model_digest,
		prompt_tokens, completion_tokens, amount,
		receipt_bytes, provider_signature, gateway_signature, created_at
	) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
	ON CONFLICT (request_id) DO NOTHING`

type pendingSave struct {
	sr   *receipt.Signed
	row  receiptRow
	done chan error // capacity 1
}

// SaveReceipt stores a signed receipt. When it returns nil the receipt is
// committed and synced to disk. It checks the receipt's fields (Validate)
// but not its signatures: the gateway verified the provider's and made its
// own just before, and every read verifies both again. It returns
// ErrDuplicate if the request_id is already stored (whatever its content):
// a request is paid at most once. If ctx ends first, the receipt may still
// be committed; a retry then gets ErrDuplicate.
func (s *Store) SaveReceipt(ctx context.Context, sr receipt.Signed) error {
	r := &sr.Receipt
	if err := r.Validate(); err != nil {
		return fmt.Errorf("save receipt %q: %w", r.RequestID, err)
	}
	row, err := rowOf(r)
	if err != nil {
		return fmt.Errorf("save receipt %q: %w", r.RequestID, err)
	}
	p := &pendingSave{sr: &sr, row: row, done: make(chan error, 1)}
	s.saving.Add(1) // the committer takes it back once it is written
	select {
	case s.saves <- p:
	case <-s.closing:
		s.saving.Add(-1)
		return fmt.Errorf("save receipt %q: %w", r.RequestID, ErrClosed)
	case <-ctx.Done():
		s.saving.Add(-1)
		return fmt.Errorf("save receipt %q: %w", r.RequestID, ctx.Err())
	}
	select {
	case err := <-p.done:
		if err != nil {
			return fmt.Errorf("save receipt %q: %w", r.RequestID, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("save receipt %q: %w", r.RequestID, ctx.Err())
	}
}

// ErrClosed is returned by writes after Close.
var ErrClosed = errors.New("store closed")

// committer runs until Close; it drains what is queued before it exits.
func (s *Store) committer() {
	defer close(s.committed)
	for {
		var first *pendingSave
		select {
		case first = <-s.saves:
		case <-s.closing:
			return
		}
		batch := []*pendingSave{first}
	drain:
		for len(batch) < maxBatch {
			select {
			case p := <-s.saves:
				batch = append(batch, p)
			default:
				break drain
			}
		}
		s.commitBatch(batch)
		s.saving.Add(-int32(len(batch)))
		s.committedBatch()
	}
}

// commitBatch writes batch in one transaction. If the transaction fails as a
// whole, each receipt is retried alone so that one bad row cannot fail the
// others.
func (s *Store) commitBatch(batch []*pendingSave) {
	ctx := context.Background()
	results, err := s.insertReceipts(ctx, batch)
	if err != nil && len(batch) > 1 {
		for _, p := range batch {
			r, err := s.insertReceipts(ctx, []*pendingSave{p})
			if err != nil {
				r = []error{err}
			}
			p.done <- r[0]
		}
		return
	}
	for i, p := range batch {
		if err != nil {
			p.done <- err
		} else {
			p.done <- results[i]
		}
	}
}

// insertReceipts inserts each row in one transaction; results[i] is
// ErrDuplicate for a row that was already there (or earlier in the batch).
func (s *Store) insertReceipts(ctx context.Context, batch []*pendingSave) (results []error, err error) {
	results = make([]error, len(batch))
	err = inTx(ctx, s.write, func(tx *sql.Tx) error {
		stmt := tx.StmtContext(ctx, s.insertReceipt)
		for i, p := range batch {
			row, r := p.row, &p.sr.Receipt
			res, err := stmt.ExecContext(ctx,
				row.requestID, row.consumer, row.provider, row.gateway, row.model, row.modelDigest,
				row.promptTokens, row.completionTokens, row.amount,
				r.Bytes(), p.sr.ProviderSignature[:], p.sr.GatewaySignature[:], micros(s.now()))
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			if n == 0 {
				results[i] = ErrDuplicate
			}
		}
		return nil
	})
	return results, err
}
