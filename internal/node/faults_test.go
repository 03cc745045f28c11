package node_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/store"
	"github.com/idlegrid/idlegrid/internal/tstest"
)

func slowSim(tokensPerSecond float64) sim.Config {
	cfg := sim.DefaultConfig()
	for i := range cfg.Models {
		cfg.Models[i].FirstToken = 0
		cfg.Models[i].TokensPerSecond = tokensPerSecond
		// Long streams must last until the test is done with them.
		cfg.Models[i].IgnoreEOS = true
	}
	return cfg
}

// openStream starts a raw streaming chat request and returns the response
// once the first content chunk arrived, with the request id.
func openStream(t *testing.T, ctx context.Context, tn *testNet, maxTokens int) (*http.Response, *bufio.Reader, string) {
	t.Helper()
	body := fmt.Sprintf(`{"model":"sim","stream":true,"max_tokens":%d,"messages":[{"role":"user","content":"count slowly"}]}`, maxTokens)
	req, _ := http.NewRequestWithContext(ctx, "POST", tn.URL+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	id := resp.Header.Get("X-Request-Id")
	r := bufio.NewReader(resp.Body)
	for range 3 { // role chunk and two content chunks
		if _, err := r.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		if _, err := r.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	return resp, r, id
}

func TestClientDisconnectCancelsUpstream(t *testing.T) {
	tn := startNet(t, netOptions{sim: slowSim(40)})
	ctx, cancel := context.WithCancel(context.Background())
	resp, _, id := openStream(t, ctx, tn, 2000)
	if got := tn.Sim.Stats().Cancelled; got != 0 {
		t.Fatalf("cancelled before the disconnect: %d", got)
	}
	cancel()
	resp.Body.Close()
	tstest.WaitFor(t, 10*time.Second, "the simulator to see the job cancelled", func() bool { return tn.Sim.Stats().Cancelled == 1 })
	tstest.WaitFor(t, 10*time.Second, "the provider slot to be freed", func() bool {
		infos := tn.Gateway.Hub.Snapshot()
		return len(infos) == 1 && infos[0].InFlight == 0
	})
	onlyCheckpoint(t, tn, id, 2000)
}

func TestProviderKilledMidStream(t *testing.T) {
	tn := startNet(t, netOptions{sim: slowSim(40)})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, r, id := openStream(t, ctx, tn, 2000)
	defer resp.Body.Close()
	if err := tn.Provider.Stop(); err != nil {
		t.Fatal(err)
	}
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
	if !strings.HasPrefix(last, `data: {"error":`) {
		t.Fatalf("stream ended with %q, want an error event", last)
	}
	if !strings.Contains(last, "provider") {
		t.Errorf("error event does not say what happened: %s", last)
	}
	onlyCheckpoint(t, tn, id, 2000)
}

// onlyCheckpoint checks that a request that ended mid-answer has no
// receipt but, if its provider sent one in time, the partial receipt of
// its last checkpoint: the prompt's tokens (protocol.PromptEstimate of
// openStream's prompt), fewer completion tokens than asked, both
// signatures valid.
func onlyCheckpoint(t *testing.T, tn *testNet, id string, maxTokens uint64) {
	t.Helper()
	r, err := tn.Gateway.Store.Receipt(context.Background(), id)
	if errors.Is(err, store.ErrNotFound) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	prompt := protocol.PromptEstimate(&protocol.Request{Messages: []protocol.ChatMessage{{Role: "user", Content: "count slowly"}}})
	if err := r.Verify(); err != nil || r.Receipt.PromptTokens != prompt || r.Receipt.CompletionTokens >= maxTokens {
		t.Fatalf("receipt %+v (%v) for a request that ended mid-answer: want none or a checkpoint's", r.Receipt, err)
	}
}

// TestSlowConsumerDoesNotStallOthers leaves one large stream unread while
// other requests use the same provider connection.
func TestSlowConsumerDoesNotStallOthers(t *testing.T) {
	tn := startNet(t, netOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	resp, _, _ := openStream(t, ctx, tn, 100000) // never read again
	defer resp.Body.Close()
	c := openaiClient(tn)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Chat.Completions.New(ctx, openaiChatParams("sim", fmt.Sprintf("question %d", i), 50))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestConcurrentStreams(t *testing.T) {
	const n = 200
	tn := startNet(t, netOptions{sim: slowSim(400)})
	c := openaiClient(tn)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	wants := make([]string, n)
	for i := range n {
		wants[i], _ = direct(t, tn, chatReq(fmt.Sprintf("stream number %d", i), 30))
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			prompt := fmt.Sprintf("stream number %d", i)
			stream := c.Chat.Completions.NewStreaming(ctx, openaiChatParams("sim", prompt, 30))
			var text strings.Builder
			for stream.Next() {
				if ch := stream.Current().Choices; len(ch) > 0 {
					text.WriteString(ch[0].Delta.Content)
				}
			}
			switch {
			case stream.Err() != nil:
				errs <- stream.Err()
			case text.String() != wants[i]:
				errs <- fmt.Errorf("stream %d: %q, want %q", i, text.String(), wants[i])
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Every stream left a receipt (settled by now or still pending); the
	// direct calls did not.
	sp, err := tn.Gateway.Store.ConsumerSpend(ctx, tn.Account)
	if got := sp.SettledCount + sp.PendingCount; err != nil || got != n || sp.RejectedCount != 0 {
		t.Fatalf("%d receipts stored (%+v), want %d (%v)", got, sp, n, err)
	}
}
