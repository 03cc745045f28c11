package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/idlegrid/idlegrid/internal/keys"
)

// SecretPrefix starts every generated API key secret, so that a leaked key is
// recognisable by secret scanners and in support requests.
const SecretPrefix = "ig-"

// MinSecretLen is the shortest secret EnsureAPIKey accepts.
const MinSecretLen = 16

// displayLen is how many characters of a secret (after SecretPrefix) are
// kept in clear to tell keys apart in listings.
const displayLen = 8

// APIKey is a consumer API key as stored: everything but the secret.
type APIKey struct {
	ID      string
	Name    string
	Account keys.Address
	// Prefix is the start of the secret, kept to tell keys apart in listings.
	Prefix    string
	CreatedAt time.Time
	// RevokedAt is zero while the key is active.
	RevokedAt time.Time
	// Preferences are the key's default routing preferences: a "provider"
	// object as JSON text, checked by the gateway before it is stored; ""
	// for none.
	Preferences string
}

// Revoked reports whether k was revoked.
func (k APIKey) Revoked() bool { return !k.RevokedAt.IsZero() }

// CreateAPIKey creates a key for account and returns its secret, which is
// shown once: only its hash is stored.
func (s *Store) CreateAPIKey(ctx context.Context, name string, account keys.Address) (secret string, key APIKey, err error) {
	if err := account.Validate(); err != nil {
		return "", APIKey{}, fmt.Errorf("create api key: %w", err)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", APIKey{}, fmt.Errorf("create api key: %w", err)
	}
	secret = SecretPrefix + base64.RawURLEncoding.EncodeToString(b)
	key, err = s.insertAPIKey(ctx, s.write, secret, name, account)
	if err != nil {
		return "", APIKey{}, fmt.Errorf("create api key: %w", err)
	}
	return secret, key, nil
}

// EnsureAPIKey stores a secret chosen by the caller (an operator pinning the
// dev key with an environment variable). It is idempotent: if the secret
// already belongs to account, the existing key is returned unchanged (name
// included). It fails with ErrDuplicate if the secret belongs to another
// account and with ErrRevoked if that key was revoked: revocation sticks
// even when the operator's configuration still names the key.
func (s *Store) EnsureAPIKey(ctx context.Context, secret, name string, account keys.Address) (APIKey, error) {
	if len(secret) < MinSecretLen {
		return APIKey{}, fmt.Errorf("ensure api key: secret must be at least %d characters", MinSecretLen)
	}
	if err := account.Validate(); err != nil {
		return APIKey{}, fmt.Errorf("ensure api key: %w", err)
	}
	var key APIKey
	err := inTx(ctx, s.write, func(tx *sql.Tx) error {
		existing, err := lookupAPIKey(ctx, tx, secret)
		switch {
		case errors.Is(err, ErrNotFound):
			key, err = s.insertAPIKey(ctx, tx, secret, name, account)
			return err
		case err != nil:
			return err
		case existing.Account != account:
			// Do not echo the other account: the caller may not own it.
			return fmt.Errorf("%w: secret is in use by another account", ErrDuplicate)
		case existing.Revoked():
			return fmt.Errorf("key %s: %w", existing.ID, ErrRevoked)
		}
		key = existing
		return nil
	})
	if err != nil {
		return APIKey{}, fmt.Errorf("ensure api key: %w", err)
	}
	return key, nil
}

// LookupAPIKey finds the key a request presents. It returns ErrNotFound for
// an unknown secret and ErrRevoked (with the key) for a revoked one.
func (s *Store) LookupAPIKey(ctx context.Context, secret string) (APIKey, error) {
	k, err := scanAPIKey(s.lookupKey.QueryRowContext(ctx, secretHashArg(secret)))
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return APIKey{}, fmt.Errorf("lookup api key: %w", err)
	}
	if k.Revoked() {
		return k, fmt.Errorf("lookup api key %s: %w", k.ID, ErrRevoked)
	}
	return k, nil
}

// ListAPIKeys returns every key, revoked ones included, oldest first.
func (s *Store) ListAPIKeys(ctx context.Context) ([]APIKey, error) {
	rows, err := s.read.QueryContext(ctx,
		`SELECT `+apiKeyColumns+` FROM api_keys ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	defer rows.Close()
	var out []APIKey
	for rows.Next() {
		k, err := scanAPIKey(rows)
		if err != nil {
			return nil, fmt.Errorf("list api keys: %w", err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	return out, nil
}

// RevokeAPIKey revokes the key with this id. Revoking a revoked key succeeds
// and keeps the first revocation time.
func (s *Store) RevokeAPIKey(ctx context.Context, id string) error {
	res, err := s.write.ExecContext(ctx,
		`UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2`,
		micros(s.now()), id)
	if err != nil {
		return fmt.Errorf("revoke api key %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("revoke api key %s: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("revoke api key %s: %w", id, ErrNotFound)
	}
	return nil
}

// SetAPIKeyPreferences stores the key's default routing preferences (JSON
// text the caller has validated); "" clears them.
func (s *Store) SetAPIKeyPreferences(ctx context.Context, id, prefs string) error {
	var v any
	if prefs != "" {
		v = prefs
	}
	res, err := s.write.ExecContext(ctx, `UPDATE api_keys SET preferences = $1 WHERE id = $2`, v, id)
	if err != nil {
		return fmt.Errorf("set preferences of api key %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("set preferences of api key %s: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("set preferences of api key %s: %w", id, ErrNotFound)
	}
	return nil
}

const apiKeyColumns = `id, name, account, prefix, created_at, revoked_at, preferences`

func (s *Store) insertAPIKey(ctx context.Context, q querier, secret, name string, account keys.Address) (APIKey, error) {
	idBytes := make([]byte, 12)
	if _, err := rand.Read(idBytes); err != nil {
		return APIKey{}, err
	}
	key := APIKey{
		ID:      "key_" + hex.EncodeToString(idBytes),
		Name:    name,
		Account: account,
		Prefix:  displayPrefix(secret),
		// Round to what the database keeps, so the returned key equals a
		// later lookup.
		CreatedAt: fromMicros(micros(s.now())),
	}
	hash := secretHash(secret)
	_, err := q.ExecContext(ctx,
		`INSERT INTO api_keys (id, name, account, secret_hash, prefix, created_at) VALUES ($1, $2, $3, $4, $5, $6)`,
		key.ID, key.Name, string(key.Account), hash[:], key.Prefix, micros(key.CreatedAt))
	if err != nil {
		return APIKey{}, err
	}
	return key, nil
}

const lookupAPIKeySQL = `SELECT ` + apiKeyColumns + ` FROM api_keys WHERE secret_hash = $1`

func secretHashArg(secret string) []byte {
	h := secretHash(secret)
	return h[:]
}

func lookupAPIKey(ctx context.Context, q querier, secret string) (APIKey, error) {
	k, err := scanAPIKey(q.QueryRowContext(ctx, lookupAPIKeySQL, secretHashArg(secret)))
	if errors.Is(err, sql.ErrNoRows) {
		return APIKey{}, ErrNotFound
	}
	return k, err
}

func scanAPIKey(row interface{ Scan(...any) error }) (APIKey, error) {
	var (
		k       APIKey
		account string
		created int64
		revoked sql.NullInt64
		prefs   sql.NullString
	)
	if err := row.Scan(&k.ID, &k.Name, &account, &k.Prefix, &created, &revoked, &prefs); err != nil {
		return APIKey{}, err
	}
	k.Account = keys.Address(account)
	k.CreatedAt = fromMicros(created)
	if revoked.Valid {
		k.RevokedAt = fromMicros(revoked.Int64)
	}
	k.Preferences = prefs.String
	return k, nil
}

// secretHash is a plain sha256: secrets are 256 random bits (or an
// operator's choice of at least MinSecretLen characters), so a slow password
// hash would add latency to every request without adding security.
func secretHash(secret string) [32]byte { return sha256.Sum256([]byte(secret)) }

// displayPrefix keeps displayLen characters after SecretPrefix, but never
// more than a quarter of the secret, so a short operator-chosen secret is not
// half given away by a listing.
func displayPrefix(secret string) string {
	head, body := "", []rune(secret)
	if strings.HasPrefix(secret, SecretPrefix) {
		head, body = SecretPrefix, []rune(secret[len(SecretPrefix):])
	}
	n := min(displayLen, len(body)/4)
	return head + string(body[:n])
}
