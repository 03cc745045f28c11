package chainrpc

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// fakeReader answers reads with a fixed value or error and counts them.
type fakeReader struct {
	Client // nil: only reads are called
	value  string
	err    error
	reads  int
}

func (f *fakeReader) Query(context.Context, string, []byte) ([]byte, error) {
	f.reads++
	return []byte(f.value), f.err
}

func (f *fakeReader) Status(context.Context) (Status, error) {
	f.reads++
	return Status{ChainID: f.value}, f.err
}

// TestReadFailover: reads go to the first client that answers and stay
// there; an application's answer is final; an unreachable node makes it
// try the next; when none answers the first error is returned.
func TestReadFailover(t *testing.T) {
	down := errors.New("connection refused")
	notFound := &QueryError{Path: "/account", Code: 2, Log: "not found"}
	ctx := context.Background()

	a, b, c := &fakeReader{err: down}, &fakeReader{value: "b"}, &fakeReader{value: "c"}
	f := ReadFailover(a, b, c)
	if v, err := f.Query(ctx, "/account", nil); err != nil || string(v) != "b" || a.reads != 1 || b.reads != 1 || c.reads != 0 {
		t.Fatalf("first read: %q %v (reads %d %d %d)", v, err, a.reads, b.reads, c.reads)
	}
	// The client that answered is asked first next time.
	if st, err := f.Status(ctx); err != nil || st.ChainID != "b" || a.reads != 1 || b.reads != 2 {
		t.Fatalf("second read: %+v %v (reads %d %d)", st, err, a.reads, b.reads)
	}
	// An application's answer is final, and the node that gave it is kept.
	b.err = notFound
	if _, err := f.Query(ctx, "/account", nil); !errors.As(err, new(*QueryError)) || c.reads != 0 {
		t.Fatalf("query error: %v (c asked %d times)", err, c.reads)
	}
	// b goes down: c answers; then all are down: the first error (the
	// client asked first, c) is returned.
	b.err = down
	if v, err := f.Query(ctx, "/account", nil); err != nil || string(v) != "c" {
		t.Fatalf("after b went down: %q %v", v, err)
	}
	c.err = errors.New("c: timeout")
	if _, err := f.Query(ctx, "/account", nil); err == nil || err.Error() != "c: timeout" {
		t.Fatalf("all down: %v, want c's error", err)
	}
	// A cancelled context ends the search at once.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	before := a.reads + b.reads + c.reads
	if _, err := f.Query(cctx, "/account", nil); err == nil || a.reads+b.reads+c.reads != before+1 {
		t.Fatalf("cancelled: %v after %d reads", err, a.reads+b.reads+c.reads-before)
	}
	// One client is itself.
	if ReadFailover(b) != Client(b) {
		t.Fatal("a single client is not wrapped")
	}
}

// fakeSender answers broadcasts with err (or accepts them) and reports a
// commit after commitAfter, or never (until ctx ends) when it is zero.
type fakeSender struct {
	Client
	err         error
	commitAfter time.Duration
	height      int64
	broadcasts  int
}

func (f *fakeSender) Broadcast(_ context.Context, tx []byte) ([]byte, error) {
	f.broadcasts++
	if f.err != nil {
		return nil, f.err
	}
	return []byte("hash"), nil
}

func (f *fakeSender) WaitTx(ctx context.Context, hash []byte) (*TxResult, error) {
	if f.commitAfter == 0 {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	select {
	case <-time.After(f.commitAfter):
		return &TxResult{Hash: hash, Height: f.height}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// TestTxFailover: broadcasts go to the first client while it is reachable
// and to the next only while it is not; a refusal is final; WaitTx returns
// the first commit any client reports, so a wait survives the node it
// started on going down.
func TestTxFailover(t *testing.T) {
	ctx := context.Background()
	down := fmt.Errorf("broadcast: %w: connection refused", ErrUnavailable)
	a, b := &fakeSender{}, &fakeSender{}
	f := ReadFailover(a, b)
	if _, err := f.Broadcast(ctx, []byte("tx")); err != nil || a.broadcasts != 1 || b.broadcasts != 0 {
		t.Fatalf("first up: %v (broadcasts %d %d)", err, a.broadcasts, b.broadcasts)
	}
	a.err = down
	if _, err := f.Broadcast(ctx, []byte("tx")); err != nil || a.broadcasts != 2 || b.broadcasts != 1 {
		t.Fatalf("first down: %v (broadcasts %d %d)", err, a.broadcasts, b.broadcasts)
	}
	b.err = down
	if _, err := f.Broadcast(ctx, []byte("tx")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("all down: %v", err)
	}
	a.err = &TxError{Code: 5, Log: "bad nonce"}
	b.err = nil
	if _, err := f.Broadcast(ctx, []byte("tx")); !errors.As(err, new(*TxError)) || b.broadcasts != 2 {
		t.Fatalf("refusal: %v (b asked %d times; want it not asked again)", err, b.broadcasts)
	}
	// The first node never reports the commit (it went down); the second does.
	a.commitAfter, b.commitAfter, b.height = 0, 20*time.Millisecond, 7
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if res, err := f.WaitTx(wctx, []byte("hash")); err != nil || res.Height != 7 {
		t.Fatalf("wait: %+v %v", res, err)
	}
	// Nobody commits: the wait ends with the context.
	b.commitAfter = 0
	sctx, scancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer scancel()
	if _, err := f.WaitTx(sctx, []byte("hash")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("no commit: %v", err)
	}
}
