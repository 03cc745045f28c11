package link

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/idlegrid/idlegrid/internal/protocol"
)

// BenchmarkSend streams chunk messages from many goroutines (jobs) over one
// connection to a reader that decodes and counts them, through the link
// (senders queue, one writer batches) and through the naive design the
// link replaces (each sender writes its own frame under a mutex). Compare
// msgs/s of the two at the same number of senders.
func BenchmarkSend(b *testing.B) {
	for _, senders := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("link/senders=%d", senders), func(b *testing.B) {
			server, client := wsPair(b)
			l := New(server, Options{Heartbeat: time.Hour}) // the reader never answers pings
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); l.Run(ctx, func(*protocol.Message) error { return nil }) }()
			b.Cleanup(func() { cancel(); <-done })
			benchSenders(b, senders, client, l.Send)
		})
		b.Run(fmt.Sprintf("mutex/senders=%d", senders), func(b *testing.B) {
			server, client := wsPair(b)
			var mu sync.Mutex
			send := func(ctx context.Context, m *protocol.Message) error {
				frame, err := protocol.Encode(nil, m)
				if err != nil {
					return err
				}
				mu.Lock()
				defer mu.Unlock()
				return server.Write(ctx, websocket.MessageText, frame)
			}
			benchSenders(b, senders, client, send)
		})
	}
}

// benchSenders runs rounds in which each of senders goroutines sends
// perRound chunks, and waits until the reader at client has decoded them
// all.
func benchSenders(b *testing.B, senders int, client *websocket.Conn, send func(context.Context, *protocol.Message) error) {
	const perRound = 100
	counted := make(chan int, 1024)
	go func() {
		defer close(counted)
		for {
			_, frame, err := client.Read(context.Background())
			if err != nil {
				return
			}
			n := 0
			if err := protocol.DecodeFrame(frame, func(*protocol.Message) error { n++; return nil }); err != nil {
				b.Error(err)
				return
			}
			counted <- n
		}
	}()
	ctx := context.Background()
	delta := "token "
	var msgs, frames int
	for b.Loop() {
		var wg sync.WaitGroup
		for s := range senders {
			wg.Go(func() {
				id := fmt.Sprint("job-", s)
				for i := range perRound {
					m := &protocol.Message{Type: protocol.TypeChunk, Chunk: &protocol.Chunk{ID: id, Seq: uint64(i), Delta: delta, Tokens: 1}}
					if err := send(ctx, m); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		want := msgs + senders*perRound
		for msgs < want {
			n, ok := <-counted
			if !ok {
				b.Fatal("reader stopped")
			}
			msgs += n
			frames++
		}
		wg.Wait()
	}
	b.ReportMetric(float64(msgs)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(msgs)/float64(frames), "msgs/frame")
}

// BenchmarkRoundTrip measures one message there and one back between two
// running links over loopback: the cost of a gateway↔provider hop, twice.
func BenchmarkRoundTrip(b *testing.B) {
	server, client := wsPair(b)
	ls, lc := New(server, Options{}), New(client, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ls.Run(ctx, func(m *protocol.Message) error {
		return ls.Send(ctx, &protocol.Message{Type: protocol.TypeCancel, Cancel: m.Cancel})
	})
	back := make(chan struct{}, 1)
	go lc.Run(ctx, func(*protocol.Message) error {
		back <- struct{}{}
		return nil
	})
	msg := &protocol.Message{Type: protocol.TypeCancel, Cancel: &protocol.Cancel{ID: "job-1"}}
	for b.Loop() {
		if err := lc.Send(ctx, msg); err != nil {
			b.Fatal(err)
		}
		<-back
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/roundtrip")
}
