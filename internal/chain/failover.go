package chain

import (
	"context"
	"errors"
	"sync/atomic"
)

// ReadFailover is a Client that submits transactions through its first
// client, as a single client does, but reads (Query, Status) from the first
// of its clients that answers, starting with the one that answered last: a
// gateway that lists several validators keeps reading balances, and so
// keeps admitting requests, while the validator it submits to is down.
// An application's answer (a *QueryError, e.g. not found) is final; only a
// node that cannot be reached makes it try the next. A read from another
// validator may lag the first by a block, as any read between blocks may.
func ReadFailover(cs ...Client) Client {
	if len(cs) == 1 {
		return cs[0]
	}
	return &readFailover{cs: cs}
}

type readFailover struct {
	cs  []Client
	cur atomic.Int32 // the client that answered last
}

var _ Client = (*readFailover)(nil)

func (f *readFailover) Broadcast(ctx context.Context, tx []byte) ([]byte, error) {
	return f.cs[0].Broadcast(ctx, tx)
}

func (f *readFailover) WaitTx(ctx context.Context, hash []byte) (*TxResult, error) {
	return f.cs[0].WaitTx(ctx, hash)
}

func (f *readFailover) Submit(ctx context.Context, tx []byte) (*TxResult, error) {
	return f.cs[0].Submit(ctx, tx)
}

func (f *readFailover) Query(ctx context.Context, path string, data []byte) ([]byte, error) {
	return read(ctx, f, func(c Client) ([]byte, error) { return c.Query(ctx, path, data) })
}

func (f *readFailover) Status(ctx context.Context) (Status, error) {
	return read(ctx, f, func(c Client) (Status, error) { return c.Status(ctx) })
}

// read asks the clients in turn, from the one that answered last, until one
// answers; it returns the first client's error when none does.
func read[T any](ctx context.Context, f *readFailover, ask func(Client) (T, error)) (T, error) {
	start := int(f.cur.Load())
	var first error
	for i := range f.cs {
		n := (start + i) % len(f.cs)
		v, err := ask(f.cs[n])
		var qe *QueryError
		if err == nil || errors.As(err, &qe) || ctx.Err() != nil {
			if err == nil || qe != nil {
				f.cur.Store(int32(n))
			}
			return v, err
		}
		if first == nil {
			first = err
		}
	}
	var zero T
	return zero, first
}
