package node_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/gateway"
	"github.com/idlegrid/idlegrid/internal/gateway/api/apitypes"
	"github.com/idlegrid/idlegrid/internal/gateway/client"
	"github.com/idlegrid/idlegrid/internal/link"
	"github.com/idlegrid/idlegrid/internal/node"
	"github.com/idlegrid/idlegrid/internal/tstest"
)

// TestSlotsGrantedInArrivalOrder: with the only slot taken, eight requests
// line up one after another; when the slot frees they are served in the
// order they arrived (each one's first token comes after the previous
// one's), every one with its stored receipt. Two of them carry routing
// preferences that narrow nothing: they keep their place too. Waiters
// woken all at once by each change raced for the slot instead, and the
// last to arrive often won.
func TestSlotsGrantedInArrivalOrder(t *testing.T) {
	tn := startNet(t, netOptions{sim: slowSim(200), slots: 1, gateway: gateway.Config{MaxQueued: 64}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	hold, _, _ := openStream(t, ctx, tn, 100000) // holds the slot

	const n = 8
	var mu sync.Mutex
	var order []int // waiters by the arrival of their first token
	ids := make([]string, n)
	errs := make(chan error, n)
	for i := range n {
		go func() {
			prefs := ""
			if i%3 == 1 {
				prefs = `,"provider":{"sort":"price"}`
			}
			id, err := firstTokenThenRest(ctx, tn.URL, fmt.Sprintf("waiter %d", i), prefs, func() {
				mu.Lock()
				order = append(order, i)
				mu.Unlock()
			})
			ids[i] = id
			errs <- err
		}()
		tstest.WaitFor(t, 10*time.Second, fmt.Sprintf("request %d to wait in line", i), func() bool { return tn.Gateway.API.Queued() == i+1 })
	}
	hold.Body.Close() // the slot frees
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for i, w := range order {
		if w != i {
			t.Fatalf("first tokens in the order %v, want arrival order", order)
		}
	}
	for _, id := range ids {
		r, err := tn.Gateway.Store.Receipt(ctx, id)
		if err != nil {
			t.Fatalf("receipt of %s: %v", id, err)
		}
		if err := r.Verify(); err != nil {
			t.Fatal(err)
		}
	}
}

// firstTokenThenRest sends a short streaming chat request (with extra
// members, if any), calls first when its first content chunk arrives,
// reads it to the end and returns its request id.
func firstTokenThenRest(ctx context.Context, base, prompt, extra string, first func()) (string, error) {
	body := fmt.Sprintf(`{"model":"sim","stream":true,"max_tokens":3,"messages":[{"role":"user","content":%q}]%s}`, prompt, extra)
	seen := false
	id, err := client.New(base, testAPIKey).ChatStream(ctx, json.RawMessage(body), func(chunk apitypes.ChatChunk) error {
		if !seen && len(chunk.Choices) > 0 && chunk.Choices[0].Delta.Text() != "" {
			seen = true
			first()
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("%q: %w", prompt, err)
	}
	if !seen {
		return "", fmt.Errorf("%q: stream ended without a token", prompt)
	}
	return id, nil
}

// TestRestrictedWaiterDoesNotHoldUpTheLine: two providers with one slot
// each, both taken. At the head of the line waits a request only the first
// provider may serve (provider.order without fallbacks), behind it a plain
// one. When the second provider's slot frees, the head cannot use it and
// hands the turn on: the plain request is served on it while the head
// keeps waiting, and is served when its provider frees.
func TestRestrictedWaiterDoesNotHoldUpTheLine(t *testing.T) {
	cfg := slowSim(200)
	keyFile, register := stakedProvider(t, "second")
	tn := startNet(t, netOptions{sim: cfg, slots: 1, genesis: register, gateway: gateway.Config{MaxQueued: 64}})
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	second, err := node.StartProvider(node.ProviderConfig{Gateway: tn.URL, KeyFile: keyFile,
		Backend: &node.LocalBackend{Backend: s, Description: "simulator"}, Slots: 1, Link: link.Options{Heartbeat: 500 * time.Millisecond}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { second.Stop() })
	if err := second.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	tstest.WaitFor(t, 10*time.Second, "both providers to be routable", func() bool { return len(tn.Gateway.Hub.Snapshot()) == 2 })
	only := func(key fmt.Stringer) string {
		return fmt.Sprintf(`,"provider":{"order":[%q],"allow_fallbacks":false}`, key.String())
	}
	holdFirst := holdSlot(t, ctx, tn.URL, only(tn.Provider.Key))
	defer holdFirst.Body.Close()
	holdSecond := holdSlot(t, ctx, tn.URL, only(second.Key))

	type result struct {
		id  string
		err error
	}
	restrictedDone, plainDone := make(chan result, 1), make(chan result, 1)
	go func() {
		id, err := firstTokenThenRest(ctx, tn.URL, "restricted", only(tn.Provider.Key), func() {})
		restrictedDone <- result{id, err}
	}()
	tstest.WaitFor(t, 10*time.Second, "the restricted request to wait", func() bool { return tn.Gateway.API.Queued() == 1 })
	go func() {
		id, err := firstTokenThenRest(ctx, tn.URL, "plain", "", func() {})
		plainDone <- result{id, err}
	}()
	tstest.WaitFor(t, 10*time.Second, "the plain request to wait behind it", func() bool { return tn.Gateway.API.Queued() == 2 })

	holdSecond.Body.Close() // the second provider's slot frees
	var plain result
	select {
	case plain = <-plainDone:
	case r := <-restrictedDone:
		t.Fatalf("the restricted request ended first (err %v); the plain one still waited", r.err)
	case <-ctx.Done():
		t.Fatal("the plain request waited behind a request that could not use the free slot")
	}
	if plain.err != nil {
		t.Fatal(plain.err)
	}
	if q := tn.Gateway.API.Queued(); q != 1 {
		t.Fatalf("%d waiting after the plain request was served, want the restricted one", q)
	}
	holdFirst.Body.Close()
	restricted := <-restrictedDone
	if restricted.err != nil {
		t.Fatal(restricted.err)
	}
	for _, r := range []result{plain, restricted} {
		sr, err := tn.Gateway.Store.Receipt(ctx, r.id)
		if err != nil {
			t.Fatalf("receipt of %s: %v", r.id, err)
		}
		if err := sr.Verify(); err != nil {
			t.Fatal(err)
		}
	}
	if sr, _ := tn.Gateway.Store.Receipt(ctx, plain.id); sr.Receipt.Provider != second.Key {
		t.Errorf("the plain request was served by %s, want the second provider", sr.Receipt.Provider)
	}
}

// holdSlot starts a long streaming request (with extra members) and returns
// it once its first content chunk arrived: it holds a slot until closed.
func holdSlot(t *testing.T, ctx context.Context, base, extra string) *http.Response {
	t.Helper()
	body := `{"model":"sim","stream":true,"max_tokens":100000,"messages":[{"role":"user","content":"hold"}]` + extra + `}`
	req, _ := http.NewRequestWithContext(ctx, "POST", base+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		resp.Body.Close()
		t.Fatalf("hold: status %d", resp.StatusCode)
	}
	r := bufio.NewReader(resp.Body)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(line, `"content":"`) && !strings.Contains(line, `"content":""`) {
			return resp
		}
	}
}
