-- Settlement outcomes: a receipt the ledger refused (its consumer and the
-- gateway's stake could not pay, its provider lost its stake, …) is marked
-- rejected with the ledger's reason, so it is neither retried forever nor
-- counted as spend still pending.

-- +goose Up
ALTER TABLE receipts ADD COLUMN rejected_at INTEGER;
ALTER TABLE receipts ADD COLUMN rejected_reason TEXT;

DROP INDEX receipts_unsettled;
CREATE INDEX receipts_unsettled ON receipts (created_at, request_id)
    WHERE settled_at IS NULL AND rejected_at IS NULL;

-- +goose Down
DROP INDEX receipts_unsettled;
CREATE INDEX receipts_unsettled ON receipts (created_at, request_id) WHERE settled_at IS NULL;
ALTER TABLE receipts DROP COLUMN rejected_reason;
ALTER TABLE receipts DROP COLUMN rejected_at;
