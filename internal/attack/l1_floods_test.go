package attack

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/chain"
	"github.com/idlegrid/idlegrid/internal/gateway"
	"github.com/idlegrid/idlegrid/internal/gateway/samplefeed"
	"github.com/idlegrid/idlegrid/internal/hub"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
)

// L1 (network edge): floods of the sample feed and of stalled streams.

// verifierLedger is the ledger as the sample feed reads it: one account
// registered and staked as a verifier; every other key unknown.
type verifierLedger struct{ verifier keys.Address }

func (v verifierLedger) Account(_ context.Context, addr keys.Address) (chain.AccountInfo, error) {
	if addr != v.verifier {
		return chain.AccountInfo{}, chain.ErrNotFound
	}
	p := ledger.DefaultParams()
	return chain.AccountInfo{Address: addr, Account: ledger.Account{Roles: ledger.RoleVerifier, Stake: p.MinVerifierStake + 1}}, nil
}

func (verifierLedger) Params(context.Context) (ledger.Params, error) {
	return ledger.DefaultParams(), nil
}

// feedRead signs a read of the feed with key and returns the status.
func feedRead(h http.Handler, key keys.PrivateKey, gw keys.PublicKey, target string, now time.Time) int {
	r := httptest.NewRequest("GET", target, nil)
	samplefeed.Sign(r.Header, key, edgeChain, gw, "GET", target, now)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code
}

// TestL1ThrowawayKeysDoNotBlindVerifiers: the attacker signs 100,001
// feed reads with a key the ledger does not know (each signature
// different). The feed checks the signer's standing before it remembers
// a signature, so the reads are refused and leave nothing in the replay
// table: a registered verifier reads the feed afterwards.
func TestL1ThrowawayKeysDoNotBlindVerifiers(t *testing.T) {
	verifier, attacker := newEdgeKey(t), newEdgeKey(t)
	g := newEdgeGateway(t, hub.Config{}, gateway.Config{Samples: gateway.SampleConfig{Share: 1,
		Verifiers: verifierLedger{verifier: verifier.Public().Address()}}})
	h := g.api.Handler()
	gw := g.key.Public()
	now := time.Now()
	const reads, conns = 100_001, 2 // concurrent, as an attacker would
	var wg sync.WaitGroup
	var wrong atomic.Int64
	for c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := c; i < reads; i += conns {
				target := samplefeed.Path + "?after=" + strconv.Itoa(i)
				if code := feedRead(h, attacker, gw, target, now); code != http.StatusForbidden {
					wrong.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if code := feedRead(h, verifier, gw, samplefeed.Path, time.Now()); code != http.StatusOK {
		t.Fatalf("the registered verifier after %d throwaway reads: %d, want 200", reads, code)
	}
	if n := wrong.Load(); n > 0 {
		t.Fatalf("%d throwaway reads were not refused with 403", n)
	}
}
