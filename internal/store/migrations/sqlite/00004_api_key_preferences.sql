-- Default routing preferences per API key: a "provider" object (JSON text,
-- as a request would carry it) that applies to the key's requests; NULL for
-- none. The gateway validates it before storing it.

-- +goose Up
ALTER TABLE api_keys ADD COLUMN preferences TEXT;

-- +goose Down
ALTER TABLE api_keys DROP COLUMN preferences;
