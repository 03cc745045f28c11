-- Settled receipts are pruned from the gateway's store once they are older
-- than the retention (PruneSettled): the ledger's blocks hold every settled
-- receipt with its signatures. The pruning reads them oldest first.

-- +goose Up
CREATE INDEX receipts_settled ON receipts (settled_at) WHERE settled_at IS NOT NULL;

-- +goose Down
DROP INDEX receipts_settled;
