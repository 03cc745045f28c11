package store

import (
	"bytes"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestSQLiteMigrationsAndReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "gateway.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open on an empty directory: %v", err)
	}
	version := func(s *Store) (max, rows int64) {
		t.Helper()
		err := s.read.QueryRowContext(ctx,
			`SELECT MAX(version_id), COUNT(*) FROM goose_db_version`).Scan(&max, &rows)
		if err != nil {
			t.Fatalf("read goose version: %v", err)
		}
		return max, rows
	}
	v1, rows1 := version(s)
	if v1 != 5 {
		t.Errorf("schema version %d after migrating from empty, want 5", v1)
	}

	sg := newSigner(t)
	r := sg.receipt(t, "req-persist", 3, 4)
	if err := s.SaveReceipt(ctx, r); err != nil {
		t.Fatal(err)
	}
	secret, key, err := s.CreateAPIKey(ctx, "persist", sg.consumer)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s, err = Open(ctx, path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	if v2, rows2 := version(s); v2 != v1 || rows2 != rows1 {
		t.Errorf("reopen re-ran migrations: version %d/%d rows, was %d/%d", v2, rows2, v1, rows1)
	}
	if got, err := s.Receipt(ctx, "req-persist"); err != nil || !reflect.DeepEqual(got, r) {
		t.Errorf("after reopen, Receipt = %+v, %v", got, err)
	}
	if got, err := s.LookupAPIKey(ctx, secret); err != nil || got != key {
		t.Errorf("after reopen, LookupAPIKey = %+v, %v; want %+v", got, err, key)
	}
}

func TestSQLiteRefusesNewerSchema(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "gateway.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	// As if a newer release had migrated this file.
	if _, err := s.write.ExecContext(ctx,
		`INSERT INTO goose_db_version (version_id, is_applied) VALUES (99999, 1)`); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(ctx, path); err == nil {
		s.Close()
		t.Fatal("Open accepted a schema newer than its migrations")
	}
}

func TestSQLitePragmas(t *testing.T) {
	s := openSQLite(t)
	ctx := t.Context()
	for _, tc := range []struct {
		db     *sql.DB
		pragma string
		want   string
	}{
		{s.write, "journal_mode", "wal"},
		{s.write, "synchronous", "2"}, // FULL
		{s.write, "foreign_keys", "1"},
		{s.write, "busy_timeout", fmt.Sprint(busyTimeout.Milliseconds())},
		{s.write, "wal_autocheckpoint", "0"}, // checkpoint.go
		{s.ckpt, "synchronous", "2"},
		{s.read, "journal_mode", "wal"},
		{s.read, "query_only", "1"},
		{s.read, "busy_timeout", fmt.Sprint(busyTimeout.Milliseconds())},
	} {
		var got string
		if err := tc.db.QueryRowContext(ctx, "PRAGMA "+tc.pragma).Scan(&got); err != nil {
			t.Fatalf("PRAGMA %s: %v", tc.pragma, err)
		}
		if got != tc.want {
			pool := map[*sql.DB]string{s.write: "write", s.read: "read", s.ckpt: "checkpoint"}[tc.db]
			t.Errorf("%s pool: PRAGMA %s = %s, want %s", pool, tc.pragma, got, tc.want)
		}
	}
	if _, err := s.read.ExecContext(ctx, `DELETE FROM receipts`); err == nil {
		t.Error("the read pool accepted a write")
	}
}

func TestSQLiteOpenPaths(t *testing.T) {
	ctx := t.Context()
	root := t.TempDir()
	for _, rel := range []string{
		filepath.Join("a", "b", "gateway.db"),
		filepath.Join("odd dir ?#%&=", "gate way?.db"),
	} {
		path := filepath.Join(root, rel)
		s, err := Open(ctx, path)
		if err != nil {
			t.Errorf("Open(%q): %v", rel, err)
			continue
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close(%q): %v", rel, err)
		}
		if _, err := os.Stat(path); err != nil {
			t.Errorf("Open(%q) did not create the file there: %v", rel, err)
		}
		fi, err := os.Stat(filepath.Dir(path))
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o700 {
			t.Errorf("parent of %q has mode %o, want 700", rel, perm)
		}
	}
	if _, err := Open(ctx, ""); err == nil {
		t.Error("Open(\"\") accepted")
	}
}

// TestSQLiteSecretNotOnDisk reads every file SQLite keeps (main file, WAL,
// shared memory) while open after a checkpoint and again after Close: API
// key secrets must appear in none of them, only their hashes.
func TestSQLiteSecretNotOnDisk(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s, err := Open(ctx, filepath.Join(dir, "gateway.db"))
	if err != nil {
		t.Fatal(err)
	}
	account := newSigner(t).consumer
	generated, _, err := s.CreateAPIKey(ctx, "generated", account)
	if err != nil {
		t.Fatal(err)
	}
	const pinned = "pinned-dev-secret-4f0c9a7e"
	if _, err := s.EnsureAPIKey(ctx, pinned, "pinned", account); err != nil {
		t.Fatal(err)
	}
	// The displayed prefix is stored on purpose; everything after it must not be.
	secrets := []string{generated, generated[len(SecretPrefix)+displayLen:], pinned, pinned[len(pinned)/4:]}

	check := func(when string, wantHashes bool) {
		t.Helper()
		var all []byte
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			names = append(names, fmt.Sprintf("%s (%d bytes)", e.Name(), len(b)))
			all = append(all, b...)
		}
		for _, secret := range secrets {
			if bytes.Contains(all, []byte(secret)) {
				t.Errorf("%s: %q found in %s", when, secret, strings.Join(names, ", "))
			}
		}
		// The search must be able to find something, or it proves nothing.
		for _, secret := range []string{generated, pinned} {
			h := sha256.Sum256([]byte(secret))
			if wantHashes && !bytes.Contains(all, h[:]) {
				t.Errorf("%s: hash of a secret not found in %s; is the search reading the data?", when, strings.Join(names, ", "))
			}
		}
	}

	if _, err := s.write.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		t.Fatal(err)
	}
	check("open, after checkpoint", true)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	check("after Close", true)
}

// TestSQLiteCorruptionNotMaskedByColumns makes sure a receipt whose blob is
// replaced by a different, validly signed receipt with the same request_id
// (possible only by writing the database directly) is still caught: the
// columns and the signed bytes must agree.
func TestSQLiteCorruptionNotMaskedByColumns(t *testing.T) {
	s := openSQLite(t)
	ctx := t.Context()
	sg := newSigner(t)
	orig := sg.receipt(t, "req-swap", 10, 10)
	swapped := sg.receipt(t, "req-swap", 999, 999)
	if err := s.SaveReceipt(ctx, orig); err != nil {
		t.Fatal(err)
	}
	_, err := s.write.ExecContext(ctx,
		`UPDATE receipts SET receipt_bytes = $1, provider_signature = $2, gateway_signature = $3 WHERE request_id = $4`,
		swapped.Receipt.Bytes(), swapped.ProviderSignature[:], swapped.GatewaySignature[:], "req-swap")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Receipt(ctx, "req-swap"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Receipt after swapping in another signed receipt = %v, want ErrCorrupt", err)
	}
}
