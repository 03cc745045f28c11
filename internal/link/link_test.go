package link

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/idlegrid/idlegrid/internal/protocol"
)

func TestBatchesQueuedMessagesIntoFewFrames(t *testing.T) {
	const n = 300
	msgLen := len(mustEncode(t, chunk("job-1", n, "tok ")))
	tests := []struct {
		name          string
		maxFrameBytes int
	}{
		{"default frame size", 0},
		{"1 KiB frames", 1024},
		{"frames of about one message", msgLen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server, client := wsPair(t)
			l := New(server, Options{MaxFrameBytes: tt.maxFrameBytes})
			// Queue everything before the writer starts, so how it is
			// batched does not depend on scheduling.
			ctx := sendCtx(t)
			total := 0
			for i := range n {
				m := chunk("job-1", uint64(i), "tok ")
				total += len(mustEncode(t, m))
				if err := l.Send(ctx, m); err != nil {
					t.Fatalf("Send %d: %v", i, err)
				}
			}
			start(t, l, client)
			maxFrame := tt.maxFrameBytes
			if maxFrame == 0 {
				maxFrame = DefaultMaxFrameBytes
			}
			var sizes []int
			var got []*protocol.Message
			for len(got) < n {
				rctx, cancel := context.WithTimeout(context.Background(), wait)
				_, b, err := client.Read(rctx)
				cancel()
				if err != nil {
					t.Fatalf("after %d messages: %v", len(got), err)
				}
				sizes = append(sizes, len(b))
				if err := protocol.DecodeFrame(b, func(m *protocol.Message) error { got = append(got, m); return nil }); err != nil {
					t.Fatal(err)
				}
			}
			for i, m := range got {
				if m.Type != protocol.TypeChunk || m.Chunk.Seq != uint64(i) {
					t.Fatalf("message %d is %s seq %v: order lost", i, m.Type, m.Chunk)
				}
			}
			if len(got) != n {
				t.Fatalf("received %d messages, sent %d", len(got), n)
			}
			// The writer fills a frame up to the target and sends it, so
			// every frame but the last reaches the target and none passes
			// it by a whole message.
			wantFrames := (total + maxFrame - 1) / maxFrame
			if len(sizes) > wantFrames || len(sizes) >= n && maxFrame > msgLen {
				t.Errorf("%d messages (%d bytes) went out in %d frames, want at most %d", n, total, len(sizes), wantFrames)
			}
			for i, s := range sizes {
				if s >= maxFrame+msgLen || i < len(sizes)-1 && s < maxFrame {
					t.Errorf("frame %d of %d is %d bytes; target %d, one message %d", i, len(sizes), s, maxFrame, msgLen)
				}
			}
		})
	}
}

func TestConcurrentSendersKeepTheirOrder(t *testing.T) {
	const senders, perSender = 8, 200
	server, client := wsPair(t)
	r := start(t, New(server, Options{QueueLen: 16}), client) // a short queue: senders block and resume
	ctx := sendCtx(t)
	var wg sync.WaitGroup
	errs := make(chan error, senders)
	for s := range senders {
		wg.Go(func() {
			for i := range perSender {
				if err := r.Send(ctx, chunk(fmt.Sprint("job-", s), uint64(i), "x")); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	p := &peer{ws: client}
	next := map[string]uint64{}
	frames, msgs := 0, 0
	for msgs < senders*perSender {
		got, err := p.frame(t)
		if err != nil {
			t.Fatalf("after %d messages: %v", msgs, err)
		}
		frames++
		for _, m := range got {
			if m.Type == protocol.TypePing {
				continue
			}
			c := m.Chunk
			if c.Seq != next[c.ID] {
				t.Fatalf("%s: chunk %d arrived, expected %d", c.ID, c.Seq, next[c.ID])
			}
			next[c.ID]++
			msgs++
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Send: %v", err)
	}
	t.Logf("%d messages from %d senders in %d frames", msgs, senders, frames)
}

func TestPingIsAnsweredAndNotHandled(t *testing.T) {
	server, client := wsPair(t)
	r := start(t, New(server, Options{}), client)
	p := &peer{ws: client}
	cancel := &protocol.Message{Type: protocol.TypeCancel, Cancel: &protocol.Cancel{ID: "job-9"}}
	// A ping, a stray pong and a real message in one frame: handle must
	// see only the last.
	p.send(t, &protocol.Message{Type: protocol.TypePing, Ping: &protocol.Ping{Seq: 42}},
		&protocol.Message{Type: protocol.TypePong, Ping: &protocol.Ping{Seq: 7}}, cancel)
	var queued []*protocol.Message
	if m := p.next(t, &queued); m.Type != protocol.TypePong || m.Ping.Seq != 42 {
		t.Fatalf("answer to ping 42: %s %+v", m.Type, m.Ping)
	}
	select {
	case m := <-r.handled:
		if m.Type != protocol.TypeCancel || m.Cancel.ID != "job-9" {
			t.Fatalf("handle saw %s first", m.Type)
		}
	case <-time.After(wait):
		t.Fatal("handle never saw the cancel")
	}
	// Messages are handled in order, so nothing before the cancel can
	// still be on its way.
	select {
	case m := <-r.handled:
		t.Fatalf("handle also saw %s", m.Type)
	default:
	}
}

func TestHeartbeat(t *testing.T) {
	t.Run("silent peer fails the link", func(t *testing.T) {
		server, client := wsPair(t)
		r := start(t, New(server, Options{Heartbeat: 50 * time.Millisecond}), client)
		// The peer reads (so it sees the pings) but never answers.
		ce := (&peer{ws: client}).closeFrame(t)
		if !strings.Contains(ce.Reason, "silent") {
			t.Fatalf("peer saw close %d %q", ce.Code, ce.Reason)
		}
		err := r.ended(t)
		if err == nil || !strings.Contains(err.Error(), "silent") {
			t.Fatalf("Run ended with %v, want a silent-peer error", err)
		}
	})
	t.Run("answering peer keeps it alive", func(t *testing.T) {
		const hb = 250 * time.Millisecond
		server, client := wsPair(t)
		r := start(t, New(server, Options{Heartbeat: hb}), client)
		p := &peer{ws: client}
		pings := make(chan uint64, 100)
		go func() {
			for {
				msgs, err := p.frame(t)
				if err != nil {
					return
				}
				for _, m := range msgs {
					if m.Type == protocol.TypePing {
						pings <- m.Ping.Seq
						b, _ := protocol.Encode(nil, &protocol.Message{Type: protocol.TypePong, Ping: m.Ping})
						ctx, cancel := context.WithTimeout(context.Background(), wait)
						_ = client.Write(ctx, websocket.MessageText, b)
						cancel()
					}
				}
			}
		}()
		// Stay well past three heartbeats of the link's own silence.
		deadline := time.After(8 * hb)
		seen := 0
	watch:
		for {
			select {
			case <-pings:
				seen++
			case <-r.Done():
				t.Fatalf("link failed although the peer answered every ping: %v", r.Err())
			case <-deadline:
				break watch
			}
		}
		if seen == 0 {
			t.Fatal("an idle link sent no ping")
		}
		if len(r.handled) != 0 {
			t.Fatal("handle saw heartbeat traffic")
		}
	})
}

func TestCloseSendsReason(t *testing.T) {
	long := func(prefix, r string) string { return prefix + strings.Repeat(r, 200) }
	tests := []struct {
		name   string
		reason error
		code   websocket.StatusCode
		want   string // exact reason; "" for the long ones, checked as a prefix
	}{
		{"plain", errors.New("gateway shutting down"), websocket.StatusNormalClosure, "gateway shutting down"},
		{"protocol error", fmt.Errorf("%w: job %q chunk 5, expected 0", protocol.ErrProtocol, "j"), websocket.StatusPolicyViolation,
			`protocol error: job "j" chunk 5, expected 0`},
		{"shutdown", fmt.Errorf("stopping: %w", context.Canceled), websocket.StatusGoingAway, "shutting down"},
		{"long ASCII", errors.New(long("", "a")), websocket.StatusNormalClosure, ""},
		{"long 2-byte runes, offset 1", errors.New(long("x", "é")), websocket.StatusNormalClosure, ""},
		{"long 3-byte runes, offset 2", errors.New(long("xy", "日本")), websocket.StatusNormalClosure, ""},
		{"long 4-byte runes, offset 3", errors.New(long("xyz", "🦙")), websocket.StatusNormalClosure, ""},
		{"long 4-byte runes, offset 1", errors.New(long("x", "🦙")), websocket.StatusNormalClosure, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server, client := wsPair(t)
			r := start(t, New(server, Options{}), client)
			r.Close(tt.reason)
			ce := (&peer{ws: client}).closeFrame(t)
			if err := r.ended(t); !errors.Is(err, tt.reason) {
				t.Fatalf("Run returned %v, want the close reason", err)
			}
			if ce.Code != tt.code {
				t.Errorf("close code %v, want %v", ce.Code, tt.code)
			}
			if !utf8.ValidString(ce.Reason) {
				t.Errorf("close reason is not valid UTF-8: %q", ce.Reason)
			}
			if tt.want != "" {
				if ce.Reason != tt.want {
					t.Errorf("close reason %q, want %q", ce.Reason, tt.want)
				}
				return
			}
			full := tt.reason.Error()
			// A control frame holds 123 bytes of reason; the cut may drop
			// at most the rune it splits.
			if !strings.HasPrefix(full, ce.Reason) || len(ce.Reason) > 123 || len(ce.Reason) < 120-utf8.UTFMax+1 {
				t.Errorf("close reason is %d bytes %q, want a prefix of the error of 117 to 123 bytes", len(ce.Reason), ce.Reason)
			}
		})
	}
}

func TestSendAfterFailure(t *testing.T) {
	t.Run("after Close", func(t *testing.T) {
		server, client := wsPair(t)
		drain(client)
		r := start(t, New(server, Options{}), client)
		why := errors.New("owner stopped the agent")
		r.Close(why)
		r.ended(t)
		ctx := sendCtx(t)
		// The queue has room: a stopped link must still refuse, every time.
		for i := range 200 {
			err := r.Send(ctx, chunk("j", uint64(i), "x"))
			if err == nil {
				t.Fatalf("Send %d after Close returned nil: the message was queued on a stopped link", i)
			}
			if !errors.Is(err, ErrClosed) || !errors.Is(err, why) {
				t.Fatalf("Send %d after Close: %v, want ErrClosed wrapping the reason", i, err)
			}
		}
	})
	t.Run("after the peer went away", func(t *testing.T) {
		server, client := wsPair(t)
		r := start(t, New(server, Options{}), client)
		client.CloseNow()
		if err := r.ended(t); err == nil {
			t.Fatal("Run returned nil after the peer vanished")
		}
		if err := r.Send(sendCtx(t), chunk("j", 0, "x")); !errors.Is(err, ErrClosed) {
			t.Fatalf("Send after the peer vanished: %v, want ErrClosed", err)
		}
	})
	t.Run("blocked on a full queue", func(t *testing.T) {
		server, client := wsPair(t)
		drain(client)
		l := New(server, Options{QueueLen: 1}) // no writer runs: the queue stays full
		ctx := sendCtx(t)
		if err := l.Send(ctx, chunk("j", 0, "x")); err != nil {
			t.Fatal(err)
		}
		blocked := make(chan error, 1)
		go func() { blocked <- l.Send(ctx, chunk("j", 1, "x")) }()
		select {
		case err := <-blocked:
			t.Fatalf("Send on a full queue returned %v instead of blocking", err)
		case <-time.After(20 * time.Millisecond):
		}
		why := errors.New("gone")
		l.Close(why)
		select {
		case err := <-blocked:
			if !errors.Is(err, ErrClosed) || !errors.Is(err, why) {
				t.Fatalf("blocked Send returned %v", err)
			}
		case <-time.After(wait):
			t.Fatal("a Send blocked on a full queue did not return when the link stopped")
		}
	})
	t.Run("context ends first", func(t *testing.T) {
		server, client := wsPair(t)
		drain(client)
		l := New(server, Options{QueueLen: 1})
		if err := l.Send(sendCtx(t), chunk("j", 0, "x")); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := l.Send(ctx, chunk("j", 1, "x")); !errors.Is(err, context.Canceled) {
			t.Fatalf("Send with a cancelled context on a full queue: %v", err)
		}
		l.Close(errors.New("done"))
	})
}

func TestProtocolViolationClosesWithPolicyViolation(t *testing.T) {
	good := mustEncode(t, chunk("j", 0, "x"))
	tests := []struct {
		name string
		typ  websocket.MessageType
		b    []byte
		want string // in the close reason
	}{
		{"invalid JSON", websocket.MessageText, []byte("{not json\n"), "protocol error"},
		{"binary frame", websocket.MessageBinary, good, "binary frame"},
		{"unknown type", websocket.MessageText, []byte(`{"type":"teleport"}`), "unknown message type"},
		{"payload of another type", websocket.MessageText, []byte(`{"type":"cancel","chunk":{"id":"j"}}`), "without its payload"},
		{"bad message after a good one", websocket.MessageText, append(append([]byte{}, good...), "{}\n"...), "protocol error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server, client := wsPair(t)
			r := start(t, New(server, Options{}), client)
			p := &peer{ws: client}
			p.write(t, tt.typ, tt.b)
			if err := r.ended(t); !errors.Is(err, protocol.ErrProtocol) {
				t.Fatalf("Run returned %v, want a protocol error", err)
			}
			ce := p.closeFrame(t)
			if ce.Code != websocket.StatusPolicyViolation || !strings.Contains(ce.Reason, tt.want) {
				t.Fatalf("closed with %v %q, want policy violation mentioning %q", ce.Code, ce.Reason, tt.want)
			}
		})
	}
	t.Run("handle rejects a message", func(t *testing.T) {
		server, client := wsPair(t)
		l := New(server, Options{})
		result := make(chan error, 1)
		go func() {
			result <- l.Run(context.Background(), func(m *protocol.Message) error {
				return fmt.Errorf("%w: unexpected %s", protocol.ErrProtocol, m.Type)
			})
		}()
		p := &peer{ws: client}
		p.send(t, chunk("j", 0, "x"))
		ce := p.closeFrame(t)
		if ce.Code != websocket.StatusPolicyViolation || ce.Reason != "protocol error: unexpected chunk" {
			t.Fatalf("closed with %v %q", ce.Code, ce.Reason)
		}
		select {
		case err := <-result:
			if !errors.Is(err, protocol.ErrProtocol) {
				t.Fatalf("Run returned %v", err)
			}
		case <-time.After(wait):
			t.Fatal("Run did not return")
		}
	})
}

func TestOversizedMessageEndsTheLink(t *testing.T) {
	server, client := wsPair(t)
	r := start(t, New(server, Options{MaxMessageBytes: 1024}), client)
	p := &peer{ws: client}
	p.send(t, chunk("j", 0, strings.Repeat("x", 2048)))
	if err := r.ended(t); err == nil {
		t.Fatal("Run accepted a message over MaxMessageBytes")
	}
	if len(r.handled) != 0 {
		t.Fatal("handle saw the oversized message")
	}
	ce := p.closeFrame(t)
	if ce.Code != websocket.StatusMessageTooBig {
		t.Fatalf("closed with %v %q, want message too big", ce.Code, ce.Reason)
	}
}

func mustEncode(tb testing.TB, m *protocol.Message) []byte {
	tb.Helper()
	b, err := protocol.Encode(nil, m)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestPeerThatDoesNotReadIsDropped: a peer that floods pings and never
// reads fills the socket and the queue; the reader keeps reading (pongs
// are dropped, not waited for), the writer's deadline ends the link, and
// TrySend refuses at once meanwhile.
func TestPeerThatDoesNotReadIsDropped(t *testing.T) {
	server, client := wsPair(t)
	// The write timeout is one heartbeat, so a stalled write is found
	// two heartbeats before the peer could count as silent (3×): on a
	// busy machine the link's own reader can lag by a few hundred
	// milliseconds, which must not pass for the peer's silence.
	const heartbeat = 250 * time.Millisecond
	l := New(server, Options{Heartbeat: heartbeat, WriteTimeout: heartbeat, QueueLen: 16})
	r := start(t, l, client)
	stop := make(chan struct{})
	defer close(stop)
	go func() { // never reads
		ping := mustEncode(t, &protocol.Message{Type: protocol.TypePing, Ping: &protocol.Ping{Seq: 1}})
		frame := []byte(strings.Repeat(string(ping), 256))
		for {
			select {
			case <-stop:
				return
			default:
			}
			// No deadline: the library would close the connection when
			// one passed, and this peer wants it open.
			if err := client.Write(context.Background(), websocket.MessageText, frame); err != nil {
				return
			}
		}
	}()
	// Traffic to the peer (a provider's jobs, say) fills its socket
	// sooner than pongs alone would.
	go func() {
		big := chunk("j", 0, strings.Repeat("x", 32<<10))
		for {
			select {
			case <-stop:
				return
			case <-l.Done():
				return
			default:
			}
			if errors.Is(l.TrySend(big), ErrFull) {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	// The cause, not the time taken, shows the write deadline dropped it
	// (the reader keeps the link alive, so nothing else would); wait only
	// turns a link that is never dropped into a failure.
	select {
	case err := <-r.result:
		r.result <- err
		if !errors.Is(err, errStalled) {
			t.Fatalf("link ended with %v, want the write deadline", err)
		}
	case <-time.After(wait):
		t.Fatal("a peer that never reads was not dropped")
	}
	if err := l.TrySend(chunk("j", 0, "x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("TrySend after the drop: %v", err)
	}
}

// TestTrySendRefusesWhenFull: TrySend never waits on a queue the writer
// has not drained, and Congested says so.
func TestTrySendRefusesWhenFull(t *testing.T) {
	server, _ := wsPair(t)
	l := New(server, Options{QueueLen: 2})
	for i := range 2 {
		if err := l.TrySend(chunk("j", uint64(i), "x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.TrySend(chunk("j", 2, "x")); !errors.Is(err, ErrFull) {
		t.Fatalf("TrySend on a full queue: %v, want ErrFull", err)
	}
	if !l.Congested() {
		t.Fatal("a full queue is not reported congested")
	}
}

// TestHandshakeLimit: before Run only MaxHandshakeBytes are read (a
// bigger frame ends ReadOne); the largest valid auth fits the default.
func TestHandshakeLimit(t *testing.T) {
	server, client := wsPair(t)
	l := New(server, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	go client.Write(ctx, websocket.MessageText, make([]byte, DefaultMaxHandshakeBytes+1)) // cut short by the link
	if _, err := l.ReadOne(ctx); err == nil {
		t.Fatal("ReadOne read a frame over the handshake limit")
	}

	// Every byte of every string escaped by JSON (a control character
	// takes six bytes), every field at its limit.
	long := func(n int) string { return strings.Repeat("\x01", n) }
	caps := protocol.Capabilities{Slots: protocol.MaxSlots, AgentVersion: long(protocol.MaxMessageText)}
	for range protocol.MaxModels {
		caps.Models = append(caps.Models, protocol.Model{Name: long(protocol.MaxNameLen), Digest: long(128),
			Quantization: long(protocol.MaxLabelLen), Family: long(protocol.MaxLabelLen), ParameterSize: long(protocol.MaxLabelLen),
			ContextLength: 1 << 62, PricePromptPerMTok: 1 << 62, PriceCompletionPerMTok: 1 << 62, TokensPerSecond: 1.2345678901234567e300,
			ParameterCount: 1 << 62, EmbeddingLength: 1 << 62})
	}
	auth := &protocol.Message{Type: protocol.TypeAuth, Auth: &protocol.Auth{ProtocolVersion: protocol.Version, Capabilities: caps}}
	if err := auth.Validate(); err != nil {
		t.Fatalf("the largest auth is not valid: %v", err)
	}
	if n := len(mustEncode(t, auth)); n > DefaultMaxHandshakeBytes {
		t.Fatalf("the largest valid auth is %d bytes, over the handshake limit %d", n, DefaultMaxHandshakeBytes)
	} else {
		t.Logf("largest valid auth: %d bytes (limit %d)", n, DefaultMaxHandshakeBytes)
	}
}
