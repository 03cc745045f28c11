package node_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/node"
)

// TestDevKeyShownOnce: the first start creates the dev API key and returns
// it for printing; later starts on the same data directory do not make
// another, and only its hash is stored.
func TestDevKeyShownOnce(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := func() *node.Network {
		t.Helper()
		b, err := node.OpenBackend(ctx, node.BackendSim, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		n, err := node.StartUp(ctx, node.UpConfig{Addr: "127.0.0.1:0", DataDir: dir, BackendOverride: b})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	n := start()
	key := n.APIKey
	if !strings.HasPrefix(key, "ig-") {
		t.Fatalf("first start returned key %q", key)
	}
	status, _ := post(t, n.Gateway.URL()+"/v1/chat/completions", key, `{"model":"sim","max_tokens":3,"messages":[{"role":"user","content":"hi"}]}`)
	if status != 200 {
		t.Fatalf("the printed key does not work: %d", status)
	}
	if err := n.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	n = start()
	defer n.Shutdown(ctx)
	if n.APIKey != "" {
		t.Fatalf("second start made another key %q", n.APIKey)
	}
	status, _ = post(t, n.Gateway.URL()+"/v1/chat/completions", key, `{"model":"sim","max_tokens":3,"messages":[{"role":"user","content":"hi"}]}`)
	if status != 200 {
		t.Fatalf("the first key stopped working after a restart: %d", status)
	}
	ks, err := n.Gateway.Store.ListAPIKeys(ctx)
	if err != nil || len(ks) != 1 {
		t.Fatalf("%d keys, %v", len(ks), err)
	}
}

// TestShutdownFinishesInFlight: shutting down lets a running stream finish
// with [DONE] and its receipt, and refuses new connections.
func TestShutdownFinishesInFlight(t *testing.T) {
	tn := startNet(t, netOptions{sim: slowSim(100)})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, r, id := openStream(t, ctx, tn, 60)
	defer resp.Body.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := tn.Network.Shutdown(sctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	}()
	var last string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			break
		}
		if line = strings.TrimSpace(line); line != "" {
			last = line
		}
	}
	if last != "data: [DONE]" {
		t.Fatalf("in-flight stream ended with %q during shutdown", last)
	}
	// The receipt was stored before [DONE]; the store closes after the
	// drain, so read it from the file once shutdown is over.
	wg.Wait()
	if _, err := http.Get(tn.URL + "/healthz"); err == nil {
		t.Fatal("gateway still accepts connections after shutdown")
	}
	checkStoredReceipt(t, tn.DataDir, id)
}
