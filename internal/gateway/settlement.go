package gateway

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idlegrid/idlegrid/internal/receipt"
	"github.com/idlegrid/idlegrid/internal/store"
)

// settlement moves stored receipts onto the ledger in batches: a batch goes
// out when BatchSize receipts are waiting or every Interval, whichever comes
// first, with up to InFlight batches pending at once. Receipts are read from
// the store, never from memory, so a gateway killed at any moment settles
// after restart whatever it had not; the ledger refuses a request_id twice,
// and a receipt it already holds counts as settled, so nothing is charged
// twice either.
type settlement struct {
	g        *Gateway
	log      *slog.Logger
	kick     chan struct{}
	flush    chan chan struct{} // SettleNow's requests, served by RunSettlement
	saved    atomic.Int64       // receipts stored since the last batch was taken
	slots    chan struct{}
	wg       sync.WaitGroup
	mu       sync.Mutex
	inflight map[string]bool
	after    store.Cursor // where next reads on while batches are in flight
	rewind   bool         // a batch failed: next starts over from the oldest
}

// batchTimeout bounds one batch from submission to commit.
const batchTimeout = 2 * time.Minute

func newSettlement(g *Gateway) *settlement {
	return &settlement{g: g, log: g.log.With("component", "settlement"), kick: make(chan struct{}, 1), flush: make(chan chan struct{}),
		slots: make(chan struct{}, g.cfg.SettleInFlight), inflight: map[string]bool{}}
}

// stored is called after each receipt is saved.
func (s *settlement) stored() {
	if s.saved.Add(1) >= int64(s.g.cfg.SettleBatchSize) {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

// RunSettlement settles receipts until ctx ends, then waits for the batches
// in flight. Without a ledger it returns at once. Batches are only ever
// started from here, so their WaitGroup has one owner.
func (g *Gateway) RunSettlement(ctx context.Context) error {
	s := g.settle
	if s == nil {
		return nil
	}
	defer s.wg.Wait()
	var watch sync.WaitGroup // apart from s.wg, which SettleNow waits on
	defer watch.Wait()
	watch.Go(func() { g.watchLedger(ctx) })
	tick := time.NewTicker(g.cfg.SettleInterval)
	defer tick.Stop()
	prune := time.NewTicker(pruneEvery)
	defer prune.Stop()
	g.pruneSettled(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-prune.C:
			g.pruneSettled(ctx)
		case <-tick.C:
			s.drain(ctx, false)
		case <-s.kick:
			s.drain(ctx, true)
		case done := <-s.flush:
			s.drain(ctx, false)
			s.wg.Wait()
			close(done)
		}
	}
}

// pruneEvery is how often settled receipts past KeepSettled are deleted,
// in batches of pruneBatch (each one short transaction, so receipts keep
// committing in between).
const (
	pruneEvery = 10 * time.Minute
	pruneBatch = 256
)

// pruneSettled deletes the receipts settled more than KeepSettled ago.
func (g *Gateway) pruneSettled(ctx context.Context) {
	if g.cfg.KeepSettled <= 0 {
		return
	}
	cutoff := time.Now().Add(-g.cfg.KeepSettled)
	total := 0
	for ctx.Err() == nil {
		n, err := g.cfg.Store.PruneSettled(ctx, cutoff, pruneBatch)
		total += n
		if err != nil {
			if ctx.Err() == nil {
				g.log.Warn("could not delete old settled receipts; will retry", "err", err)
			}
			break
		}
		if n < pruneBatch {
			break
		}
	}
	if total > 0 {
		g.log.Info("deleted settled receipts past retention; the ledger keeps them", "receipts", total, "keep_settled", g.cfg.KeepSettled)
	}
}

// SettleNow has RunSettlement send every unsettled receipt and waits for
// the outcome, for a clean shutdown. Receipts it cannot settle before ctx
// ends stay stored for the next start.
func (g *Gateway) SettleNow(ctx context.Context) error {
	s := g.settle
	if s == nil {
		return nil
	}
	done := make(chan struct{})
	select {
	case s.flush <- done:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	n, err := g.cfg.Store.UnsettledReceipts(ctx, 1)
	if err != nil {
		return err
	}
	if len(n) > 0 {
		return errors.New("receipts remain unsettled; they will be settled at the next start")
	}
	return nil
}

// drain starts batches while full ones are waiting and a slot is free, and
// then, unless fullOnly, the partial batch of what is left (the timer sends
// those). Only one partial batch goes out per call: under steady traffic
// receipts keep arriving, and sending each new handful at once would make
// a ledger transaction, and a block, of a few receipts many times a second.
func (s *settlement) drain(ctx context.Context, fullOnly bool) {
	size := s.g.cfg.SettleBatchSize
	for {
		select {
		case s.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		batch, err := s.next(ctx, size)
		if err != nil {
			s.log.Warn("read unsettled receipts", "err", err)
		}
		if err != nil || len(batch) == 0 || fullOnly && len(batch) < size {
			s.unmark(batch, true)
			<-s.slots
			return
		}
		s.saved.Store(0)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-s.slots }()
			s.unmark(batch, s.send(ctx, batch))
		}()
		if len(batch) < size {
			return
		}
	}
}

// next takes up to size unsettled receipts that no batch in flight holds,
// and marks them in flight. While batches are in flight it reads on from
// the last receipt it took, so it never reads (nor verifies) theirs again;
// with none in flight, or after a batch left receipts unsettled, it starts
// over from the oldest, so that those go out again.
//
// It holds mu while it reads: a batch leaves the in-flight set (unmark)
// only after its receipts are marked settled in the store, so a receipt
// read as unsettled is either still in flight when checked here or was
// never settled; it cannot have been settled and released in between.
func (s *settlement) next(ctx context.Context, size int) ([]receipt.Signed, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	after, limit := s.after, size
	if s.rewind || len(s.inflight) == 0 {
		after, limit, s.rewind = store.Cursor{}, size+len(s.inflight), false
	}
	rs, last, err := s.g.cfg.Store.UnsettledReceiptsAfter(ctx, after, limit)
	if err != nil {
		return nil, err
	}
	batch := rs[:0]
	for i, r := range rs {
		if s.inflight[r.Receipt.RequestID] {
			continue
		}
		if len(batch) == size {
			// Read past a full batch (starting over): the rest is read
			// again next time.
			s.rewind = true
			return batch, nil
		}
		s.inflight[r.Receipt.RequestID] = true
		batch = append(batch, rs[i])
	}
	// Every receipt up to last is now in flight.
	s.after = last
	return batch, nil
}

// unmark takes a batch out of flight; unless settled (every receipt of it
// marked settled or rejected), next starts over from the oldest receipt to
// send again what it left.
func (s *settlement) unmark(batch []receipt.Signed, settled bool) {
	s.mu.Lock()
	for _, r := range batch {
		delete(s.inflight, r.Receipt.RequestID)
	}
	if !settled {
		s.rewind = true
	}
	s.mu.Unlock()
}

// send settles one batch and records each receipt's outcome, and reports
// whether every receipt's outcome is recorded. On any error the receipts
// simply stay unsettled and go out again later.
func (s *settlement) send(ctx context.Context, batch []receipt.Signed) (settled bool) {
	start := time.Now()
	// A batch that never commits (dropped by a restarting node) must not
	// hold its slot forever: after the timeout its receipts go out again,
	// and if the first attempt commits after all, the ledger reports them
	// as already settled.
	bctx, cancel := context.WithTimeout(ctx, batchTimeout)
	out, err := s.g.cfg.Ledger.SettleBatch(bctx, batch)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("settle batch failed; will retry", "receipts", len(batch), "err", err)
		}
		return false
	}
	settled = len(out.Settled)+len(out.Rejected) >= len(batch) // else the ledger left some undecided
	store := s.g.cfg.Store
	byHeight := map[int64][]string{}
	for id, h := range out.Settled {
		byHeight[h] = append(byHeight[h], id)
	}
	bg := context.WithoutCancel(ctx) // the ledger has spoken: record it even while shutting down
	for h, ids := range byHeight {
		slices.Sort(ids)
		if err := store.MarkSettled(bg, ids, h); err != nil {
			settled = false
			s.log.Error("record settlement", "height", h, "receipts", len(ids), "err", err)
		}
	}
	for id, reason := range out.Rejected {
		s.log.Warn("ledger rejected receipt", "request_id", id, "reason", reason)
		if err := store.MarkRejected(bg, id, reason); err != nil {
			settled = false
			s.log.Error("record rejection", "request_id", id, "err", err)
		}
	}
	for i := range batch {
		r := &batch[i].Receipt
		s.g.funds.resolved(r.Consumer, r.Amount)
	}
	s.log.Info("batch settled", "height", out.Height, "settled", len(out.Settled), "rejected", len(out.Rejected),
		"ms", time.Since(start).Milliseconds())
	return settled
}
