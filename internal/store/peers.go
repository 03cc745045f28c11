package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/idlegrid/idlegrid/internal/keys"
)

// PeerModel says that a gateway, reachable at URL, has providers connected
// for a model. Gateways sharing a database publish theirs with a lease, so
// that one without a provider for a model can forward a request to one that
// has.
type PeerModel struct {
	Gateway keys.PublicKey
	// URL is the gateway's base URL as its peers reach it.
	URL   string
	Model string
	// Providers connected for the model, and their free slots in total.
	Providers, FreeSlots int
}

// PublishModels replaces what gateway has published with models, each
// valid until ttl from now; an empty list withdraws the gateway. Rows with
// lapsed leases (of any gateway) are swept, as are lapsed reservations.
func (s *Store) PublishModels(ctx context.Context, gateway keys.PublicKey, url string, models []PeerModel, ttl time.Duration) error {
	if ttl <= 0 {
		return errors.New("publish models: want a positive lease")
	}
	now := s.now()
	err := inTx(ctx, s.write, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM peer_models WHERE gateway = $1 OR expires_at <= $2`,
			gateway.String(), micros(now)); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM reservations WHERE expires_at <= $1`, micros(now)); err != nil {
			return err
		}
		for _, m := range models {
			if m.Model == "" || m.Providers < 0 || m.FreeSlots < 0 {
				return fmt.Errorf("bad entry %+v", m)
			}
			if _, err := tx.ExecContext(ctx, `
				INSERT INTO peer_models (gateway, url, model, providers, free_slots, expires_at)
				VALUES ($1, $2, $3, $4, $5, $6)`,
				gateway.String(), url, m.Model, m.Providers, m.FreeSlots, micros(now.Add(ttl))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("publish models of gateway %s: %w", gateway, err)
	}
	return nil
}

// PeersFor lists the other gateways with a live lease on model, those with
// the most free slots first.
func (s *Store) PeersFor(ctx context.Context, model string, except keys.PublicKey) ([]PeerModel, error) {
	rows, err := s.read.QueryContext(ctx, `
		SELECT gateway, url, model, providers, free_slots FROM peer_models
		WHERE model = $1 AND gateway <> $2 AND expires_at > $3
		ORDER BY free_slots DESC, providers DESC, gateway`, model, except.String(), micros(s.now()))
	if err != nil {
		return nil, fmt.Errorf("peers for %q: %w", model, err)
	}
	defer rows.Close()
	var out []PeerModel
	for rows.Next() {
		var m PeerModel
		var gw string
		if err := rows.Scan(&gw, &m.URL, &m.Model, &m.Providers, &m.FreeSlots); err != nil {
			return nil, fmt.Errorf("peers for %q: %w", model, err)
		}
		if m.Gateway, err = keys.ParsePublicKey(gw); err != nil {
			return nil, fmt.Errorf("peers for %q: gateway %q: %w", model, gw, ErrCorrupt)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// PeerModels lists the models other gateways than except hold live leases
// on, one entry per model with the providers and free slots summed over
// those gateways (Gateway and URL left empty), by name.
func (s *Store) PeerModels(ctx context.Context, except keys.PublicKey) ([]PeerModel, error) {
	rows, err := s.read.QueryContext(ctx, `
		SELECT model, SUM(providers), SUM(free_slots) FROM peer_models
		WHERE gateway <> $1 AND expires_at > $2
		GROUP BY model ORDER BY model`, except.String(), micros(s.now()))
	if err != nil {
		return nil, fmt.Errorf("peer models: %w", err)
	}
	defer rows.Close()
	var out []PeerModel
	for rows.Next() {
		var m PeerModel
		if err := rows.Scan(&m.Model, &m.Providers, &m.FreeSlots); err != nil {
			return nil, fmt.Errorf("peer models: %w", err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}
