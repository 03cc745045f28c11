package chain

import (
	"context"
	"errors"
	"testing"
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
