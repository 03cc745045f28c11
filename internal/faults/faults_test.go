package faults

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// buildBinary compiles idlegrid for the processes of the run.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "idlegrid")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/idlegrid/idlegrid/cmd/idlegrid").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestChaosProcesses runs the network as separate processes of the real
// binary, SIGKILLs at least one process of every kind while requests flow,
// and fails on any lost or double receipt, any account the settled
// receipts do not explain, disagreeing validators or a failed audit.
func TestChaosProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a 4-validator network, gateways and providers as processes for over a minute; skipped with -short")
	}
	cfg := DefaultConfig()
	// The directory outlives a failed test, so its process logs can be read.
	dir, err := os.MkdirTemp("", "idlegrid-faults-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			os.RemoveAll(dir)
		}
	})
	cfg.Binary, cfg.Dir = buildBinary(t), dir
	cfg.Duration = 75 * time.Second
	if testing.Verbose() {
		cfg.Out = os.Stderr
	}
	t.Logf("seed %d", cfg.Seed)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + res.Summary())
	for _, k := range Kinds {
		if res.Faults[k] == 0 {
			t.Errorf("no %s was killed", k)
		}
	}
	if res.Completed == 0 || res.Receipts == 0 {
		t.Errorf("%d requests completed and %d receipts settled: the run served nothing", res.Completed, res.Receipts)
	}
	for _, p := range res.Problems {
		t.Error(p)
	}
	if t.Failed() {
		t.Logf("process logs are in %s/logs", cfg.Dir)
	}
}
