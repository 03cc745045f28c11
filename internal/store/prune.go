package store

import (
	"context"
	"fmt"
	"time"
)

// PruneSettled deletes up to limit receipts (of this gateway, with
// ForGateway) that the ledger settled before cutoff, oldest first, and
// returns how many it deleted. Once settled, the gateway's copy is a
// convenience: the ledger's blocks hold every settled receipt with both
// signatures (`idlegrid ledger receipt ID` shows where). Receipts that are
// unsettled or were rejected are never pruned. One call is one short
// transaction, so callers delete in small batches and receipts keep
// committing in between.
func (s *Store) PruneSettled(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, fmt.Errorf("prune settled receipts: limit %d: want a positive limit", limit)
	}
	scope, args := s.scope(3)
	res, err := s.write.ExecContext(ctx, `
		DELETE FROM receipts WHERE request_id IN (
			SELECT request_id FROM receipts
			WHERE settled_at IS NOT NULL AND settled_at < $1`+scope+`
			ORDER BY settled_at
			LIMIT $2)`, append([]any{micros(cutoff), limit}, args...)...)
	if err != nil {
		return 0, fmt.Errorf("prune settled receipts: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("prune settled receipts: %w", err)
	}
	return int(n), nil
}
