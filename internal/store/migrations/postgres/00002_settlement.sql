-- Settlement outcomes, as in migrations/sqlite/00002_settlement.sql: a
-- receipt the ledger refused is marked rejected with the ledger's reason.

-- +goose Up
ALTER TABLE receipts ADD COLUMN rejected_at BIGINT;
ALTER TABLE receipts ADD COLUMN rejected_reason TEXT;

DROP INDEX receipts_unsettled;
CREATE INDEX receipts_unsettled ON receipts (created_at, request_id)
    WHERE settled_at IS NULL AND rejected_at IS NULL;

-- +goose Down
DROP INDEX receipts_unsettled;
CREATE INDEX receipts_unsettled ON receipts (created_at, request_id) WHERE settled_at IS NULL;
ALTER TABLE receipts DROP COLUMN rejected_reason;
ALTER TABLE receipts DROP COLUMN rejected_at;
