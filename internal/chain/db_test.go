package chain

import (
	"errors"
	"log/slog"
	"testing"

	cfg "github.com/cometbft/cometbft/config"
)

// TestGuardedDB checks what CometBFT goroutines that outlive a node see:
// reads of a closed database find nothing and writes fail, instead of the
// panic pebble gives on any use after Close.
func TestGuardedDB(t *testing.T) {
	c := newConfig(t.TempDir(), "x", 0, 0, nil)
	if err := makeHomeDirs(c); err != nil {
		t.Fatal(err)
	}
	dbs := &dbSet{log: slog.New(slog.DiscardHandler)}
	db, err := dbs.open(&cfg.DBContext{ID: "test", Config: c})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set([]byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	batch := db.NewBatch()
	if err := batch.Set([]byte("b"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := dbs.closeAll(); err != nil {
		t.Fatalf("closing again: %v", err)
	}
	tests := []struct {
		name    string
		op      func() error
		wantErr bool
	}{
		{"get", func() error {
			v, err := db.Get([]byte("k"))
			if v != nil {
				return errors.New("found a value")
			}
			return err
		}, false},
		{"has", func() error {
			ok, err := db.Has([]byte("k"))
			if ok {
				return errors.New("found a key")
			}
			return err
		}, false},
		{"set", func() error { return db.Set([]byte("k"), []byte("w")) }, true},
		{"delete sync", func() error { return db.DeleteSync([]byte("k")) }, true},
		{"iterator", func() error { _, err := db.Iterator(nil, nil); return err }, true},
		{"open batch write", batch.Write, true},
		{"new batch write", func() error { return db.NewBatch().WriteSync() }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.op()
			if tt.wantErr != errors.Is(err, errDBClosed) || !tt.wantErr && err != nil {
				t.Fatalf("got %v, want closed error %v", err, tt.wantErr)
			}
		})
	}
}
