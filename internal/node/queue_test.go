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

	"github.com/idlegrid/idlegrid/internal/gateway"
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
		eventually(t, 10*time.Second, fmt.Sprintf("request %d to wait in line", i), func() bool { return tn.Gateway.API.Queued() == i+1 })
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
	req, _ := http.NewRequestWithContext(ctx, "POST", base+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("%q: status %d", prompt, resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	seen, done := false, false
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if data == "[DONE]" {
			done = true
			break
		}
		var chunk struct {
			Choices []struct {
				Delta struct{ Content string } `json:"delta"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(data), &chunk); err != nil {
			return "", fmt.Errorf("%q: %w: %s", prompt, err, data)
		}
		if !seen && len(chunk.Choices) > 0 && chunk.Choices[0].Delta.Content != "" {
			seen = true
			first()
		}
	}
	if !seen || !done {
		return "", fmt.Errorf("%q: stream ended without a token or [DONE] (%v)", prompt, sc.Err())
	}
	return resp.Header.Get("X-Request-Id"), nil
}
