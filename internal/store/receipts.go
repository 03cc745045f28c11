package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// receiptRow is the queryable copy of a receipt's fields. The canonical bytes
// remain the source of truth; reads check that the two still agree.
type receiptRow struct {
	requestID        string
	consumer         string
	provider         string
	gateway          string
	model            string
	modelDigest      string
	promptTokens     int64
	completionTokens int64
	amount           int64
}

// rowOf maps a receipt to its columns. SQLite INTEGER and PostgreSQL BIGINT
// are signed 64-bit, so values above math.MaxInt64 are refused with
// ErrOutOfRange rather than stored wrapped or as text (which would break SUM
// and ordering). That bound is 9.2 trillion tokens of money or tokens in one
// request, far beyond anything admission lets through.
func rowOf(r *receipt.Receipt) (receiptRow, error) {
	ints := [3]int64{}
	for i, f := range [3]struct {
		name string
		v    uint64
	}{
		{"prompt_tokens", r.PromptTokens},
		{"completion_tokens", r.CompletionTokens},
		{"amount", uint64(r.Amount)},
	} {
		if f.v > math.MaxInt64 {
			return receiptRow{}, fmt.Errorf("%w: %s %d exceeds %d", ErrOutOfRange, f.name, f.v, int64(math.MaxInt64))
		}
		ints[i] = int64(f.v)
	}
	return receiptRow{
		requestID:        r.RequestID,
		consumer:         string(r.Consumer),
		provider:         r.Provider.String(),
		gateway:          r.Gateway.String(),
		model:            r.Model,
		modelDigest:      r.ModelDigest,
		promptTokens:     ints[0],
		completionTokens: ints[1],
		amount:           ints[2],
	}, nil
}

// Receipt returns the stored receipt, decoded from the bytes that were
// signed. It returns ErrNotFound for an unknown id and ErrCorrupt if the
// stored data no longer decodes, verifies, or matches its columns.
func (s *Store) Receipt(ctx context.Context, requestID string) (receipt.Signed, error) {
	sr, err := scanReceipt(s.read.QueryRowContext(ctx,
		`SELECT `+receiptColumns+` FROM receipts WHERE request_id = $1`, requestID))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return receipt.Signed{}, fmt.Errorf("receipt %q: %w", requestID, ErrNotFound)
	case err != nil:
		// scanReceipt's errors already name the receipt.
		return receipt.Signed{}, fmt.Errorf("read receipt: %w", err)
	}
	return sr, nil
}

// UnsettledReceipts returns up to limit receipts (of this gateway, with
// ForGateway) neither settled nor rejected by the ledger, oldest
// first (ties broken by request_id, so batches are deterministic). A corrupt
// receipt fails the whole call with an error naming it: a batch must not be
// settled with a receipt quietly missing.
func (s *Store) UnsettledReceipts(ctx context.Context, limit int) ([]receipt.Signed, error) {
	rs, _, err := s.UnsettledReceiptsAfter(ctx, Cursor{}, limit)
	return rs, err
}

// Cursor is a position in the order UnsettledReceipts reads. The zero
// Cursor is before the first receipt.
type Cursor struct {
	createdAt int64
	requestID string
}

// UnsettledReceiptsAfter is UnsettledReceipts starting after the cursor,
// and the cursor after the last receipt it returns (after itself when it
// returns none). Settlement uses it to read only receipts that no batch in
// flight holds.
func (s *Store) UnsettledReceiptsAfter(ctx context.Context, after Cursor, limit int) ([]receipt.Signed, Cursor, error) {
	if limit <= 0 {
		return nil, after, fmt.Errorf("unsettled receipts: limit %d: want a positive limit", limit)
	}
	args := []any{limit}
	from := ""
	if after != (Cursor{}) {
		from = " AND (created_at, request_id) > ($2, $3)"
		args = append(args, after.createdAt, after.requestID)
	}
	scope, scopeArgs := s.scope(len(args) + 1)
	rows, err := s.read.QueryContext(ctx, `
		SELECT `+receiptColumns+`, created_at FROM receipts
		WHERE settled_at IS NULL AND rejected_at IS NULL`+from+scope+`
		ORDER BY created_at, request_id
		LIMIT $1`, append(args, scopeArgs...)...)
	if err != nil {
		return nil, after, fmt.Errorf("unsettled receipts: %w", err)
	}
	defer rows.Close()
	var out []receipt.Signed
	last := after
	for rows.Next() {
		sr, err := scanReceiptUnverified(withCreatedAt{rows, &last.createdAt})
		if err != nil {
			return nil, after, fmt.Errorf("unsettled receipts: %w", err)
		}
		last.requestID = sr.Receipt.RequestID
		out = append(out, sr)
	}
	if err := rows.Err(); err != nil {
		return nil, after, fmt.Errorf("unsettled receipts: %w", err)
	}
	if err := verifyReceipts(out); err != nil {
		return nil, after, fmt.Errorf("unsettled receipts: %w", err)
	}
	return out, last, nil
}

// withCreatedAt scans a row of receiptColumns followed by created_at.
type withCreatedAt struct {
	rows *sql.Rows
	at   *int64
}

func (w withCreatedAt) Scan(dest ...any) error { return w.rows.Scan(append(dest, w.at)...) }

// MarkSettled records that the receipts were settled at ledger height, all
// or none (a receipt marked rejected can still be marked settled: the ledger
// is the authority): if any id is unknown (ErrNotFound) or already settled
// (ErrAlreadySettled, also when an id repeats in requestIDs) nothing
// changes and the error names that id.
//
// The store has one writer, and marking a thousand receipts takes it for
// 10–20 ms of SQLite's work: a request whose receipt waited for that would
// see it. So the ids are checked first, on a reading connection, and then
// marked in as many transactions as it takes to let every receipt being
// saved go first: the transaction commits and hands the writer over as soon
// as a receipt waits for it, once it has marked minSettleChunk receipts.
// Only a concurrent MarkSettled of the same
// ids, which the gateway's settlement does not make, can find a receipt
// settled after the check; the transaction at hand then changes nothing and
// the error names the receipt, while those committed before it stay marked
// (the ledger did settle them).
func (s *Store) MarkSettled(ctx context.Context, requestIDs []string, height int64) error {
	if height <= 0 {
		return fmt.Errorf("mark settled: height %d: want a positive height", height)
	}
	if len(requestIDs) == 0 {
		return nil
	}
	if err := s.checkSettleable(ctx, requestIDs); err != nil {
		return fmt.Errorf("mark settled at height %d: %w", height, err)
	}
	settledAt := micros(s.now())
	for ids := requestIDs; len(ids) > 0; {
		n, err := s.markSettled(ctx, ids, settledAt, height)
		if err != nil {
			return fmt.Errorf("mark settled at height %d: %w", height, err)
		}
		ids = ids[n:]
	}
	return nil
}

// checkSettleable returns, for the first id in order that cannot be marked
// settled, why: it repeats, is unknown or is already settled.
func (s *Store) checkSettleable(ctx context.Context, ids []string) error {
	heights := make(map[string]int64, len(ids)) // settle_height of each stored id; 0 while unsettled
	const perQuery = 500                        // bound parameters per query
	for part := range slices.Chunk(ids, perQuery) {
		marks := make([]string, len(part))
		args := make([]any, len(part))
		for i, id := range part {
			marks[i], args[i] = fmt.Sprintf("$%d", i+1), id
		}
		err := func() error {
			rows, err := s.read.QueryContext(ctx, `SELECT request_id, settle_height FROM receipts
				WHERE request_id IN (`+strings.Join(marks, ", ")+`)`, args...)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var id string
				var h sql.NullInt64
				if err := rows.Scan(&id, &h); err != nil {
					return err
				}
				heights[id] = h.Int64
			}
			return rows.Err()
		}()
		if err != nil {
			return fmt.Errorf("check receipts: %w", err)
		}
	}
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		h, ok := heights[id]
		switch {
		case seen[id]:
			return fmt.Errorf("receipt %q (repeated in the batch): %w", id, ErrAlreadySettled)
		case !ok:
			return fmt.Errorf("receipt %q: %w", id, ErrNotFound)
		case h != 0:
			return fmt.Errorf("receipt %q (settled at height %d): %w", id, h, ErrAlreadySettled)
		}
		seen[id] = true
	}
	return nil
}

// markSettled marks ids settled in one transaction, all or none, from the
// first until a receipt waits for the writer (at least minSettleChunk ids,
// at most s.settleChunk): it returns how many it marked.
//
// The transaction is not synced to disk: a mark lost to a power cut leaves
// its receipt unsettled here, settlement sends it again, and the ledger
// answers that this very receipt is settled at its height (chainrpc's
// SettleBatch), which marks it then. So settling never adds a sync for a
// receipt waiting behind it, and the receipts' own commits, which sync,
// carry the marks written before them to disk anyway (SQLite's WAL is
// written in order).
func (s *Store) markSettled(ctx context.Context, ids []string, settledAt, height int64) (marked int, err error) {
	conn, err := s.write.Conn(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if !s.settleSynced {
		if err := s.d.unsynced(ctx, conn); err != nil {
			return 0, err
		}
		defer func() {
			if rerr := s.d.synced(context.WithoutCancel(ctx), conn, s.processDurable); rerr != nil {
				// Never hand the receipts a connection that does not sync.
				_ = conn.Raw(func(any) error { return driver.ErrBadConn })
				err = errors.Join(err, fmt.Errorf("restore synchronous commits: %w", rerr))
			}
		}()
	}
	err = inTx(ctx, conn, func(tx *sql.Tx) error {
		marked = 0
		if !s.settleSynced {
			if err := s.d.unsyncedTx(ctx, tx); err != nil {
				return err
			}
		}
		stmt, err := tx.PrepareContext(ctx, `
			UPDATE receipts SET settled_at = $1, settle_height = $2, rejected_at = NULL, rejected_reason = NULL
			WHERE request_id = $3 AND settled_at IS NULL`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, id := range ids[:min(len(ids), s.settleChunk)] {
			res, err := stmt.ExecContext(ctx, settledAt, height, id)
			if err != nil {
				return fmt.Errorf("receipt %q: %w", id, err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return fmt.Errorf("receipt %q: %w", id, err)
			}
			if n == 0 {
				return whyNotSettled(ctx, tx, id)
			}
			if marked++; marked >= minSettleChunk && s.saving.Load() > 0 && !s.settleSynced {
				break // a receipt waits: commit, and it goes next
			}
		}
		return nil
	})
	return marked, err
}

// whyNotSettled explains an UPDATE that matched no row.
func whyNotSettled(ctx context.Context, tx *sql.Tx, id string) error {
	var h int64
	err := tx.QueryRowContext(ctx,
		`SELECT settle_height FROM receipts WHERE request_id = $1`, id).Scan(&h)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("receipt %q: %w", id, ErrNotFound)
	case err != nil:
		return fmt.Errorf("receipt %q: %w", id, err)
	}
	return fmt.Errorf("receipt %q (settled at height %d): %w", id, h, ErrAlreadySettled)
}

// MarkRejected records that the ledger refused to settle the receipt and
// why; it is no longer offered by UnsettledReceipts. A settled receipt
// cannot be marked rejected (ErrAlreadySettled).
func (s *Store) MarkRejected(ctx context.Context, requestID, reason string) error {
	res, err := s.write.ExecContext(ctx, `
		UPDATE receipts SET rejected_at = $1, rejected_reason = $2
		WHERE request_id = $3 AND settled_at IS NULL`, micros(s.now()), reason, requestID)
	if err != nil {
		return fmt.Errorf("mark receipt %q rejected: %w", requestID, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		if err == nil {
			err = inTx(ctx, s.write, func(tx *sql.Tx) error { return whyNotSettled(ctx, tx, requestID) })
		}
		return fmt.Errorf("mark rejected: %w", err)
	}
	return nil
}

// Spend is what one consumer's receipts add up to, by settlement state.
type Spend struct {
	Settled, Pending, Rejected                money.Amount
	SettledCount, PendingCount, RejectedCount int64
}

// ConsumerSpend sums the consumer's receipts by state.
func (s *Store) ConsumerSpend(ctx context.Context, consumer keys.Address) (Spend, error) {
	rows, err := s.read.QueryContext(ctx, `
		SELECT CASE WHEN settled_at IS NOT NULL THEN 0 WHEN rejected_at IS NOT NULL THEN 2 ELSE 1 END AS state,
		       COUNT(*), COALESCE(SUM(amount), 0)
		FROM receipts WHERE consumer = $1 GROUP BY state`, string(consumer))
	if err != nil {
		return Spend{}, fmt.Errorf("spend of %s: %w", consumer, err)
	}
	defer rows.Close()
	var sp Spend
	for rows.Next() {
		var state, n, sum int64
		if err := rows.Scan(&state, &n, &sum); err != nil {
			return Spend{}, fmt.Errorf("spend of %s: %w", consumer, err)
		}
		if sum < 0 {
			return Spend{}, fmt.Errorf("spend of %s: negative sum: %w", consumer, ErrCorrupt)
		}
		switch state {
		case 0:
			sp.Settled, sp.SettledCount = money.Amount(sum), n
		case 1:
			sp.Pending, sp.PendingCount = money.Amount(sum), n
		default:
			sp.Rejected, sp.RejectedCount = money.Amount(sum), n
		}
	}
	return sp, rows.Err()
}

// PendingByConsumer sums, per consumer, the receipts neither settled nor
// rejected: spend the gateway has admitted that the ledger has not yet
// charged (with ForGateway: admitted by this gateway). A gateway starts
// its admission bookkeeping from it.
func (s *Store) PendingByConsumer(ctx context.Context) (map[keys.Address]money.Amount, error) {
	scope, args := s.scope(1)
	rows, err := s.read.QueryContext(ctx, `
		SELECT consumer, COALESCE(SUM(amount), 0) FROM receipts
		WHERE settled_at IS NULL AND rejected_at IS NULL`+scope+` GROUP BY consumer`, args...)
	if err != nil {
		return nil, fmt.Errorf("pending spend: %w", err)
	}
	defer rows.Close()
	out := map[keys.Address]money.Amount{}
	for rows.Next() {
		var c string
		var sum int64
		if err := rows.Scan(&c, &sum); err != nil {
			return nil, fmt.Errorf("pending spend: %w", err)
		}
		if sum < 0 {
			return nil, fmt.Errorf("pending spend of %s: negative sum: %w", c, ErrCorrupt)
		}
		out[keys.Address(c)] = money.Amount(sum)
	}
	return out, rows.Err()
}

// ReceiptCounts counts stored receipts by settlement state.
type ReceiptCounts struct {
	Pending, Settled, Rejected int64
}

// CountReceipts counts the stored receipts (of this gateway, with
// ForGateway) by settlement state.
func (s *Store) CountReceipts(ctx context.Context) (ReceiptCounts, error) {
	var c ReceiptCounts
	scope, args := s.scope(1)
	err := s.read.QueryRowContext(ctx, `SELECT
		COALESCE(SUM(CASE WHEN settled_at IS NULL AND rejected_at IS NULL THEN 1 ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN settled_at IS NOT NULL THEN 1 ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN rejected_at IS NOT NULL THEN 1 ELSE 0 END), 0)
		FROM receipts WHERE TRUE`+scope, args...).Scan(&c.Pending, &c.Settled, &c.Rejected)
	if err != nil {
		return ReceiptCounts{}, fmt.Errorf("count receipts: %w", err)
	}
	return c, nil
}

// ReceiptStats counts the consumer's stored receipts and sums their amounts,
// settled or not. A sum beyond the 64-bit range is an error, not a wrap.
func (s *Store) ReceiptStats(ctx context.Context, consumer keys.Address) (count int64, amount money.Amount, err error) {
	var sum int64
	err = s.read.QueryRowContext(ctx,
		`SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM receipts WHERE consumer = $1`,
		string(consumer)).Scan(&count, &sum)
	if err != nil {
		return 0, 0, fmt.Errorf("receipt stats for %s: %w", consumer, err)
	}
	if sum < 0 {
		return 0, 0, fmt.Errorf("receipt stats for %s: negative sum %d: %w", consumer, sum, ErrCorrupt)
	}
	return count, money.Amount(sum), nil
}

const receiptColumns = `request_id, consumer, provider, gateway, model, model_digest,
	prompt_tokens, completion_tokens, amount,
	receipt_bytes, provider_signature, gateway_signature`

// scanReceipt rebuilds a signed receipt from its canonical bytes and checks
// it before handing it out: bytes that decode, signatures that verify over
// them, and columns that agree with them. Anything else is ErrCorrupt.
func scanReceipt(row interface{ Scan(...any) error }) (receipt.Signed, error) {
	sr, err := scanReceiptUnverified(row)
	if err != nil {
		return receipt.Signed{}, err
	}
	if err := sr.Verify(); err != nil {
		return receipt.Signed{}, corruptReceipt(sr.Receipt.RequestID, "%v", err)
	}
	return sr, nil
}

// scanReceiptUnverified reads a receipt row and checks everything but its
// two signatures: the bytes decode and validate and the columns agree with
// them. Callers verify the signatures, one by one or in a batch.
func scanReceiptUnverified(row interface{ Scan(...any) error }) (receipt.Signed, error) {
	var (
		col                   receiptRow
		blob, provSig, gwySig []byte
	)
	if err := row.Scan(&col.requestID, &col.consumer, &col.provider, &col.gateway,
		&col.model, &col.modelDigest, &col.promptTokens, &col.completionTokens, &col.amount,
		&blob, &provSig, &gwySig); err != nil {
		return receipt.Signed{}, err
	}
	corrupt := func(why string, args ...any) error { return corruptReceipt(col.requestID, why, args...) }
	r, err := receipt.Decode(blob)
	if err != nil {
		return receipt.Signed{}, corrupt("%v", err)
	}
	var sr receipt.Signed
	sr.Receipt = r
	if len(provSig) != len(sr.ProviderSignature) || len(gwySig) != len(sr.GatewaySignature) {
		return receipt.Signed{}, corrupt("signature lengths %d and %d", len(provSig), len(gwySig))
	}
	copy(sr.ProviderSignature[:], provSig)
	copy(sr.GatewaySignature[:], gwySig)
	if err := sr.Receipt.Validate(); err != nil {
		return receipt.Signed{}, corrupt("%v", err)
	}
	want, err := rowOf(&sr.Receipt)
	if err != nil {
		return receipt.Signed{}, corrupt("%v", err)
	}
	if col != want {
		return receipt.Signed{}, corrupt("columns disagree with the signed bytes")
	}
	return sr, nil
}

func corruptReceipt(requestID, why string, args ...any) error {
	return fmt.Errorf("receipt %q: %w: %s", requestID, ErrCorrupt, fmt.Sprintf(why, args...))
}

// verifyReceipts checks both signatures of every receipt in one batch
// verification (several times faster than one by one: settlement reads
// pages of receipts it has just written); a failing receipt is named.
func verifyReceipts(rs []receipt.Signed) error {
	if len(rs) == 0 {
		return nil
	}
	var buf []byte
	items := make([]keys.SignedMessage, 0, 2*len(rs))
	for i := range rs {
		r := &rs[i]
		var pair [2]keys.SignedMessage
		buf, pair = receipt.AppendSignedMessages(buf, r.Receipt.Bytes(), &r.Receipt, r.ProviderSignature, r.GatewaySignature)
		items = append(items, pair[:]...)
	}
	for i, ok := range keys.VerifyBatch(items) {
		if !ok {
			r := &rs[i/2]
			err := r.Verify()
			if err == nil {
				err = receipt.ErrBadSignature
			}
			return corruptReceipt(r.Receipt.RequestID, "%v", err)
		}
	}
	return nil
}

// scope is the condition that limits a query to this gateway's receipts
// (ForGateway), using placeholder $n, and its argument; nothing without.
func (s *Store) scope(n int) (string, []any) {
	if s.gateway == "" {
		return "", nil
	}
	return fmt.Sprintf(" AND gateway = $%d", n), []any{s.gateway}
}

// One MarkSettled transaction marks at least minSettleChunk receipts (a
// few tenths of a millisecond of the writer's time, all a receipt waits
// for) and at most maxSettleChunk when no receipt waits. The floor keeps
// settlement ahead of a busy gateway: marking one receipt per transaction
// between two receipt commits would mark fewer receipts a second than the
// gateway stores.
const (
	minSettleChunk = 32
	maxSettleChunk = 1000
)
