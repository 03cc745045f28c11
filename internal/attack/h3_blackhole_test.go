package attack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/idlegrid/idlegrid/internal/gateway"
	"github.com/idlegrid/idlegrid/internal/hub"
	"github.com/idlegrid/idlegrid/internal/link"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/tstest"
)

// H3: one provider key black-holes traffic.

// TestH3PingFloodProviderIsDroppedAndItsJobFailsOver: the attacker is a
// provider that advertises a cheap, fast model and 1,024 slots, takes a
// job, then floods pings and never reads its connection. It cannot keep
// the job: the gateway's writes to it pass their deadline, the hub drops
// it within the heartbeat timeout, and the consumer's request completes
// on an honest provider, long before the first-token timeout (set to five
// minutes here, so that only the drop can move the request).
func TestH3PingFloodProviderIsDroppedAndItsJobFailsOver(t *testing.T) {
	const heartbeat = 200 * time.Millisecond
	g := newEdgeGateway(t, hub.Config{Link: link.Options{Heartbeat: heartbeat}},
		gateway.Config{FirstTokenTimeout: 5 * time.Minute, TokenTimeout: 5 * time.Minute})
	s := fastSim(t)
	models, err := s.Models(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	m := models[0]
	attacker := connectRaw(t, g.url, protocol.Capabilities{Slots: protocol.MaxSlots, Models: []protocol.Model{{
		Name: m.Name, Digest: m.Digest, PricePromptPerMTok: 1, PriceCompletionPerMTok: 1, TokensPerSecond: 1e6}}})

	// A consumer's request: the attacker is the only provider, so it
	// takes the job.
	served := make(chan string, 1)
	go func() {
		body := fmt.Sprintf(`{"model":%q,"max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`, m.Name)
		req, _ := http.NewRequest("POST", g.url+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+g.apiKey)
		resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
		if err != nil {
			served <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		served <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}()
	tstest.WaitFor(t, 10*time.Second, "the job to reach the attacker", func() bool {
		in, ok := connected(g.hub, attacker.key.Public())
		return ok && in.InFlight == 1
	})

	// The flood: pings as fast as the socket takes them, nothing read.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		ping, _ := protocol.Encode(nil, &protocol.Message{Type: protocol.TypePing, Ping: &protocol.Ping{Seq: 1}})
		frame := []byte(strings.Repeat(string(ping), 512))
		for {
			select {
			case <-stop:
				return
			default:
			}
			// No deadline: the library would close the connection when
			// one passed, and the attacker wants it open.
			if err := attacker.ws.Write(context.Background(), websocket.MessageText, frame); err != nil {
				return
			}
		}
	}()
	flooding := time.Now()
	startAgent(t, g, s, heartbeat)

	// Dropped: within the heartbeat timeout once the socket is full
	// (filling loopback buffers with pongs takes about a second, seven
	// under -race).
	tstest.WaitFor(t, 30*time.Second, "the hub to drop the provider that does not read", func() bool {
		_, ok := connected(g.hub, attacker.key.Public())
		return !ok
	})
	t.Logf("attacker dropped %s after the flood began", time.Since(flooding).Round(time.Millisecond))
	select {
	case got := <-served:
		if !strings.HasPrefix(got, "200 ") {
			t.Fatalf("the consumer's request failed: %s", got)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the consumer's request is still held by the provider that does not read")
	}
}

// TestH3ModelNameFloodIsBounded: the attacker advertises 51,200 model
// names over one connection, 256 at a time. The hub records at most
// MaxModelNamesPerProvider of them; later advertisements are refused
// whole, and the connection keeps serving the models it had.
func TestH3ModelNameFloodIsBounded(t *testing.T) {
	g := newEdgeGateway(t, hub.Config{}, gateway.Config{})
	names := func(batch int) []protocol.Model {
		ms := make([]protocol.Model, protocol.MaxModels)
		for i := range ms {
			ms[i] = protocol.Model{Name: fmt.Sprintf("flood-%d-%d", batch, i), Digest: "d"}
		}
		return ms
	}
	p := connectRaw(t, g.url, protocol.Capabilities{Slots: 1, Models: names(0)})
	const batches = 200
	for b := 1; b < batches; b++ {
		p.send(t, &protocol.Message{Type: protocol.TypeCapabilities, Capabilities: &protocol.Capabilities{Slots: 1, Models: names(b)}})
	}
	last := fmt.Sprintf("flood-%d-%d", batches-1, protocol.MaxModels-1)
	// The hub handles messages in order: once a marker sent after the
	// flood is seen, the whole flood has been handled.
	p.send(t, &protocol.Message{Type: protocol.TypePause})
	tstest.WaitFor(t, 10*time.Second, "the flood to be handled", func() bool {
		in, ok := connected(g.hub, p.key.Public())
		return ok && in.Paused
	})
	if g.hub.KnownModel(last) {
		t.Fatalf("the hub recorded model name %s: %d names from one connection", last, batches*protocol.MaxModels)
	}
	in, _ := connected(g.hub, p.key.Public())
	if got := in.Capabilities.Models[0].Name; got != "flood-1-0" {
		t.Fatalf("the connection serves %q after the refused advertisements, want the last accepted (flood-1-0)", got)
	}
}

// TestH3BigFrameBeforeAuthIsCut: before authenticating, the attacker
// sends a 16 MiB frame. The gateway stops reading at the handshake limit
// (1 MiB) and closes with "message too big", instead of reading 16 MiB
// from anyone who connects.
func TestH3BigFrameBeforeAuthIsCut(t *testing.T) {
	g := newEdgeGateway(t, hub.Config{}, gateway.Config{})
	ws, _ := dialRaw(t, g.url)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ws.Write(ctx, websocket.MessageText, make([]byte, 16<<20))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, err := ws.Read(ctx)
	if code := websocket.CloseStatus(err); code != websocket.StatusMessageTooBig {
		t.Fatalf("connection ended with %v (code %v), want message too big", err, code)
	}
}

// TestH3HandshakesPerIPv6Block: the attacker holds an IPv6 /64 and opens
// provider connections from a new address of it each time. The guard
// counts the block, not the address: past the burst, 429.
func TestH3HandshakesPerIPv6Block(t *testing.T) {
	h := hub.New(hub.Config{Key: newEdgeKey(t), ChainID: edgeChain, Guard: &hub.Guard{Rate: 0.001, Burst: 5}})
	refused := 0
	for i := range 50 {
		r := httptest.NewRequest("GET", protocol.Path, nil)
		r.RemoteAddr = fmt.Sprintf("[2001:db8:1:2::%x]:4000", i+1)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code == http.StatusTooManyRequests {
			refused++
		}
	}
	if refused != 45 {
		t.Fatalf("%d of 50 handshakes from one /64 refused, want 45 (burst 5)", refused)
	}
	// Another /64, and an IPv4 address, have their own budgets.
	for _, addr := range []string{"[2001:db8:1:3::1]:4000", "192.0.2.7:4000"} {
		r := httptest.NewRequest("GET", protocol.Path, nil)
		r.RemoteAddr = addr
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code == http.StatusTooManyRequests {
			t.Fatalf("%s refused: its budget is not the attacker's", addr)
		}
	}
}

// TestH3DispatchNeverWaitsOnAProviderThatDoesNotRead: the attacker
// connects with 1,024 slots and reads nothing. Jobs sent to it fill its
// socket and then its queue; from then on Dispatch refuses at once with
// ErrCongested (the gateway places the job elsewhere) instead of waiting
// up to the request's deadline, and the hub shows the provider without a
// free slot.
func TestH3DispatchNeverWaitsOnAProviderThatDoesNotRead(t *testing.T) {
	g := newEdgeGateway(t, hub.Config{Link: link.Options{Heartbeat: time.Minute, QueueLen: 8}}, gateway.Config{})
	p := connectRaw(t, g.url, protocol.Capabilities{Slots: protocol.MaxSlots, Models: []protocol.Model{{Name: "m", Digest: "d"}}})
	prompt := strings.Repeat("x", 256<<10)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // a request's deadline
	defer cancel()
	for i := range protocol.MaxSlots {
		id := fmt.Sprintf("job-%d", i)
		job := &protocol.Job{ID: id, Request: protocol.Request{Kind: protocol.KindGenerate, Model: "m", Prompt: prompt}, Terms: protocol.Terms{RequestID: id}}
		began := time.Now()
		_, err := g.hub.Dispatch(ctx, p.key.Public(), job)
		if took := time.Since(began); took > time.Second {
			t.Fatalf("dispatch %d waited %s on a provider that does not read", i, took)
		}
		if errors.Is(err, hub.ErrCongested) {
			in, _ := connected(g.hub, p.key.Public())
			if in.Free() != 0 {
				t.Fatalf("a congested provider shows %d free slots", in.Free())
			}
			return
		}
		if err != nil {
			t.Fatalf("dispatch %d: %v", i, err)
		}
	}
	t.Fatal("every slot took a job: the queue never filled")
}
