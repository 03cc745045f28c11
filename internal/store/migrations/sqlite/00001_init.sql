-- Initial gateway schema. Times are Unix microseconds in INTEGER columns so
-- that the same queries run unchanged on PostgreSQL (BIGINT) and order
-- correctly without date parsing. Tables are STRICT so that a bug can never
-- slip a float or a string into a money column.

-- +goose Up
CREATE TABLE api_keys (
    id          TEXT    NOT NULL PRIMARY KEY,
    name        TEXT    NOT NULL,
    account     TEXT    NOT NULL,
    -- sha256 of the secret: a leaked database file must not leak usable keys.
    secret_hash BLOB    NOT NULL UNIQUE CHECK (length(secret_hash) = 32),
    prefix      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
) STRICT;

CREATE TABLE receipts (
    request_id         TEXT    NOT NULL PRIMARY KEY,
    consumer           TEXT    NOT NULL,
    provider           TEXT    NOT NULL,
    gateway            TEXT    NOT NULL,
    model              TEXT    NOT NULL,
    model_digest       TEXT    NOT NULL,
    -- Counts and amounts are uint64 in Go; the store refuses values above
    -- the signed 64-bit range instead of wrapping them.
    prompt_tokens      INTEGER NOT NULL CHECK (prompt_tokens >= 0),
    completion_tokens  INTEGER NOT NULL CHECK (completion_tokens >= 0),
    amount             INTEGER NOT NULL CHECK (amount >= 0),
    -- The canonical bytes are the source of truth; the columns above are
    -- copies for querying.
    receipt_bytes      BLOB    NOT NULL,
    provider_signature BLOB    NOT NULL CHECK (length(provider_signature) = 64),
    gateway_signature  BLOB    NOT NULL CHECK (length(gateway_signature) = 64),
    created_at         INTEGER NOT NULL,
    settled_at         INTEGER,
    settle_height      INTEGER CHECK (settle_height > 0),
    CHECK ((settled_at IS NULL) = (settle_height IS NULL))
) STRICT;

CREATE INDEX receipts_consumer ON receipts (consumer);

-- Settlement scans only what is still unsettled, oldest first; a partial
-- index keeps that scan small however many receipts have been settled.
CREATE INDEX receipts_unsettled ON receipts (created_at, request_id) WHERE settled_at IS NULL;

-- +goose Down
DROP TABLE receipts;
DROP TABLE api_keys;
