package hub

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/idlegrid/idlegrid/internal/protocol"
)

// Errors a Stream ends with, besides a provider's own job error.
var (
	// ErrProviderLost: the provider's connection dropped mid-job.
	ErrProviderLost = errors.New("provider connection lost")
	// ErrSlowConsumer: the consumer read so slowly that the job's buffer
	// passed its bound; the job was cancelled to protect the gateway's memory.
	ErrSlowConsumer = errors.New("consumer too slow: job buffer full")
)

// JobError is a provider's error for a job.
type JobError struct {
	Code    protocol.Code
	Message string
}

func (e *JobError) Error() string { return fmt.Sprintf("provider error %s: %s", e.Code, e.Message) }

// Event is the next thing that happened to a job: exactly one field is set.
// A Done or an Err is the last event of a stream.
type Event struct {
	Chunk *protocol.Chunk
	Done  *protocol.Done
	Err   error
}

// Stream is the gateway's end of one dispatched job. The connection's reader
// appends events without ever blocking (one slow consumer must not stall the
// other jobs on the connection); the relay takes them with Next.
type Stream struct {
	p        *Provider
	id       string
	maxBytes int

	notify chan struct{} // capacity 1: "something was queued"

	mu        sync.Mutex
	queue     []Event
	head      int
	bytes     int
	ended     bool // a final event is queued
	cancelled bool // the gateway cancelled; later events are dropped
	nextSeq   uint64
}

// ID is the job id.
func (s *Stream) ID() string { return s.id }

// Provider is the provider serving the stream.
func (s *Stream) Provider() *Provider { return s.p }

// Next returns the next event, waiting for one until ctx ends.
func (s *Stream) Next(ctx context.Context) (Event, error) {
	for {
		s.mu.Lock()
		if s.head < len(s.queue) {
			ev := s.queue[s.head]
			s.queue[s.head] = Event{}
			s.head++
			if ev.Chunk != nil {
				s.bytes -= chunkSize(ev.Chunk)
			}
			if s.head == len(s.queue) {
				s.queue, s.head = s.queue[:0], 0
			}
			s.mu.Unlock()
			return ev, nil
		}
		s.mu.Unlock()
		select {
		case <-s.notify:
		case <-ctx.Done():
			return Event{}, ctx.Err()
		}
	}
}

// Cancel asks the provider to stop the job and drops whatever it still
// sends. It is safe to call at any time, more than once, and after the end.
func (s *Stream) Cancel() {
	s.mu.Lock()
	if s.ended || s.cancelled {
		s.mu.Unlock()
		return
	}
	s.cancelled = true
	s.queue, s.head, s.bytes = nil, 0, 0
	s.mu.Unlock()
	// The slot is freed when the provider confirms (or the link drops).
	s.sendCancel()
}

// push queues ev from the connection's reader. It reports false when the
// job's buffer overflowed, after which the stream is ended with
// ErrSlowConsumer and the caller must cancel the job upstream.
func (s *Stream) push(ev Event) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || s.cancelled {
		return true
	}
	if ev.Chunk != nil {
		if s.bytes+chunkSize(ev.Chunk) > s.maxBytes {
			s.queue = append(s.queue[:s.head], Event{Err: ErrSlowConsumer})
			s.ended, s.cancelled = true, true
			s.wake()
			return false
		}
		s.bytes += chunkSize(ev.Chunk)
	} else {
		s.ended = true
	}
	s.queue = append(s.queue, ev)
	s.wake()
	return true
}

// chunkSize estimates the memory a queued chunk holds, so that chunks with
// little text but many logprobs (or none at all) still count against the
// job's buffer.
func chunkSize(c *protocol.Chunk) int {
	n := 64 + len(c.Delta)
	for _, lp := range c.Logprobs {
		n += 48 + len(lp.Token) + 40*len(lp.Top)
	}
	return n
}

func (s *Stream) wake() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}
