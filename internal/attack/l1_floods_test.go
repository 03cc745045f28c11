package attack

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/gateway"
	"github.com/idlegrid/idlegrid/internal/gateway/samplefeed"
	"github.com/idlegrid/idlegrid/internal/hub"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/link"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
	"github.com/idlegrid/idlegrid/internal/tstest"
)

// L1 (network edge): floods of the sample feed and of stalled streams.

// verifierLedger is the ledger as the sample feed reads it: one account
// registered and staked as a verifier; every other key unknown.
type verifierLedger struct{ verifier keys.Address }

func (v verifierLedger) Account(_ context.Context, addr keys.Address) (chainrpc.AccountInfo, error) {
	if addr != v.verifier {
		return chainrpc.AccountInfo{}, chainrpc.ErrNotFound
	}
	p := ledger.DefaultParams()
	return chainrpc.AccountInfo{Address: addr, Account: ledger.Account{Roles: ledger.RoleVerifier, Stake: p.MinVerifierStake + 1}}, nil
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

// TestL1ThrowawayKeysDoNotBlindVerifiers: the attacker signs one more
// feed read than the replay table holds with a key the ledger does not
// know (each signature different). The feed checks the signer's standing
// before it remembers a signature, so the reads are refused and leave
// nothing in the replay table: a registered verifier reads the feed
// afterwards. (The table holds 1,000 here to keep the test fast; at the
// default 100,000 it is the same test, 100 times longer.)
func TestL1ThrowawayKeysDoNotBlindVerifiers(t *testing.T) {
	verifier, attacker := newEdgeKey(t), newEdgeKey(t)
	const replay = 1_000
	g := newEdgeGateway(t, hub.Config{}, gateway.Config{Samples: gateway.SampleConfig{Share: 1, MaxReplay: replay,
		Verifiers: verifierLedger{verifier: verifier.Public().Address()}}})
	h := g.api.Handler()
	gw := g.key.Public()
	now := time.Now()
	const reads, conns = replay + 1, 2 // concurrent, as an attacker would
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

// TestL1StalledStreamReaderIsCut: the attacker asks for a long streamed
// answer, reads the response headers and then stops reading, keeping its
// connection open. Once the socket buffers are full, the gateway's write
// to it passes ConsumerWriteTimeout: the relay stops, the job is
// cancelled and the provider's latest checkpoint is stored as the
// request's receipt (it is paid for what it delivered). On return the
// relay releases the request's reservation, as for any consumer that
// goes away.
func TestL1StalledStreamReaderIsCut(t *testing.T) {
	const heartbeat = time.Second
	g := newEdgeGateway(t, hub.Config{Link: link.Options{Heartbeat: heartbeat}},
		gateway.Config{ConsumerWriteTimeout: 300 * time.Millisecond, Ledger: richConsumers{}})
	cfg := sim.DefaultConfig()
	for i := range cfg.Models {
		cfg.Models[i].FirstToken, cfg.Models[i].TokensPerSecond, cfg.Models[i].IgnoreEOS = 0, 0, true // a long answer, fast
	}
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	models, err := s.Models(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	prov := startAgent(t, g, s, heartbeat)

	c, err := net.Dial("tcp", strings.TrimPrefix(g.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(4096) // a small window fills sooner
	body := fmt.Sprintf(`{"model":%q,"stream":true,"max_tokens":1000000,"messages":[{"role":"user","content":"Tell me everything."}]}`, models[0].Name)
	fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		g.apiKey, len(body), body)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReaderSize(c, 4096), nil)
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Header.Get("X-Request-Id")
	if resp.StatusCode != http.StatusOK || id == "" {
		t.Fatalf("stream: %d, request id %q", resp.StatusCode, id)
	}
	// From here on, nothing is read.
	began := time.Now()
	if reserved, ok := accountReserved(t, g); !ok || reserved == 0 {
		t.Fatalf("the streaming request holds no reservation (%v, %v)", reserved, ok)
	}
	tstest.WaitFor(t, 20*time.Second, "the stalled stream's job to end with a stored checkpoint receipt", func() bool {
		in, ok := connected(g.hub, prov)
		if !ok || in.InFlight != 0 {
			return false
		}
		r, err := g.store.Receipt(context.Background(), id)
		return err == nil && r.Receipt.CompletionTokens > 0
	})
	tstest.WaitFor(t, 5*time.Second, "the request's reservation to be released", func() bool {
		reserved, ok := accountReserved(t, g)
		return ok && reserved == 0
	})
	r, _ := g.store.Receipt(context.Background(), id)
	t.Logf("cut %s after the reader stalled; the provider is paid for %d tokens", time.Since(began).Round(time.Millisecond), r.Receipt.CompletionTokens)
}

// richConsumers is a ledger on which every consumer can pay: enough for
// the gateway to reserve each request's worst case, which /v1/account
// shows as reserved.
type richConsumers struct{}

func (richConsumers) ConsumerFunds(context.Context, keys.Address) (chainrpc.Funds, error) {
	return chainrpc.Funds{Balance: 1 << 60, Deposit: 1 << 60}, nil
}

func (richConsumers) SettleBatch(context.Context, []receipt.Signed) (chainrpc.BatchOutcome, error) {
	return chainrpc.BatchOutcome{}, errors.New("not settling in this test")
}

func (richConsumers) Height(context.Context) (int64, error) { return 1, nil }

func (richConsumers) Params(context.Context) (ledger.Params, error) {
	return ledger.DefaultParams(), nil
}

// Provider: every provider is registered and staked, so the gateway
// admits the test's providers (admission is not what this test is about).
func (richConsumers) Provider(_ context.Context, a keys.Address) (chainrpc.ProviderInfo, error) {
	return chainrpc.ProviderInfo{Address: a, Reputation: 1000, Stake: ledger.DefaultParams().MinProviderStake}, nil
}

// accountReserved reads what the consumer's requests in flight hold.
func accountReserved(t *testing.T, g *edgeGateway) (money.Amount, bool) {
	t.Helper()
	req, _ := http.NewRequest("GET", g.url+"/v1/account", nil)
	req.Header.Set("Authorization", "Bearer "+g.apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	var v struct {
		Reserved money.Amount `json:"reserved"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&v) != nil {
		return 0, false
	}
	return v.Reserved, true
}
