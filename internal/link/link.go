// Package link runs the provider protocol over one WebSocket: a reader that
// decodes and validates frames, a writer goroutine that batches queued
// messages into frames, and heartbeats. The gateway's hub and the provider
// agent both use it, so the two ends cannot disagree on framing or liveness.
//
// Why a writer goroutine: many jobs stream chunks over one connection. If
// each job wrote to the socket under a shared mutex, every job would wait on
// every other job's syscall and p99 collapses under load. Instead senders
// encode in their own goroutine and enqueue bytes; the single writer drains
// everything queued into one frame per write.
package link

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/idlegrid/idlegrid/internal/protocol"
)

// Options tune a link; zero values get defaults.
type Options struct {
	// Heartbeat: a ping is sent after this long without sending anything,
	// and the link fails after 3× this long without receiving anything.
	Heartbeat time.Duration
	// MaxMessageBytes bounds one incoming WebSocket message once the link
	// runs; MaxHandshakeBytes bounds it before (hello, auth and welcome
	// are small, so an unauthenticated peer cannot make the other end
	// read megabytes).
	MaxMessageBytes   int64
	MaxHandshakeBytes int64
	// WriteTimeout bounds one frame's write: a peer that takes nothing
	// for this long is dropped (default 2× Heartbeat; the heartbeat checks
	// it, so a stalled write ends the link within 3× Heartbeat, the time
	// after which a silent peer is dropped).
	WriteTimeout time.Duration
	// QueueLen bounds the outgoing queue (messages); Send blocks when full,
	// which is the backpressure from a slow network to the senders, and
	// TrySend refuses.
	QueueLen int
	// MaxFrameBytes is the batching target for one outgoing frame.
	MaxFrameBytes int
}

// Defaults.
const (
	DefaultHeartbeat       = 10 * time.Second
	DefaultMaxMessageBytes = 16 << 20
	// DefaultMaxHandshakeBytes holds the largest valid auth message (256
	// models with every field at its limit, each byte escaped by JSON);
	// TestHandshakeLimitHoldsLargestAuth checks it.
	DefaultMaxHandshakeBytes = 1 << 20
	DefaultQueueLen          = 1024
	DefaultMaxFrameBytes     = 64 << 10
)

func (o Options) withDefaults() Options {
	if o.Heartbeat <= 0 {
		o.Heartbeat = DefaultHeartbeat
	}
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if o.MaxHandshakeBytes <= 0 {
		o.MaxHandshakeBytes = min(DefaultMaxHandshakeBytes, o.MaxMessageBytes)
	}
	if o.QueueLen <= 0 {
		o.QueueLen = DefaultQueueLen
	}
	if o.MaxFrameBytes <= 0 {
		o.MaxFrameBytes = DefaultMaxFrameBytes
	}
	return o
}

// closeGrace is how long a failed link waits for the peer to answer the
// close frame before the socket is cut.
const closeGrace = time.Second

// ErrClosed is returned by Send after the link has stopped.
var ErrClosed = errors.New("link closed")

// ErrFull is returned by TrySend when the outgoing queue is full: the peer
// is not reading as fast as it is sent to.
var ErrFull = errors.New("link congested: outgoing queue full")

// Link is one protocol connection.
type Link struct {
	ws   *websocket.Conn
	opts Options
	out  chan []byte

	done      chan struct{} // closed when the link fails or is closed
	closeOnce sync.Once
	closeErr  error // why the link stopped; set before done is closed

	// readCtx is the reader's context: cancelled closeGrace after the link
	// fails, which force-closes a socket whose peer never answered the
	// close frame.
	readCtx    context.Context
	readCancel context.CancelFunc

	lastRecv     atomic.Int64 // unix nanos
	writingSince atomic.Int64 // unix nanos when the current write began; 0 between writes
	pingSeq      atomic.Uint64
	sentAny      atomic.Bool
}

// New wraps an accepted or dialed WebSocket.
func New(ws *websocket.Conn, opts Options) *Link {
	opts = opts.withDefaults()
	ws.SetReadLimit(opts.MaxHandshakeBytes)
	l := &Link{ws: ws, opts: opts, out: make(chan []byte, opts.QueueLen), done: make(chan struct{})}
	l.readCtx, l.readCancel = context.WithCancel(context.Background())
	l.lastRecv.Store(time.Now().UnixNano())
	return l
}

// SetHeartbeat changes the heartbeat interval (after the handshake agreed
// on one). It must be called before Run.
func (l *Link) SetHeartbeat(d time.Duration) {
	if d > 0 {
		l.opts.Heartbeat = d
	}
}

// Send encodes m and queues it. It blocks while the queue is full, until ctx
// ends or the link stops. After the link stopped it returns an error that
// wraps ErrClosed and the reason the link stopped.
func (l *Link) Send(ctx context.Context, m *protocol.Message) error {
	b, err := protocol.Encode(nil, m)
	if err != nil {
		return err
	}
	// Check first: when the queue has room, select would pick at random
	// between queueing and done, and report success for a message that no
	// writer will ever send.
	select {
	case <-l.done:
		return l.stopped()
	default:
	}
	select {
	case l.out <- b:
		if len(l.out) == 1 {
			// This message starts a new frame: let the writer send it
			// now. A sender that goes on working (an agent relaying a
			// burst of tokens) would otherwise keep the writer waiting in
			// this core's run queue until it blocks, while the other core
			// may take hundreds of microseconds to wake up and steal it
			// (time to first token through the agent: p50 285 → 205 µs
			// from the first chunk sent to its arrival at the gateway).
			// With messages already queued, the writer is busy anyway.
			runtime.Gosched()
		}
		return nil
	case <-l.done:
		return l.stopped()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TrySend encodes m and queues it if the queue has room; it never waits.
// A full queue returns ErrFull: the peer is not reading, and whoever sends
// should treat it as unavailable now rather than wait on it.
func (l *Link) TrySend(m *protocol.Message) error {
	b, err := protocol.Encode(nil, m)
	if err != nil {
		return err
	}
	select {
	case <-l.done:
		return l.stopped()
	default:
	}
	select {
	case l.out <- b:
		return nil
	default:
		return ErrFull
	}
}

// Congested reports whether the peer is behind: the outgoing queue is
// full, or one write has waited on the peer for longer than a heartbeat.
func (l *Link) Congested() bool {
	if len(l.out) == cap(l.out) {
		return true
	}
	since := l.writingSince.Load()
	return since != 0 && time.Since(time.Unix(0, since)) > l.opts.Heartbeat
}

func (l *Link) stopped() error { return fmt.Errorf("%w: %w", ErrClosed, l.err()) }

// ReadOne reads and decodes the next frame, which must hold exactly one
// message. It is for the handshake, before Run.
func (l *Link) ReadOne(ctx context.Context) (*protocol.Message, error) {
	typ, b, err := l.ws.Read(ctx)
	if err != nil {
		return nil, err
	}
	if typ != websocket.MessageText {
		return nil, fmt.Errorf("%w: binary frame", protocol.ErrProtocol)
	}
	var msgs []*protocol.Message
	if err := protocol.DecodeFrame(b, func(m *protocol.Message) error { msgs = append(msgs, m); return nil }); err != nil {
		return nil, err
	}
	if len(msgs) != 1 {
		return nil, fmt.Errorf("%w: handshake frame with %d messages", protocol.ErrProtocol, len(msgs))
	}
	l.lastRecv.Store(time.Now().UnixNano())
	return msgs[0], nil
}

// WriteOne writes m directly, for the handshake, before Run.
func (l *Link) WriteOne(ctx context.Context, m *protocol.Message) error {
	b, err := protocol.Encode(nil, m)
	if err != nil {
		return err
	}
	return l.ws.Write(ctx, websocket.MessageText, b)
}

// Run reads messages and passes each to handle (from this goroutine, in
// order) while the writer and heartbeat run, until ctx ends, the peer goes
// away, handle returns an error, or the peer breaks the protocol. Pings are
// answered here; handle never sees ping or pong. The WebSocket is closed on
// return with a reason derived from the error.
func (l *Link) Run(ctx context.Context, handle func(*protocol.Message) error) error {
	l.ws.SetReadLimit(l.opts.MaxMessageBytes) // authenticated: the full limit
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); l.fail(l.writeLoop()) }()
	go func() { defer wg.Done(); l.fail(l.heartbeatLoop()) }()
	go func() {
		defer wg.Done()
		select {
		case <-ctx.Done():
			l.fail(ctx.Err())
		case <-l.done:
		}
	}()
	l.fail(l.readLoop(handle))
	cancel()
	wg.Wait()
	return l.err()
}

// Close stops the link with a reason sent to the peer.
func (l *Link) Close(reason error) { l.fail(reason) }

// Done is closed when the link has stopped.
func (l *Link) Done() <-chan struct{} { return l.done }

// Err is why the link stopped (nil while running).
func (l *Link) Err() error {
	select {
	case <-l.done:
		return l.closeErr
	default:
		return nil
	}
}

func (l *Link) err() error {
	<-l.done
	return l.closeErr
}

// fail records the first reason the link stops and closes the socket with it.
func (l *Link) fail(err error) {
	if err == nil {
		return
	}
	l.closeOnce.Do(func() {
		l.closeErr = err
		code, reason := websocket.StatusNormalClosure, err.Error()
		switch {
		case errors.Is(err, protocol.ErrProtocol):
			code = websocket.StatusPolicyViolation
		case errors.Is(err, protocol.ErrNotAdmitted):
			code = protocol.StatusNotAdmitted
		case errors.Is(err, context.Canceled):
			code, reason = websocket.StatusGoingAway, "shutting down"
		}
		if len(reason) > 120 { // a close reason must fit a control frame
			reason = strings.ToValidUTF8(reason[:120], "")
		}
		close(l.done)
		if errors.Is(err, errStalled) {
			go l.ws.CloseNow() // a peer that reads nothing would not read a close frame either
		} else {
			go l.ws.Close(code, reason) // waits for the peer's close up to 5 s; never block the caller
		}
		time.AfterFunc(closeGrace, l.readCancel)
	})
}

// readLoop and writeLoop give the socket no context that ends with Run's:
// the WebSocket library closes the connection abruptly when such a context
// ends, which would lose the close reason. The socket is ended by fail,
// which closes it with a reason and, after closeGrace, cuts it.
func (l *Link) readLoop(handle func(*protocol.Message) error) error {
	for {
		typ, b, err := l.ws.Read(l.readCtx)
		if err != nil {
			select {
			case <-l.done:
				return l.closeErr
			default:
			}
			return fmt.Errorf("read: %w", err)
		}
		l.lastRecv.Store(time.Now().UnixNano())
		if typ != websocket.MessageText {
			return fmt.Errorf("%w: binary frame", protocol.ErrProtocol)
		}
		err = protocol.DecodeFrame(b, func(m *protocol.Message) error {
			switch m.Type {
			case protocol.TypePing:
				// Never wait: a peer that pings without reading would
				// otherwise stop this reader once the queue is full. A
				// pong dropped then does not matter; the writer's
				// deadline drops that peer.
				if err := l.TrySend(&protocol.Message{Type: protocol.TypePong, Ping: m.Ping}); err != nil && !errors.Is(err, ErrFull) {
					return err
				}
				return nil
			case protocol.TypePong:
				return nil
			}
			return handle(m)
		})
		if err != nil {
			return err
		}
		// A frame can wake hundreds of goroutines (one per job it carries
		// chunks for). Yield so they run now, instead of waiting until this
		// reader blocks, which under a steady stream of frames is when the
		// runtime preempts it, up to 10 ms later.
		runtime.Gosched()
	}
}

func (l *Link) writeLoop() error {
	// The frame buffer grows with use: an idle connection (most providers
	// most of the time) holds none, where allocating MaxFrameBytes up front
	// cost every connection 64 KiB.
	var frame []byte
	for {
		var b []byte
		select {
		case b = <-l.out:
		case <-l.done:
			return nil
		}
		frame = append(frame[:0], b...)
	drain:
		for len(frame) < l.opts.MaxFrameBytes {
			select {
			case b = <-l.out:
				frame = append(frame, b...)
			default:
				break drain
			}
		}
		if err := l.write(frame); err != nil {
			return err
		}
		l.sentAny.Store(true)
		if cap(frame) > 4*l.opts.MaxFrameBytes { // do not keep a huge buffer after one big message
			frame = nil
		}
	}
}

// write sends one frame. Its bound is kept by the heartbeat (stalled),
// not by a deadline on each write: a timer per frame cost about 2 µs a
// frame (BenchmarkRoundTrip), most of a hop.
func (l *Link) write(frame []byte) error {
	l.writingSince.Store(time.Now().UnixNano())
	err := l.ws.Write(context.Background(), websocket.MessageText, frame)
	l.writingSince.Store(0)
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// errStalled: the peer took nothing of a frame within the write timeout.
var errStalled = errors.New("write: the peer read nothing")

// stalled reports how long the current write has waited, when that is
// longer than the write timeout.
func (l *Link) stalled(now time.Time) (time.Duration, bool) {
	timeout := l.opts.WriteTimeout
	if timeout <= 0 {
		timeout = 2 * l.opts.Heartbeat
	}
	since := l.writingSince.Load()
	if since == 0 {
		return 0, false
	}
	d := now.Sub(time.Unix(0, since))
	return d, d > timeout
}

func (l *Link) heartbeatLoop() error {
	t := time.NewTicker(l.opts.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-l.done:
			return nil
		case <-t.C:
		}
		if d, ok := l.stalled(time.Now()); ok {
			return fmt.Errorf("%w for %s", errStalled, d.Round(time.Millisecond))
		}
		if silent := time.Since(time.Unix(0, l.lastRecv.Load())); silent > 3*l.opts.Heartbeat {
			return fmt.Errorf("peer silent for %s (heartbeat %s)", silent.Round(time.Millisecond), l.opts.Heartbeat)
		}
		if l.sentAny.Swap(false) {
			continue // traffic flowed; the peer knows we are alive
		}
		// A full queue already has a frame on the way; never wait on it.
		ping := &protocol.Message{Type: protocol.TypePing, Ping: &protocol.Ping{Seq: l.pingSeq.Add(1)}}
		if err := l.TrySend(ping); err != nil && !errors.Is(err, ErrFull) {
			return err
		}
	}
}
