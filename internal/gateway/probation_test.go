package gateway

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/hub"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/receipt"
	"github.com/idlegrid/idlegrid/internal/scheduler"
	"github.com/idlegrid/idlegrid/internal/store"
)

// TestProbationCap: a provider that has not passed ProbationCases cases
// gets at most ProbationShare of a model's requests while an audited
// provider can take them (now or once a slot frees), all of them when
// nobody else can take one (the audited provider paused), and
// its fair share once it has passed; one with a failed case inside the
// conviction window stays capped whatever it passed before.
func TestProbationCap(t *testing.T) {
	ctx := t.Context()
	min := ledger.DefaultParams().MinProviderStake
	gen := func() keys.PublicKey {
		k, err := keys.Generate()
		if err != nil {
			t.Fatal(err)
		}
		return k.Public()
	}
	old, newcomer := gen(), gen()
	model := protocol.Model{Name: "tiny:latest", Digest: "sha256:aa"}
	passed := func(audits, failures, passes uint64, recent ...uint64) chainrpc.ProviderInfo {
		return chainrpc.ProviderInfo{Stake: min, ProviderRecord: ledger.ProviderRecord{Audits: audits, Failures: failures, Recent: recent,
			Passed: ledger.PassedDigests{{Digest: model.Digest, Passes: passes}}}}
	}
	audited := passed(10, 0, 10)
	l := &standingLedger{fixedLedger: fixedLedger{}, providers: map[keys.Address]chainrpc.ProviderInfo{
		old.Address():      audited,
		newcomer.Address(): {Stake: min},
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
	g, err := New(Config{Key: gw, ChainID: "c", Store: st, Hub: hub.New(hub.Config{Key: gw, ChainID: "c"}), Ledger: l, Policy: scheduler.PolicyRoundRobin})
	if err != nil {
		t.Fatal(err)
	}
	read := func() {
		for _, k := range []keys.PublicKey{old, newcomer} {
			if err := g.admitProvider(ctx, k); err != nil {
				t.Fatal(err)
			}
		}
	}
	read()
	info := func(k keys.PublicKey, inflight int) hub.Info {
		return hub.Info{Key: k, Capabilities: protocol.Capabilities{Models: []protocol.Model{model}, Slots: 4}, InFlight: inflight}
	}
	// share places n requests for "tiny" and returns the newcomer's share
	// of them; a request that would wait in the queue counts as placed on
	// the audited provider (it gets the next free slot).
	share := func(n int, oldInfo hub.Info, prefs scheduler.Preferences) float64 {
		got := 0
		for range n {
			req := protocol.Request{Kind: protocol.KindGenerate, Model: "tiny", Prompt: "hi"}
			c := &call{asked: "tiny", req: req}
			c.sched = g.sched.NewRequest(&c.req, prefs, "")
			choice, err := g.pick(c, []hub.Info{oldInfo, info(newcomer, 0)})
			var u *scheduler.Unplaceable
			switch {
			case errors.As(err, &u) && u.OnlyBusy():
				choice.Key = old
			case err != nil:
				t.Fatal(err)
			}
			g.placed(probationModel(c.asked), choice.Key, []hub.Info{oldInfo, info(newcomer, 0)})
			if choice.Key == newcomer {
				got++
			}
		}
		return float64(got) / float64(n)
	}
	if s := share(500, info(old, 0), scheduler.Preferences{}); s > DefaultProbationShare+0.005 || s < DefaultProbationShare/2 {
		t.Errorf("a newcomer got %.3f of the requests, want about %.2f", s, DefaultProbationShare)
	}
	// With the audited provider's slots full, requests wait for them
	// rather than go to the newcomer over its share.
	if s := share(500, info(old, 4), scheduler.Preferences{}); s > DefaultProbationShare+0.005 || s < DefaultProbationShare/2 {
		t.Errorf("with the audited provider full the newcomer got %.3f of the requests, want about %.2f", s, DefaultProbationShare)
	}
	// With the audited provider paused, nobody else can take them.
	paused := info(old, 0)
	paused.Paused = true
	if s := share(20, paused, scheduler.Preferences{}); s != 1 {
		t.Errorf("with the audited provider paused the newcomer got %.2f of the requests, want all", s)
	}
	ref, err := scheduler.ParseProviderRef(newcomer.String())
	if err != nil {
		t.Fatal(err)
	}
	pinned := scheduler.Preferences{Order: []scheduler.ProviderRef{ref}, NoFallbacks: true}
	if s := share(20, info(old, 0), pinned); s != 1 {
		t.Errorf("requests pinned to the newcomer (canaries) reached it %.2f of the time, want all", s)
	}

	// The newcomer passes its cases: the cap lifts.
	l.smu.Lock()
	l.providers[newcomer.Address()] = passed(DefaultProbationCases, 0, DefaultProbationCases)
	l.smu.Unlock()
	read()
	if s := share(500, info(old, 0), scheduler.Preferences{}); s < 0.4 || s > 0.6 {
		t.Errorf("after passing %d cases the newcomer got %.3f of the requests, want about half", DefaultProbationCases, s)
	}

	// A failed case inside the conviction window caps it again.
	l.smu.Lock()
	l.providers[newcomer.Address()] = passed(20, 1, 19, 7)
	l.smu.Unlock()
	read()
	if s := share(1000, info(old, 0), scheduler.Preferences{}); s > DefaultProbationShare+0.005 {
		t.Errorf("a provider with a failed case got %.3f of the requests, want at most %.2f", s, DefaultProbationShare)
	}
}

// TestProbationSampled: every response of a provider on probation goes
// into the sample feed, whatever the feed's share.
func TestProbationSampled(t *testing.T) {
	gen := func() keys.PublicKey {
		k, err := keys.Generate()
		if err != nil {
			t.Fatal(err)
		}
		return k.Public()
	}
	newcomer, old := gen(), gen()
	f, err := newSampleFeed(SampleConfig{Share: 1e-12, ShareText: true}, "c", gen(), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	f.onProbation = func(k keys.PublicKey, _ string) bool { return k == newcomer }
	req := protocol.Request{Kind: protocol.KindGenerate, Model: "tiny", Prompt: "hi"}
	for range 10 {
		for _, k := range []keys.PublicKey{newcomer, old} {
			f.offer(&req, receipt.Signed{Receipt: receipt.Receipt{Provider: k}}, "stop", "text", 4)
		}
	}
	page := f.page(0, 100, false)
	if len(page.Samples) != 10 {
		t.Fatalf("%d samples, want the newcomer's 10", len(page.Samples))
	}
	for _, s := range page.Samples {
		if s.Receipt.Receipt.Provider != newcomer || !s.Shared() {
			t.Errorf("sample %+v", s)
		}
	}
}

// TestProbationPerDigest: probation is per (provider, digest). A provider
// that passed its probation serving one digest of a model and then serves
// the model with new weights is on probation for them: capped at the
// probation share and every response sampled, until it has passed its
// cases with them; the weights it passed with stay uncapped.
func TestProbationPerDigest(t *testing.T) {
	ctx := t.Context()
	min := ledger.DefaultParams().MinProviderStake
	gen := func() keys.PublicKey {
		k, err := keys.Generate()
		if err != nil {
			t.Fatal(err)
		}
		return k.Public()
	}
	old, moved := gen(), gen()
	l := &standingLedger{providers: map[keys.Address]chainrpc.ProviderInfo{}}
	// passed gives who n passed cases with digest, as the ledger counts
	// them.
	passed := func(who keys.PublicKey, digest string, n uint64) {
		l.smu.Lock()
		defer l.smu.Unlock()
		p := l.providers[who.Address()]
		p.Stake = min
		p.Audits += n
		i := slices.IndexFunc(p.Passed, func(d ledger.DigestPasses) bool { return d.Digest == digest })
		if i < 0 {
			p.Passed = append(p.Passed, ledger.DigestPasses{Digest: digest})
			slices.SortFunc(p.Passed, func(a, b ledger.DigestPasses) int { return strings.Compare(a.Digest, b.Digest) })
			i = slices.IndexFunc(p.Passed, func(d ledger.DigestPasses) bool { return d.Digest == digest })
		}
		p.Passed[i].Passes += n
		l.providers[who.Address()] = p
	}
	passed(old, "sha256:aa", 8)
	passed(moved, "sha256:aa", DefaultProbationCases)
	gw, err := keys.Generate()
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "gateway.db"), store.WithProcessDurability())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	g, err := New(Config{Key: gw, ChainID: "c", Store: st, Hub: hub.New(hub.Config{Key: gw, ChainID: "c"}), Ledger: l, Policy: scheduler.PolicyRoundRobin})
	if err != nil {
		t.Fatal(err)
	}
	read := func() {
		for _, k := range []keys.PublicKey{old, moved} {
			if err := g.admitProvider(ctx, k); err != nil {
				t.Fatal(err)
			}
		}
	}
	read()
	info := func(k keys.PublicKey, digest string) hub.Info {
		return hub.Info{Key: k, Capabilities: protocol.Capabilities{Models: []protocol.Model{{Name: "tiny:latest", Digest: digest}}, Slots: 4}}
	}
	// share places n requests for "tiny" and returns moved's share of them
	// when it serves digest.
	share := func(n int, digest string) float64 {
		return shareOf(t, g, n, moved, []hub.Info{info(old, "sha256:aa"), info(moved, digest)})
	}
	if s := share(500, "sha256:aa"); s < 0.4 || s > 0.6 {
		t.Errorf("with the weights it passed with, the provider got %.3f of the requests, want about half", s)
	}
	if s := share(500, "sha256:bb"); s > DefaultProbationShare+0.005 || s < DefaultProbationShare/2 {
		t.Errorf("with new weights, the provider got %.3f of the requests, want about %.2f (probation)", s, DefaultProbationShare)
	}
	if !g.sampledOnProbation(moved, "sha256:bb") || g.sampledOnProbation(moved, "sha256:aa") || g.sampledOnProbation(old, "sha256:aa") {
		t.Error("every response of the new weights, and only those, should be sampled")
	}
	// It passes its cases with the new weights: the cap lifts.
	passed(moved, "sha256:bb", DefaultProbationCases)
	read()
	if s := share(500, "sha256:bb"); s < 0.4 || s > 0.6 {
		t.Errorf("after passing %d cases with the new weights, the provider got %.3f of the requests, want about half", DefaultProbationCases, s)
	}
}
