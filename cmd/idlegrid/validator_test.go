package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cometbft/cometbft/abci/example/kvstore"
	abci "github.com/cometbft/cometbft/abci/types"

	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
)

func TestValidatorInit(t *testing.T) {
	dir := t.TempDir()
	badState := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(badState, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	typoState := filepath.Join(dir, "typo.json")
	if err := os.WriteFile(typoState, []byte(`{"parms":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	funded := "idg" + strings.Repeat("ab", 20)
	goodState := filepath.Join(dir, "good.json")
	if err := os.WriteFile(goodState, []byte(`{"accounts":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		wantOut string
		wantErr string
	}{
		{"two validators", []string{"--validators", "2", "--out", filepath.Join(dir, "a"), "--chain-id", "test-chain", "--app-state", goodState}, "wrote 2 validator homes for chain test-chain", ""},
		{"again into the same dir", []string{"--validators", "2", "--out", filepath.Join(dir, "a")}, "", "already exists"},
		{"bad app state", []string{"--out", filepath.Join(dir, "b"), "--app-state", badState}, "", "unexpected EOF"},
		{"unknown genesis field", []string{"--out", filepath.Join(dir, "e"), "--app-state", typoState}, "", "unknown field"},
		{"bad fund", []string{"--out", filepath.Join(dir, "f"), "--fund", "idgnope=1"}, "", "address"},
		{"funded", []string{"--validators", "1", "--out", filepath.Join(dir, "g"), "--fund", funded + "=12.5"}, "wrote 1 validator homes", ""},
		{"missing app state", []string{"--out", filepath.Join(dir, "c"), "--app-state", filepath.Join(dir, "nope.json")}, "", "no such file"},
		{"no validators", []string{"--out", filepath.Join(dir, "d"), "--validators", "0"}, "", "at least one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := run(t, append([]string{"validator", "init"}, tt.args...)...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !strings.Contains(out, tt.wantOut) {
				t.Fatalf("got %v\n%s", err, out)
			}
		})
	}
	for _, f := range []string{"node0/config/config.toml", "node1/config/genesis.json", "node1/config/priv_validator_key.json"} {
		if _, err := os.Stat(filepath.Join(dir, "a", f)); err != nil {
			t.Errorf("init did not write %s: %v", f, err)
		}
	}
}

func TestValidatorStartNeedsHome(t *testing.T) {
	_, _, err := run(t, "validator", "start", "--home", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "config.toml") {
		t.Fatalf("empty home: %v", err)
	}
	_, _, err = run(t, "validator", "start")
	if err == nil || !strings.Contains(err.Error(), "--home") {
		t.Fatalf("without --home: %v", err)
	}
}

// TestValidatorStart runs a one-validator network with the kvstore
// application until its context ends, as SIGINT ends it in main.
func TestValidatorStart(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := run(t, "validator", "init", "--validators", "1", "--out", dir); err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	a := &app{stdout: out, stderr: io.Discard, log: slog.New(slog.DiscardHandler)}
	cmd := newValidatorCmdWith(a, validatorDeps{
		newApp:   func(string, *slog.Logger) (abci.Application, error) { return kvstore.NewInMemoryApplication(), nil },
		appState: ledgerAppState,
	})
	cmd.SetArgs([]string{"start", "--home", filepath.Join(dir, "node0")})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()

	rpcRE := regexp.MustCompile(`RPC at (http://\S+)`)
	deadline := time.Now().Add(30 * time.Second)
	var rpc string
	for rpc == "" {
		if m := rpcRE.FindStringSubmatch(out.String()); m != nil {
			rpc = m[1]
			break
		}
		select {
		case err := <-done:
			t.Fatalf("validator start returned early: %v\n%s", err, out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("validator did not report its RPC address:\n%s", out.String())
		}
	}
	c, err := chainrpc.NewHTTPClient(rpc)
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
	defer scancel()
	if res, err := c.Submit(sctx, []byte("k=v")); err != nil || res.Code != 0 {
		t.Fatalf("submit to the validator: %+v, %v", res, err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("validator start after cancel: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("validator start did not return after its context ended")
	}
}

// syncBuffer is a bytes.Buffer safe for the command's goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
