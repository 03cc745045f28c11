package gateway

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// fixedLedger answers ConsumerFunds from a table and counts the reads; the
// end-to-end tests run the real chain, this one pins the bookkeeping.
type fixedLedger struct {
	mu    sync.Mutex
	funds map[keys.Address]chainrpc.Funds
	err   error
	reads int
}

func (l *fixedLedger) ConsumerFunds(_ context.Context, c keys.Address) (chainrpc.Funds, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reads++
	return l.funds[c], l.err
}

func (l *fixedLedger) SettleBatch(context.Context, []receipt.Signed) (chainrpc.BatchOutcome, error) {
	return chainrpc.BatchOutcome{}, errors.New("not used")
}

func (l *fixedLedger) Params(context.Context) (ledger.Params, error) {
	return ledger.DefaultParams(), nil
}

// Provider answers that every provider is registered and staked: these
// tests are not about admission (standing_test.go is).
func (l *fixedLedger) Provider(_ context.Context, addr keys.Address) (chainrpc.ProviderInfo, error) {
	return chainrpc.ProviderInfo{Address: addr, Stake: ledger.DefaultParams().MinProviderStake, Reputation: 1000}, nil
}

func (l *fixedLedger) Height(context.Context) (int64, error) { return 1, nil }

func (l *fixedLedger) set(c keys.Address, f chainrpc.Funds, err error) {
	l.mu.Lock()
	l.funds[c], l.err = f, err
	l.mu.Unlock()
}

const alice = keys.Address("idg00000000000000000000000000000000000000a1")

func TestFundsReserveChargeResolve(t *testing.T) {
	ctx := context.Background()
	l := &fixedLedger{funds: map[keys.Address]chainrpc.Funds{alice: {Balance: 1000, Deposit: 800}}}
	f := newFunds(l, time.Hour, map[keys.Address]money.Amount{alice: 100}) // 100 pending from before a restart

	// Spendable is the deposit, 800, minus 100 pending.
	r1, e := f.reserve(ctx, alice, 500, "test")
	if e != nil {
		t.Fatalf("reserve 500 of 700: %v", e)
	}
	if _, e := f.reserve(ctx, alice, 201, "test"); e == nil || e.Status != http.StatusPaymentRequired {
		t.Fatalf("reserve 201 of 200 left: %v, want 402", e)
	}
	r2, e := f.reserve(ctx, alice, 200, "test")
	if e != nil {
		t.Fatalf("reserve the last 200: %v", e)
	}
	r2.release()
	r2.release() // twice is harmless
	if res, pend := f.snapshot(alice); res != 500 || pend != 100 {
		t.Fatalf("after release: reserved %d pending %d", res, pend)
	}
	// The request cost 120 of its 500: 380 is free again.
	r1.charged(120)
	r1.release() // the relay's deferred release after charged does nothing
	if res, pend := f.snapshot(alice); res != 0 || pend != 220 {
		t.Fatalf("after charge: reserved %d pending %d", res, pend)
	}
	if _, e := f.reserve(ctx, alice, 580, "test"); e != nil {
		t.Fatalf("reserve 580 of 580: %v", e)
	}
	// The ledger settles the first 100: pending drops and the cached view
	// is read again (the balance on the ledger dropped by as much).
	reads := l.reads
	l.set(alice, chainrpc.Funds{Balance: 900, Deposit: 700}, nil)
	f.resolved(alice, 100)
	if _, e := f.reserve(ctx, alice, 1, "test"); e == nil {
		t.Fatal("reserve beyond 700 − 580 reserved − 120 pending accepted")
	}
	if l.reads != reads+1 {
		t.Errorf("resolved did not make the next reservation read the ledger (%d reads)", l.reads-reads)
	}
}

func TestFundsLedgerDown(t *testing.T) {
	ctx := context.Background()
	l := &fixedLedger{funds: map[keys.Address]chainrpc.Funds{}}
	l.set(alice, chainrpc.Funds{}, errors.New("connection refused"))
	f := newFunds(l, time.Nanosecond, nil)
	if _, e := f.reserve(ctx, alice, 1, "test"); e == nil || e.Status != http.StatusServiceUnavailable {
		t.Fatalf("no reading and the ledger down: %v, want 503", e)
	}
	l.set(alice, chainrpc.Funds{Balance: 50, Deposit: 50}, nil)
	if _, e := f.reserve(ctx, alice, 10, "test"); e != nil {
		t.Fatal(e)
	}
	// Down again: the last reading stands in.
	l.set(alice, chainrpc.Funds{}, errors.New("connection refused"))
	if _, e := f.reserve(ctx, alice, 40, "test"); e != nil {
		t.Fatalf("ledger down with an earlier reading: %v", e)
	}
	if _, e := f.reserve(ctx, alice, 1, "test"); e == nil || e.Status != http.StatusPaymentRequired {
		t.Fatalf("beyond the earlier reading: %v, want 402", e)
	}
}

// TestFundsConcurrent: many requests racing for one account never reserve
// more than it has.
func TestFundsConcurrent(t *testing.T) {
	l := &fixedLedger{funds: map[keys.Address]chainrpc.Funds{alice: {Balance: 1000, Deposit: 1000}}}
	f := newFunds(l, time.Millisecond, nil)
	var wg sync.WaitGroup
	var mu sync.Mutex
	granted := 0
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				if _, e := f.reserve(context.Background(), alice, 7, "test"); e == nil {
					mu.Lock()
					granted++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if granted != 1000/7 {
		t.Fatalf("%d reservations of 7 granted from 1000", granted)
	}
}

func TestWorstCost(t *testing.T) {
	req := protocol.Request{Kind: protocol.KindChat, Messages: []protocol.ChatMessage{{Role: "user", Content: "hello"}}, Options: protocol.Options{MaxTokens: 100}}
	// Prompt: what checkUsage allows, 4 + 5 bytes + 16 per message for one
	// message and the two of the template's own + 64 = 121 tokens at 1/Mtok
	// priced per million.
	got, err := worstCost(&req, 1_000_000, 2_000_000)
	if err != nil || got != 121+200 {
		t.Fatalf("worstCost = %d, %v; want %d", got, err, 121+200)
	}
	req.Options.MaxTokens = 1 << 62
	if _, err := worstCost(&req, 1_000_000, money.Amount(1)<<62); err == nil {
		t.Error("an overflowing worst case was accepted")
	}
}

// TestWorstCostCoversEveryAcceptedClaim: a provider claiming the most usage
// checkUsage accepts (every prompt token the rule allows, max_tokens of
// completion, an answer long enough to carry them) is never charged more
// than admission reserved; one token more on either side is refused.
func TestWorstCostCoversEveryAcceptedClaim(t *testing.T) {
	long := strings.Repeat("x", 5000)
	for _, req := range []protocol.Request{
		{Kind: protocol.KindChat, Messages: []protocol.ChatMessage{{Role: "user", Content: "hello"}}, Options: protocol.Options{MaxTokens: 100}},
		{Kind: protocol.KindChat, System: "be brief", Messages: []protocol.ChatMessage{{Role: "system", Content: "a"}, {Role: "user", Content: long}, {Role: "assistant", Content: ""}}, Options: protocol.Options{MaxTokens: 1}},
		{Kind: protocol.KindGenerate, Prompt: "abc", Options: protocol.Options{MaxTokens: 7}},
		{Kind: protocol.KindGenerate, Prompt: long, Raw: true, Options: protocol.Options{MaxTokens: 4096}},
		{Kind: protocol.KindGenerate, Options: protocol.Options{MaxTokens: 3}},
	} {
		for _, prices := range [][2]money.Amount{{1_000_000, 2_000_000}, {3, 7}, {5 * money.Unit, money.Unit}} {
			reserved, err := worstCost(&req, prices[0], prices[1])
			if err != nil {
				t.Fatal(err)
			}
			prompt, completion := usageLimit(&req)
			most := protocol.Usage{PromptTokens: prompt, CompletionTokens: completion}
			relayed := int(completion) + 10
			if err := checkUsage(&req, most, relayed); err != nil {
				t.Fatalf("%+v: the largest claim is refused: %v", req.Options, err)
			}
			charged, err := receipt.ComputeAmount(most.PromptTokens, most.CompletionTokens, prices[0], prices[1])
			if err != nil || charged > reserved {
				t.Errorf("%q: a claim of %+v costs %d, above the %d reserved (%v)", req.Prompt+req.System, most, charged, reserved, err)
			}
			for _, over := range []protocol.Usage{{PromptTokens: prompt + 1, CompletionTokens: completion}, {PromptTokens: prompt, CompletionTokens: completion + 1}} {
				if checkUsage(&req, over, relayed) == nil {
					t.Errorf("a claim of %+v, above the limit %+v, is accepted", over, most)
				}
			}
		}
	}
	if _, err := worstCost(&protocol.Request{Kind: protocol.KindGenerate, Prompt: "abc"}, 1, 1); err == nil {
		t.Error("a request without max_tokens got a worst case")
	}
}
