package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// Chain is what the gateway needs from the chain: a consumer's funds for
// admission, and settlement of receipt batches. chainrpc.Signer implements it.
type Chain interface {
	ConsumerFunds(ctx context.Context, consumer keys.Address) (chainrpc.Funds, error)
	SettleBatch(ctx context.Context, rs []receipt.Signed) (chainrpc.BatchOutcome, error)
	// Params are the chain's parameters; the gateway routes only to the
	// model digests they allow.
	Params(ctx context.Context) (ledger.Params, error)
	// Provider is a provider's registration, stake and verification
	// standing: only registered, staked, unjailed providers are served,
	// and reputation weighs the choice (ledgersync.go).
	Provider(ctx context.Context, addr keys.Address) (chainrpc.ProviderInfo, error)

	// Height is the ledger's latest block height; at each new one the
	// gateway re-reads the providers' standing.
	Height(ctx context.Context) (int64, error)
}

var _ Chain = (*chainrpc.Signer)(nil)

// funds is admission bookkeeping per consumer: the deposit the consumer
// locked for this gateway on the ledger (cached briefly), which no other
// gateway can spend, what requests in flight
// have reserved, and what stored receipts will charge once settled. A
// request is admitted only if spendable − reserved − pending covers its
// worst-case cost, so a consumer can never run up more than it can pay.
type funds struct {
	ledger Chain
	ttl    time.Duration
	// shared, when set, holds reservations and pending spend in the
	// database gateways share instead of in memory (see reserve.go).
	shared  SharedFunds
	gateway keys.PublicKey
	grace   time.Duration // a shared reservation outlives its request's deadline by this
	log     *slog.Logger

	mu    sync.Mutex
	accts map[keys.Address]*consumerFunds
}

type consumerFunds struct {
	ledger   chainrpc.Funds
	fetched  time.Time // zero: must be read again
	gen      uint64    // bumped whenever the cached ledger view is invalidated
	reserved money.Amount
	pending  money.Amount
}

func newFunds(l Chain, ttl time.Duration, pending map[keys.Address]money.Amount) *funds {
	f := &funds{ledger: l, ttl: ttl, accts: map[keys.Address]*consumerFunds{}, grace: holdGrace, log: slog.New(slog.DiscardHandler)}
	for c, amt := range pending {
		f.acct(c).pending = amt
	}
	return f
}

func (f *funds) acct(c keys.Address) *consumerFunds {
	a, ok := f.accts[c]
	if !ok {
		a = &consumerFunds{}
		f.accts[c] = a
	}
	return a
}

// reservation is money held for one request in flight.
type reservation struct {
	f        *funds
	consumer keys.Address
	amount   money.Amount
	id       string // in the shared database; empty in memory
	once     sync.Once
}

// worstCost is what a request can cost at most at the given prices: the
// price of usageLimit, the most usage checkUsage lets a provider claim for
// it. A request without max_tokens has no worst case (the relay sets one
// before placing it).
func worstCost(req *protocol.Request, pricePrompt, priceCompletion money.Amount) (money.Amount, error) {
	if req.Options.MaxTokens <= 0 && req.Kind != protocol.KindEmbed {
		return 0, errors.New("a request without max_tokens has no worst-case cost")
	}
	prompt, completion := usageLimit(req)
	return receipt.ComputeAmount(prompt, completion, pricePrompt, priceCompletion)
}

// reserve holds cost for consumer, or answers 402 when the consumer's funds
// do not cover it.
func (f *funds) reserve(ctx context.Context, consumer keys.Address, cost money.Amount, what string) (*reservation, *apierr.Error) {
	view, fetched, e := f.view(ctx, consumer)
	if e != nil {
		return nil, e
	}
	if f.shared != nil {
		return f.reserveShared(ctx, consumer, cost, what, view, fetched)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.acct(consumer)
	spendable := view.Spendable()
	avail := spendable - min(spendable, a.reserved+a.pending) // saturating: pending can exceed a stale view
	if avail < cost {
		return nil, insufficient(consumer, cost, what, view, a.reserved, a.pending)
	}
	a.reserved += cost
	return &reservation{f: f, consumer: consumer, amount: cost}, nil
}

func insufficient(consumer keys.Address, cost money.Amount, what string, view chainrpc.Funds, reserved, pending money.Amount) *apierr.Error {
	return &apierr.Error{Status: http.StatusPaymentRequired, Type: "insufficient_quota", Code: "insufficient_funds",
		Message: fmt.Sprintf("Insufficient funds: this request may cost up to %s tokens (%s), but account %s has %s tokens deposited for this gateway (balance %s, not spendable here), "+
			"with %s reserved by requests in flight and %s charged by receipts awaiting settlement. Lock more in the deposit (`idlegrid ledger approve GATEWAY AMOUNT`, after `idlegrid ledger send` to fund the account), or lower max_tokens.",
			cost, what, consumer, view.Spendable(), view.Balance, reserved, pending)}
}

// view returns the consumer's ledger funds, read again when older than ttl,
// and when they were read (the time the read began).
// When the ledger cannot be reached, a previous reading is used; with none,
// the request fails with 503 rather than being served unpaid.
func (f *funds) view(ctx context.Context, consumer keys.Address) (chainrpc.Funds, time.Time, *apierr.Error) {
	f.mu.Lock()
	a := f.acct(consumer)
	cached, fetched, gen := a.ledger, a.fetched, a.gen
	f.mu.Unlock()
	if !fetched.IsZero() && time.Since(fetched) < f.ttl {
		return cached, fetched, nil
	}
	start := time.Now()
	fresh, err := f.ledger.ConsumerFunds(ctx, consumer)
	if err != nil {
		if !fetched.IsZero() {
			return cached, fetched, nil
		}
		return chainrpc.Funds{}, time.Time{}, apierr.Unavailable("ledger_unavailable", "The gateway cannot read account %s from the ledger right now (%v); please retry.", consumer, err)
	}
	f.mu.Lock()
	if a.gen == gen { // not invalidated while reading: the reading is current
		a.ledger, a.fetched = fresh, start
	}
	f.mu.Unlock()
	return fresh, start, nil
}

// release gives a reservation back (the request failed, or its receipt is
// now counted as pending instead). Safe to call more than once.
func (r *reservation) release() {
	if r == nil {
		return
	}
	r.once.Do(func() {
		if r.id != "" {
			r.f.releaseShared(r.id)
			return
		}
		r.f.mu.Lock()
		a := r.f.acct(r.consumer)
		a.reserved -= min(a.reserved, r.amount)
		r.f.mu.Unlock()
	})
}

// charged turns the reservation into the receipt's actual amount, pending
// until the ledger settles it.
func (r *reservation) charged(amount money.Amount) {
	r.release()
	if r.f.shared != nil {
		return // the stored receipt is the pending charge
	}
	r.f.mu.Lock()
	r.f.acct(r.consumer).pending += amount
	r.f.mu.Unlock()
}

// resolved removes a receipt's amount from pending once the ledger settled
// or rejected it, and drops the cached ledger view, which no longer counts
// what the ledger just charged.
func (f *funds) resolved(consumer keys.Address, amount money.Amount) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.acct(consumer)
	a.pending -= min(a.pending, amount)
	a.fetched = time.Time{}
	a.gen++
}

// snapshot is the bookkeeping for one consumer, for /v1/account.
func (f *funds) snapshot(consumer keys.Address) (reserved, pending money.Amount) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.acct(consumer)
	return a.reserved, a.pending
}
