package chainrpc

import (
	"context"
	"errors"
	"sync/atomic"
)

// ReadFailover is a Client over several validators of one network. Reads
// (Query, Status) go to the first of its clients that answers, starting
// with the one that answered last: a gateway that lists several validators
// keeps reading balances, and so keeps admitting requests, while one is
// down. A read from another validator may lag by a block, as any read
// between blocks may.
//
// Transactions go to the first client while it can be reached, so that a
// sender's transactions reach one mempool in nonce order, and to the next
// one only while it cannot (a gateway keeps settling with its first
// validator down); WaitTx watches every client and returns the first
// commit any of them reports. An application's answer (a *QueryError, a
// CheckTx refusal) is final; only a node that cannot be reached
// (ErrUnavailable for broadcasts) makes it try the next.
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
	var first error
	for _, c := range f.cs {
		hash, err := c.Broadcast(ctx, tx)
		if err == nil || !errors.Is(err, ErrUnavailable) || ctx.Err() != nil {
			return hash, err
		}
		if first == nil {
			first = err
		}
	}
	return nil, first
}

// WaitTx waits on every client at once: the transaction is committed for
// the whole network, and the node it was broadcast to may be the one that
// went down.
func (f *readFailover) WaitTx(ctx context.Context, hash []byte) (*TxResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type answer struct {
		res *TxResult
		err error
	}
	answers := make(chan answer, len(f.cs))
	for _, c := range f.cs {
		go func() {
			res, err := c.WaitTx(ctx, hash)
			answers <- answer{res, err}
		}()
	}
	var first error
	for range f.cs {
		a := <-answers
		if a.err == nil {
			return a.res, nil
		}
		if first == nil {
			first = a.err
		}
	}
	return nil, first
}

// Submit goes through the first client, which retries until ctx ends (the
// gateway's Signer broadcasts and waits itself, with failover).
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
