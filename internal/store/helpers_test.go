package store

import (
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// openSQLite opens a fresh store on a real file in a directory that does not
// exist yet, so every test also exercises directory creation.
func openSQLite(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "data", "gateway.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// signer makes real signed receipts for one provider, gateway and consumer.
type signer struct {
	provider, gateway keys.PrivateKey
	consumer          keys.Address
}

func newSigner(tb testing.TB) signer {
	tb.Helper()
	var sg signer
	for _, k := range []*keys.PrivateKey{&sg.provider, &sg.gateway} {
		var err error
		if *k, err = keys.Generate(); err != nil {
			tb.Fatal(err)
		}
	}
	c, err := keys.Generate()
	if err != nil {
		tb.Fatal(err)
	}
	sg.consumer = c.Public().Address()
	return sg
}

// Test prices in base units per million tokens.
const (
	pricePrompt     money.Amount = 500_000
	priceCompletion money.Amount = 1_500_000
)

// receipt returns a signed receipt for id at the test prices.
func (sg signer) receipt(tb testing.TB, id string, prompt, completion uint64) receipt.Signed {
	tb.Helper()
	return sg.priced(tb, id, prompt, completion, pricePrompt, priceCompletion)
}

func (sg signer) priced(tb testing.TB, id string, prompt, completion uint64, pp, pc money.Amount) receipt.Signed {
	tb.Helper()
	amount, err := receipt.ComputeAmount(prompt, completion, pp, pc)
	if err != nil {
		tb.Fatalf("ComputeAmount: %v", err)
	}
	start := int64(1_700_000_000_000)
	r := receipt.Receipt{
		Version:                receipt.Version,
		ChainID:                "store-test",
		RequestID:              id,
		Gateway:                sg.gateway.Public(),
		Provider:               sg.provider.Public(),
		Consumer:               sg.consumer,
		Model:                  "test-model",
		ModelDigest:            "sha256:0123456789abcdef",
		PromptTokens:           prompt,
		CompletionTokens:       completion,
		PricePromptPerMTok:     pp,
		PriceCompletionPerMTok: pc,
		Amount:                 amount,
		RequestHash:            receipt.Sum([]byte("request " + id)),
		ResponseHash:           receipt.Sum([]byte("response " + id)),
		StartUnixMs:            start,
		EndUnixMs:              start + 1234,
	}
	return receipt.Signed{
		Receipt:           r,
		ProviderSignature: receipt.SignProvider(sg.provider, &r),
		GatewaySignature:  receipt.SignGateway(sg.gateway, &r),
	}
}

// fakeClock ticks one second per reading, so created_at orders rows by the
// sequence of calls rather than by a wall clock that may not advance.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}
