package node_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/gateway"
	"github.com/idlegrid/idlegrid/internal/gateway/api/apitypes"
	"github.com/idlegrid/idlegrid/internal/gateway/client"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/link"
	"github.com/idlegrid/idlegrid/internal/node"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/receipt"
	"github.com/idlegrid/idlegrid/internal/store"
	"github.com/idlegrid/idlegrid/internal/tstest"
)

// faultyNet is a gateway without a ledger and simulator providers, each
// behind its own Ollama-compatible server that the test can break.
type faultyNet struct {
	URL       string
	Gateway   *node.Gateway
	Consumer  keys.Address
	Providers []*faultyProvider
}

type faultyProvider struct {
	*node.Provider
	Sim *sim.Server
	// broken makes the model server answer every generation with a 500,
	// before any token.
	broken atomic.Bool
}

func (p *faultyProvider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.broken.Load() && (r.URL.Path == "/api/chat" || r.URL.Path == "/api/generate") {
		http.Error(w, `{"error":"model runner crashed"}`, http.StatusInternalServerError)
		return
	}
	p.Sim.ServeHTTP(w, r)
}

func startFaultyNet(t *testing.T, gcfg gateway.Config, sims ...sim.Config) *faultyNet {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	gw, err := node.StartGateway(ctx, node.GatewayConfig{Addr: "127.0.0.1:0", DataDir: dir, ReceiptSync: "process",
		Link: link.Options{Heartbeat: 500 * time.Millisecond}, Gateway: gcfg, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	n := &faultyNet{URL: gw.URL(), Gateway: gw}
	t.Cleanup(func() {
		for _, p := range n.Providers {
			p.Stop()
		}
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		gw.Shutdown(sctx)
	})
	consumer, _ := keys.Generate()
	n.Consumer = consumer.Public().Address()
	if _, err := gw.Store.EnsureAPIKey(ctx, testAPIKey, "test", n.Consumer); err != nil {
		t.Fatal(err)
	}
	for i, cfg := range sims {
		s, err := sim.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		fp := &faultyProvider{Sim: sim.NewServer(s)}
		srv := httptest.NewServer(fp)
		t.Cleanup(srv.Close)
		b, err := node.OpenBackend(ctx, node.BackendOllama, srv.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		fp.Provider, err = node.StartProvider(node.ProviderConfig{Gateway: gw.URL(), KeyFile: filepath.Join(dir, fmt.Sprintf("provider-%d.key", i)),
			Backend: b, Slots: 4, Link: link.Options{Heartbeat: 500 * time.Millisecond}, Logger: testLogger(t),
			CheckpointEvery: time.Nanosecond}) // every chunk: what a failed job delivered is billed exactly
		if err != nil {
			t.Fatal(err)
		}
		n.Providers = append(n.Providers, fp)
		if err := fp.WaitConnected(ctx); err != nil {
			t.Fatal(err)
		}
	}
	tstest.WaitFor(t, 10*time.Second, "every provider to be routable", func() bool { return len(gw.Hub.Snapshot()) == len(sims) })
	return n
}

// first asks for provider i first, with fallbacks: the request goes there
// when it can, so the test knows which provider fails.
func (n *faultyNet) first(i int) string {
	return fmt.Sprintf(`,"provider":{"order":[%q]}`, n.Providers[i].Key.String())
}

// streamed is one streamed chat answer as the consumer saw it.
type streamed struct {
	id         string
	status     int
	text       string
	usage      int // completion tokens in the final usage chunk
	errorEvent string
}

// stream sends a streamed chat request with extra members and reads the
// whole answer.
func (n *faultyNet) stream(t *testing.T, prompt string, maxTokens int, extra string) streamed {
	t.Helper()
	body := fmt.Sprintf(`{"model":"sim","stream":true,"stream_options":{"include_usage":true},"max_tokens":%d,"messages":[{"role":"user","content":%q}]%s}`,
		maxTokens, prompt, extra)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", n.URL+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := readStream(t, resp, nil)
	return out
}

// readStream reads a streamed chat answer to its end; onDelta, when set,
// sees each piece of text as it arrives. A refusal leaves the answer
// empty but for its status, and a stream cut before [DONE] is what it
// carried until then: the tests judge both by status, text and usage.
func readStream(t *testing.T, resp *http.Response, onDelta func(string)) streamed {
	t.Helper()
	out := streamed{id: resp.Header.Get("X-Request-Id"), status: resp.StatusCode}
	if resp.StatusCode != http.StatusOK {
		return out
	}
	err := client.ReadChatStream(resp.Body, client.DefaultMaxLine, func(ch apitypes.ChatChunk) error {
		for _, c := range ch.Choices {
			out.text += c.Delta.Text()
			if onDelta != nil && c.Delta.Text() != "" {
				onDelta(c.Delta.Text())
			}
		}
		if ch.Usage.Counts != nil {
			out.usage = int(ch.Usage.Counts.CompletionTokens)
		}
		return nil
	}, resp.StatusCode, out.id)
	var apiErr *client.APIError
	switch {
	case errors.As(err, &apiErr):
		out.errorEvent = apiErr.Error()
	case err != nil && !errors.Is(err, client.ErrTruncated):
		t.Fatalf("bad event: %v", err)
	}
	return out
}

// receipts returns the stored receipts of a request: under its id and
// its continuations' ids.
func (n *faultyNet) receipts(t *testing.T, id string) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	for _, r := range segmentReceipts(t, n.Gateway.Store, id) {
		out[r.RequestID] = r.CompletionTokens
	}
	return out
}

// segmentReceipts returns the verified receipts of a request's segments,
// in order.
func segmentReceipts(t *testing.T, st *store.Store, id string) []receipt.Receipt {
	t.Helper()
	var out []receipt.Receipt
	for _, rid := range []string{id, id + "-c1", id + "-c2", id + "-c3"} {
		r, err := st.Receipt(context.Background(), rid)
		if err == nil {
			if err := r.Verify(); err != nil {
				t.Fatal(err)
			}
			out = append(out, r.Receipt)
		} else if !errors.Is(err, store.ErrNotFound) {
			t.Fatal(err)
		}
	}
	return out
}

// checkSegments checks that the receipts of a request bill its answer
// exactly once: read in order, their response hashes cover consecutive
// parts of text that add up to all of it, and their completion tokens add
// up to the tokens the consumer was told it got.
func checkSegments(t *testing.T, rs []receipt.Receipt, text string, tokens int) {
	t.Helper()
	at, sum := 0, 0
	for _, r := range rs {
		end := -1
		for l := at; l <= len(text); l++ {
			if receipt.Sum([]byte(text[at:l])) == r.ResponseHash {
				end = l
				break
			}
		}
		if end < 0 {
			t.Fatalf("receipt %s (%d tokens) hashes no part of the answer from byte %d", r.RequestID, r.CompletionTokens, at)
		}
		at, sum = end, sum+int(r.CompletionTokens)
	}
	if at != len(text) || sum != tokens {
		t.Fatalf("receipts cover %d of %d bytes and %d of %d tokens", at, len(text), sum, tokens)
	}
}

func (n *faultyNet) receiptProvider(t *testing.T, id string) keys.PublicKey {
	t.Helper()
	r, err := n.Gateway.Store.Receipt(context.Background(), id)
	if err != nil {
		t.Fatalf("receipt %s: %v", id, err)
	}
	return r.Receipt.Provider
}

// directSim runs req on s in this process.
func directSim(t *testing.T, s *sim.Sim, req protocol.Request) (string, backend.Result) {
	t.Helper()
	var text strings.Builder
	res, err := s.Generate(context.Background(), req, func(d backend.Delta) error {
		text.WriteString(d.Text)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return text.String(), res
}

// wantAnswer is the uninterrupted answer of a simulator with cfg.
func wantAnswer(t *testing.T, cfg sim.Config, prompt string, maxTokens int) (string, int) {
	t.Helper()
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	text, res := directSim(t, s, chatReq(prompt, maxTokens))
	return text, int(res.Usage.CompletionTokens)
}

// TestFailoverBeforeFirstToken: a provider whose model server fails before
// any token is replaced; the consumer gets the whole answer, from the
// other provider, with one receipt, and its funds are not held.
func TestFailoverBeforeFirstToken(t *testing.T) {
	cfg := slowSim(2000)
	n := startFaultyNet(t, gateway.Config{}, cfg, cfg)
	n.Providers[0].broken.Store(true)
	want, tokens := wantAnswer(t, cfg, "fail over please", 20)
	got := n.stream(t, "fail over please", 20, n.first(0))
	if got.status != 200 || got.errorEvent != "" || got.text != want || got.usage != tokens {
		t.Fatalf("%+v, want %q (%d tokens)", got, want, tokens)
	}
	if r := n.receipts(t, got.id); len(r) != 1 || r[got.id] != uint64(tokens) {
		t.Fatalf("receipts %v, want one for %d tokens", r, tokens)
	}
	if p := n.receiptProvider(t, got.id); p != n.Providers[1].Key {
		t.Fatal("the receipt names the failed provider")
	}
	if f := n.Providers[0].Agent.Status().Failed; f != 1 {
		t.Fatalf("the failing provider got %d jobs, want 1", f)
	}
}

// TestFailoverStallBeforeFirstToken: a provider that accepts the job but
// sends no token within the first-token timeout has its job cancelled, and
// another provider answers.
func TestFailoverStallBeforeFirstToken(t *testing.T) {
	stalling, healthy := slowSim(2000), slowSim(2000)
	for i := range stalling.Models {
		stalling.Models[i].FirstToken = time.Hour
	}
	n := startFaultyNet(t, gateway.Config{FirstTokenTimeout: 300 * time.Millisecond}, stalling, healthy)
	want, tokens := wantAnswer(t, healthy, "are you there", 15)
	got := n.stream(t, "are you there", 15, n.first(0))
	if got.status != 200 || got.errorEvent != "" || got.text != want {
		t.Fatalf("%+v, want %q", got, want)
	}
	if r := n.receipts(t, got.id); len(r) != 1 || r[got.id] != uint64(tokens) || n.receiptProvider(t, got.id) != n.Providers[1].Key {
		t.Fatalf("receipts %v", r)
	}
	tstest.WaitFor(t, 10*time.Second, "the stalled generation to be cancelled", func() bool { return n.Providers[0].Sim.Stats().Cancelled == 1 })
}

// TestContinuationMidStream: a provider whose model server drops the
// connection mid-answer is continued by another; the consumer reads one
// answer equal to the uninterrupted one, max_tokens holds across both, the
// failed provider's last checkpoint is its receipt for exactly the tokens
// it delivered, and the receipt of the provider that finished covers
// exactly the tokens it generated.
func TestContinuationMidStream(t *testing.T) {
	cfg := slowSim(400)
	n := startFaultyNet(t, gateway.Config{}, cfg, cfg)
	const dropAfter, maxTokens = 6, 30
	n.Providers[0].Sim.SetFaults(sim.Faults{DropAfter: dropAfter})
	want, tokens := wantAnswer(t, cfg, "a long story", maxTokens)
	got := n.stream(t, "a long story", maxTokens, n.first(0))
	if got.status != 200 || got.errorEvent != "" || got.text != want || got.usage != tokens {
		t.Fatalf("%+v\nwant %q (%d tokens)", got, want, tokens)
	}
	r := n.receipts(t, got.id)
	if len(r) != 2 || r[got.id] != dropAfter || r[got.id+"-c1"] != uint64(tokens-dropAfter) {
		t.Fatalf("receipts %v, want %s for the first %d tokens and -c1 for the %d after", r, got.id, dropAfter, tokens-dropAfter)
	}
	if n.receiptProvider(t, got.id) != n.Providers[0].Key || n.receiptProvider(t, got.id+"-c1") != n.Providers[1].Key {
		t.Fatal("a receipt names another provider than the one that generated its tokens")
	}
	checkSegments(t, segmentReceipts(t, n.Gateway.Store, got.id), got.text, got.usage)
}

// TestContinuationAfterStall: a provider that stops sending tokens
// mid-answer (still connected) is cancelled after the token timeout and
// another continues; the consumer reads the uninterrupted answer.
func TestContinuationAfterStall(t *testing.T) {
	cfg := slowSim(400)
	n := startFaultyNet(t, gateway.Config{TokenTimeout: 300 * time.Millisecond}, cfg, cfg)
	const stallAfter, maxTokens = 6, 30
	n.Providers[0].Sim.SetFaults(sim.Faults{StallAfter: stallAfter})
	want, tokens := wantAnswer(t, cfg, "a long story", maxTokens)
	got := n.stream(t, "a long story", maxTokens, n.first(0))
	if got.status != 200 || got.errorEvent != "" || got.text != want || got.usage != tokens {
		t.Fatalf("%+v\nwant %q (%d tokens)", got, want, tokens)
	}
	if r := n.receipts(t, got.id); len(r) != 2 || r[got.id] != stallAfter || r[got.id+"-c1"] != uint64(tokens-stallAfter) {
		t.Fatalf("receipts %v, want %s for the first %d tokens and -c1 for the %d after", r, got.id, stallAfter, tokens-stallAfter)
	}
	checkSegments(t, segmentReceipts(t, n.Gateway.Store, got.id), got.text, got.usage)
	tstest.WaitFor(t, 10*time.Second, "the stalled generation to be cancelled", func() bool { return n.Providers[0].Sim.Stats().Cancelled == 1 })
}

// TestBreaker: a provider that keeps failing is skipped once its breaker
// opens, counted as failing in errors, and tried again after the cool-down.
func TestBreaker(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	cfg := slowSim(2000)
	n := startFaultyNet(t, gateway.Config{BreakerThreshold: 2, BreakerCooldown: time.Minute, Now: clock}, cfg, cfg)
	bad := n.Providers[0]
	bad.broken.Store(true)
	for i := range 3 {
		got := n.stream(t, "hello", 3, n.first(0))
		if got.status != 200 || got.errorEvent != "" || n.receiptProvider(t, got.id) != n.Providers[1].Key {
			t.Fatalf("request %d: %+v", i, got)
		}
	}
	if f := bad.Agent.Status().Failed; f != 2 {
		t.Fatalf("the failing provider got %d jobs, want 2 (then its breaker opened)", f)
	}
	status, b := post(t, n.URL+"/v1/chat/completions", testAPIKey,
		fmt.Sprintf(`{"model":"sim","messages":[{"role":"user","content":"hi"}],"provider":{"order":[%q],"allow_fallbacks":false}}`, bad.Key.String()))
	if e := decodeError(t, b); status != 503 || !strings.Contains(e.Message, "1 failing") {
		t.Fatalf("%d %s", status, b)
	}
	bad.broken.Store(false)
	now.Add(int64(time.Minute))
	for i := range 2 {
		got := n.stream(t, "hello", 3, n.first(0))
		if got.status != 200 || n.receiptProvider(t, got.id) != bad.Key {
			t.Fatalf("after the cool-down, request %d: %+v", i, got)
		}
	}
}

// TestAllProvidersFailing: when every provider fails, the consumer gets an
// OpenAI-style error naming the failure, at once.
func TestAllProvidersFailing(t *testing.T) {
	cfg := slowSim(2000)
	n := startFaultyNet(t, gateway.Config{}, cfg, cfg, cfg)
	for _, p := range n.Providers {
		p.broken.Store(true)
	}
	status, b := post(t, n.URL+"/v1/chat/completions", testAPIKey, `{"model":"sim","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`)
	e := decodeError(t, b)
	if status != 503 || e.Code != "providers_failing" || !strings.Contains(e.Message, "3 providers online, all failing") ||
		!strings.Contains(e.Message, "model runner crashed") {
		t.Fatalf("%d %s", status, b)
	}
	for i, p := range n.Providers {
		if f := p.Agent.Status().Failed; f != 1 {
			t.Errorf("provider %d got %d jobs, want 1", i, f)
		}
	}
	// A streamed request fails the same way, before any event.
	if got := n.stream(t, "hi", 5, ""); got.status != 503 {
		t.Fatalf("stream: %+v", got)
	}
}

// TestContinuationFunds: on a network with a ledger, a request continued
// after a mid-stream failure holds no funds once served and has exactly its
// two receipts' amounts pending: the failed provider's last checkpoint and
// the continuation's.
func TestContinuationFunds(t *testing.T) {
	cfg := slowSim(400)
	keyFile, register := stakedProvider(t, "second")
	tn := startNet(t, netOptions{sim: cfg, genesis: register})
	tn.Sim.SetFaults(sim.Faults{DropAfter: 4})
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	second, err := node.StartProvider(node.ProviderConfig{Gateway: tn.URL, KeyFile: keyFile,
		Backend: &node.LocalBackend{Backend: s, Description: "simulator"}, Slots: 4, Link: link.Options{Heartbeat: 500 * time.Millisecond}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { second.Stop() })
	if err := second.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	tstest.WaitFor(t, 10*time.Second, "both providers to be routable", func() bool { return len(tn.Gateway.Hub.Snapshot()) == 2 })
	n := &faultyNet{URL: tn.URL, Gateway: tn.Gateway}
	want, tokens := wantAnswer(t, cfg, "pay once", 25)
	got := n.stream(t, "pay once", 25, fmt.Sprintf(`,"provider":{"order":[%q]}`, tn.Provider.Key.String()))
	if got.status != 200 || got.text != want || got.usage != tokens {
		t.Fatalf("%+v, want %q", got, want)
	}
	r, err := tn.Gateway.Store.Receipt(ctx, got.id+"-c1")
	if err != nil || r.Receipt.CompletionTokens != uint64(tokens-4) || r.Receipt.Provider != second.Key {
		t.Fatalf("continuation receipt %+v: %v", r.Receipt, err)
	}
	// The dropped provider is paid for its 4 tokens by its last checkpoint
	// (one on every chunk by default).
	rs := segmentReceipts(t, tn.Gateway.Store, got.id)
	if len(rs) != 2 || rs[0].Provider != tn.Provider.Key || rs[0].CompletionTokens != 4 {
		t.Fatalf("receipts %+v: want the dropped provider's partial receipt for 4 tokens, then the continuation's", rs)
	}
	checkSegments(t, rs, got.text, got.usage)
	billed := rs[0].Amount + rs[1].Amount
	// Settlement may have run already: the amount is pending or settled.
	a := getAccount(t, tn, testAPIKey)
	if a.Reserved != 0 || a.Pending+a.Settled != billed || a.Receipts.Pending+a.Receipts.Settled != 2 {
		t.Fatalf("account %+v, want nothing reserved and %s billed by the two receipts", a, billed)
	}
}
