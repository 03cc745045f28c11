package link

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/idlegrid/idlegrid/internal/protocol"
)

// wait bounds every blocking step of these tests: generous, because a
// loaded machine under -race is slow, yet finite, so a hang fails.
const wait = 10 * time.Second

// wsPair returns the two ends of a real WebSocket over loopback: the
// server's accepted end and the client's dialed end. Both are closed at
// cleanup.
func wsPair(tb testing.TB) (server, client *websocket.Conn) {
	tb.Helper()
	accepted := make(chan *websocket.Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		accepted <- ws
	}))
	tb.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	client, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		tb.Fatalf("dial: %v", err)
	}
	tb.Cleanup(func() { client.CloseNow() })
	// The peer's end reads frames as big as a link sends (the library's
	// default limit is 32 KiB); link.New sets the same on its own end.
	client.SetReadLimit(DefaultMaxMessageBytes)
	select {
	case server = <-accepted:
	case <-ctx.Done():
		tb.Fatal("server did not accept the WebSocket")
	}
	tb.Cleanup(func() { server.CloseNow() })
	return server, client
}

// peer is the test's raw end of a link: it reads frames and decodes them
// with the protocol package, without any of the link's machinery.
type peer struct {
	ws *websocket.Conn
}

// frame reads the next frame and returns its messages.
func (p *peer) frame(tb testing.TB) ([]*protocol.Message, error) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	typ, b, err := p.ws.Read(ctx)
	if err != nil {
		return nil, err
	}
	if typ != websocket.MessageText {
		tb.Fatalf("link sent a %v frame", typ)
	}
	var msgs []*protocol.Message
	err = protocol.DecodeFrame(b, func(m *protocol.Message) error { msgs = append(msgs, m); return nil })
	if err != nil {
		tb.Fatalf("link sent a frame the protocol rejects: %v\n%s", err, b)
	}
	return msgs, nil
}

// next returns the next message that is not a ping (the link's own
// heartbeat may interleave with what a test waits for).
func (p *peer) next(tb testing.TB, queued *[]*protocol.Message) *protocol.Message {
	tb.Helper()
	for len(*queued) == 0 {
		msgs, err := p.frame(tb)
		if err != nil {
			tb.Fatalf("read: %v", err)
		}
		for _, m := range msgs {
			if m.Type != protocol.TypePing {
				*queued = append(*queued, m)
			}
		}
	}
	m := (*queued)[0]
	*queued = (*queued)[1:]
	return m
}

func (p *peer) write(tb testing.TB, typ websocket.MessageType, b []byte) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := p.ws.Write(ctx, typ, b); err != nil {
		tb.Fatalf("peer write: %v", err)
	}
}

func (p *peer) send(tb testing.TB, msgs ...*protocol.Message) {
	tb.Helper()
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = protocol.Encode(b, m); err != nil {
			tb.Fatal(err)
		}
	}
	p.write(tb, websocket.MessageText, b)
}

// closeFrame reads until the link closes the connection and returns the
// close frame it sent.
func (p *peer) closeFrame(tb testing.TB) websocket.CloseError {
	tb.Helper()
	for {
		_, err := p.frame(tb)
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		if !errors.As(err, &ce) {
			tb.Fatalf("connection ended without a close frame: %v", err)
		}
		return ce
	}
}

// running is a link whose Run is in a goroutine owned by the test.
type running struct {
	*Link
	handled chan *protocol.Message
	result  chan error
}

// start runs l with a handle that records every message it sees, and
// stops it at cleanup. peer is the other end of l's WebSocket: cleanup cuts
// it first, so that Run need not wait out its close grace for a peer that
// is not reading.
func start(tb testing.TB, l *Link, peer *websocket.Conn) *running {
	tb.Helper()
	r := &running{Link: l, handled: make(chan *protocol.Message, 1024), result: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		r.result <- l.Run(ctx, func(m *protocol.Message) error {
			r.handled <- m
			return nil
		})
	}()
	tb.Cleanup(func() {
		peer.CloseNow()
		cancel()
		select {
		case <-r.result:
		case <-time.After(wait):
			tb.Error("Run did not return after its context was cancelled")
		}
	})
	return r
}

// ended waits for Run to return and returns its error. It may be called
// once per running link.
func (r *running) ended(tb testing.TB) error {
	tb.Helper()
	select {
	case err := <-r.result:
		r.result <- err // for the cleanup
		return err
	case <-time.After(wait):
		tb.Fatal("Run did not return")
		return nil
	}
}

func chunk(id string, seq uint64, delta string) *protocol.Message {
	return &protocol.Message{Type: protocol.TypeChunk, Chunk: &protocol.Chunk{ID: id, Seq: seq, Delta: delta, Tokens: 1}}
}

func sendCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	tb.Cleanup(cancel)
	return ctx
}

// drain reads and discards everything from ws until it closes, so that it
// answers the link's close frame at once (a test that does not read the
// peer would otherwise wait for the link's close timeout).
func drain(ws *websocket.Conn) {
	go func() {
		for {
			if _, _, err := ws.Read(context.Background()); err != nil {
				return
			}
		}
	}()
}
