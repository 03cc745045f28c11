-- What gateways sharing one database need (both backends carry it so that
-- one schema and one test suite serve both; a lone SQLite gateway keeps its
-- reservations in memory and leaves these tables empty):
--
-- reservations: money held for requests in flight, per consumer and
-- gateway, each with an expiry (the request's deadline plus a grace), so a
-- gateway that dies cannot hold a consumer's funds for longer than that.
-- funds_locks: one row per consumer, locked while one reservation is
-- decided, so two gateways cannot both admit the last of a balance.
-- peer_models: which gateway has providers for which model, published with
-- a lease by each gateway, so a gateway without a provider for a model can
-- forward the request to one that has.

-- +goose Up
CREATE TABLE funds_locks (
    consumer TEXT NOT NULL PRIMARY KEY
);

CREATE TABLE reservations (
    id         TEXT    NOT NULL PRIMARY KEY,
    consumer   TEXT    NOT NULL,
    gateway    TEXT    NOT NULL,
    amount     BIGINT  NOT NULL CHECK (amount >= 0),
    expires_at BIGINT  NOT NULL
);

CREATE INDEX reservations_consumer ON reservations (consumer, expires_at);

-- Admission sums a consumer's unsettled receipts (and those settled since
-- its ledger reading) on every reservation.
CREATE INDEX receipts_consumer_open ON receipts (consumer, gateway)
    WHERE settled_at IS NULL AND rejected_at IS NULL;
CREATE INDEX receipts_consumer_settled ON receipts (consumer, settled_at)
    WHERE settled_at IS NOT NULL;
-- Each gateway settles only its own receipts.
CREATE INDEX receipts_gateway_unsettled ON receipts (gateway, created_at, request_id)
    WHERE settled_at IS NULL AND rejected_at IS NULL;

CREATE TABLE peer_models (
    gateway    TEXT    NOT NULL,
    url        TEXT    NOT NULL,
    model      TEXT    NOT NULL,
    providers  BIGINT  NOT NULL CHECK (providers >= 0),
    free_slots BIGINT  NOT NULL CHECK (free_slots >= 0),
    expires_at BIGINT  NOT NULL,
    PRIMARY KEY (gateway, model)
);

CREATE INDEX peer_models_model ON peer_models (model, expires_at);

-- +goose Down
DROP TABLE peer_models;
DROP INDEX receipts_gateway_unsettled;
DROP INDEX receipts_consumer_settled;
DROP INDEX receipts_consumer_open;
DROP TABLE reservations;
DROP TABLE funds_locks;
