package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"

	"github.com/idlegrid/idlegrid/internal/receipt"
)

// Group commit: receipts waiting to be written go in one transaction and
// share its fsync. The first SaveReceipt to find nobody committing leads:
// it writes, on its own goroutine, every receipt waiting at that moment
// (its own first), answers each, and hands the lead to the receipt at the
// head of those that arrived meanwhile, or stops leading when none did.
// Durability is the same as one transaction per receipt (nobody returns
// before the sync that covers their row); a lone request's receipt is
// written without waking another goroutine, and concurrent requests share
// one sync instead of queueing for one each.

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
	done chan error    // capacity 1
	lead chan struct{} // capacity 1: this save is to commit the next batch
}

// commitQueue is the receipts waiting to be written and who writes them.
type commitQueue struct {
	mu      sync.Mutex
	waiting []*pendingSave
	leading bool       // a save is committing; it hands the lead on
	closed  bool       // Close was called: no new saves
	idle    *sync.Cond // on mu: signalled when leading turns false
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
	p := &pendingSave{sr: &sr, row: row, done: make(chan error, 1), lead: make(chan struct{}, 1)}
	q := &s.commits
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return fmt.Errorf("save receipt %q: %w", r.RequestID, ErrClosed)
	}
	q.waiting = append(q.waiting, p)
	s.saving.Add(1) // taken back once it is written
	lead := !q.leading
	q.leading = true
	q.mu.Unlock()
	if lead {
		s.commitNext()
	}
	for {
		select {
		case err := <-p.done:
			if err != nil {
				return fmt.Errorf("save receipt %q: %w", r.RequestID, err)
			}
			return nil
		case <-p.lead:
			s.commitNext()
		case <-ctx.Done():
			// The lead may still come to this save: take it on, so that
			// the receipts behind it are written.
			go func() {
				select {
				case <-p.done:
				case <-p.lead:
					s.commitNext()
				}
			}()
			return fmt.Errorf("save receipt %q: %w", r.RequestID, ctx.Err())
		}
	}
}

// ErrClosed is returned by writes after Close.
var ErrClosed = errors.New("store closed")

// commitNext, run by the save that leads, writes the receipts waiting (at
// most maxBatch, the leader's first) and hands the lead to the next one
// waiting, if any.
func (s *Store) commitNext() {
	q := &s.commits
	q.mu.Lock()
	n := min(len(q.waiting), maxBatch)
	batch := q.waiting[:n:n]
	q.waiting = q.waiting[n:]
	q.mu.Unlock()

	s.commitBatch(batch)
	s.saving.Add(-int32(len(batch)))
	s.committedBatch()

	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.waiting) > 0 {
		q.waiting[0].lead <- struct{}{}
		return
	}
	q.waiting = nil // let the last batch's array go
	q.leading = false
	q.idle.Broadcast()
}

// closeCommits refuses new saves and waits for those already waiting to be
// written.
func (s *Store) closeCommits() {
	q := &s.commits
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	for q.leading {
		q.idle.Wait()
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
