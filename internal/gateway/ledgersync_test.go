package gateway

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/hub"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/store"
)

// standingLedger answers Provider from a table: absent keys are not
// registered.
type standingLedger struct {
	fixedLedger
	smu       sync.Mutex
	providers map[keys.Address]chainrpc.ProviderInfo
}

func (l *standingLedger) Provider(_ context.Context, addr keys.Address) (chainrpc.ProviderInfo, error) {
	l.smu.Lock()
	defer l.smu.Unlock()
	p, ok := l.providers[addr]
	if !ok {
		return p, chainrpc.ErrNotFound
	}
	return p, nil
}

// brokenLedger cannot read providers.
type brokenLedger struct{ *standingLedger }

func (l *brokenLedger) Provider(context.Context, keys.Address) (chainrpc.ProviderInfo, error) {
	return chainrpc.ProviderInfo{}, errors.New("connection refused")
}

// TestAdmission: with a ledger the gateway admits only providers that are
// registered, staked at least min_provider_stake and not jailed, and says
// which command fixes a refusal; a jail read later takes the provider out
// of routing. AllowUnregisteredProviders and a gateway without a ledger
// admit every key.
func TestAdmission(t *testing.T) {
	ctx := t.Context()
	min := ledger.DefaultParams().MinProviderStake
	key := func() keys.PublicKey {
		k, err := keys.Generate()
		if err != nil {
			t.Fatal(err)
		}
		return k.Public()
	}
	good, unstaked, jailed, unknown := key(), key(), key(), key()
	l := &standingLedger{fixedLedger: fixedLedger{funds: map[keys.Address]chainrpc.Funds{}}, providers: map[keys.Address]chainrpc.ProviderInfo{
		good.Address():     {Stake: min},
		unstaked.Address(): {Stake: min - 1},
		jailed.Address():   {Stake: min, Jailed: true},
	}}
	gw, err := keys.Generate()
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "gateway.db"), store.WithProcessDurability())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	newGateway := func(l Chain, allow bool) *Gateway {
		g, err := New(Config{Key: gw, ChainID: "c", Store: st, Hub: hub.New(hub.Config{Key: gw, ChainID: "c"}), Ledger: l, AllowUnregisteredProviders: allow})
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	g := newGateway(l, false)
	for k, want := range map[keys.PublicKey]string{good: "", unstaked: "run `idlegrid provide init`", jailed: "idlegrid ledger unjail", unknown: "run `idlegrid provide init`"} {
		err := g.admitProvider(ctx, k)
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: refused: %v", k, err)
		case want != "" && (!errors.Is(err, hub.ErrNotAdmitted) || !strings.Contains(err.Error(), want)):
			t.Errorf("%s: %v, want a refusal naming %q", k, err, want)
		}
		if _, ok := g.servable(k); ok != (want == "") {
			t.Errorf("%s: servable %v", k, ok)
		}
	}
	if _, ok := g.servable(key()); ok {
		t.Error("a provider whose standing was never read is servable")
	}
	// The ledger jails the good provider: its next reading takes it out.
	l.smu.Lock()
	l.providers[good.Address()] = chainrpc.ProviderInfo{Stake: min, Jailed: true}
	l.smu.Unlock()
	if err := g.admitProvider(ctx, good); err == nil {
		t.Error("a jailed provider was admitted")
	}
	if _, ok := g.servable(good); ok {
		t.Error("a jailed provider is servable")
	}
	// A ledger that cannot be read refuses, but not as the provider's
	// fault: the agent retries with its usual backoff.
	broken := newGateway(&brokenLedger{standingLedger: l}, false)
	if err := broken.admitProvider(ctx, good); err == nil || errors.Is(err, hub.ErrNotAdmitted) {
		t.Errorf("unreadable ledger: %v", err)
	}
	// Every refusal fits a WebSocket close reason (120 bytes here) whole,
	// the command included, even with the largest amounts.
	maxAmt := money.Amount(^uint64(0))
	for _, st := range []standing{{}, {registered: true, jailed: true}, {registered: true, stake: maxAmt - 1}} {
		why := fmt.Sprintf("%v: %s", hub.ErrNotAdmitted, st.refusal(maxAmt))
		if len(why) > 120 || !strings.Contains(why, "idlegrid ") {
			t.Errorf("refusal of %d bytes: %s", len(why), why)
		}
	}
	// Opted out, or without a ledger: every key.
	for name, g := range map[string]*Gateway{"allow unregistered": newGateway(l, true), "no ledger": newGateway(nil, false)} {
		if err := g.admitProvider(ctx, unknown); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if st, ok := g.servable(unknown); !ok || st.routingReputation() != 0 {
			t.Errorf("%s: servable %v, reputation %d", name, ok, st.routingReputation())
		}
	}
}
