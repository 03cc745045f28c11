-- Initial gateway schema, the PostgreSQL twin of migrations/sqlite: times
-- are Unix microseconds in BIGINT columns, so the same queries run on both
-- backends; CHECK constraints keep money columns non-negative.

-- +goose Up
CREATE TABLE api_keys (
    id          TEXT   NOT NULL PRIMARY KEY,
    name        TEXT   NOT NULL,
    account     TEXT   NOT NULL,
    -- sha256 of the secret: a leaked database must not leak usable keys.
    secret_hash BYTEA  NOT NULL UNIQUE CHECK (length(secret_hash) = 32),
    prefix      TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

CREATE TABLE receipts (
    request_id         TEXT   NOT NULL PRIMARY KEY,
    consumer           TEXT   NOT NULL,
    provider           TEXT   NOT NULL,
    gateway            TEXT   NOT NULL,
    model              TEXT   NOT NULL,
    model_digest       TEXT   NOT NULL,
    prompt_tokens      BIGINT NOT NULL CHECK (prompt_tokens >= 0),
    completion_tokens  BIGINT NOT NULL CHECK (completion_tokens >= 0),
    amount             BIGINT NOT NULL CHECK (amount >= 0),
    -- The canonical bytes are the source of truth; the columns above are
    -- copies for querying.
    receipt_bytes      BYTEA  NOT NULL,
    provider_signature BYTEA  NOT NULL CHECK (length(provider_signature) = 64),
    gateway_signature  BYTEA  NOT NULL CHECK (length(gateway_signature) = 64),
    created_at         BIGINT NOT NULL,
    settled_at         BIGINT,
    settle_height      BIGINT CHECK (settle_height > 0),
    CHECK ((settled_at IS NULL) = (settle_height IS NULL))
);

CREATE INDEX receipts_consumer ON receipts (consumer);
CREATE INDEX receipts_unsettled ON receipts (created_at, request_id) WHERE settled_at IS NULL;

-- +goose Down
DROP TABLE receipts;
DROP TABLE api_keys;
