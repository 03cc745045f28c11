package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/chain"
	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/hub"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/receipt"
	"github.com/idlegrid/idlegrid/internal/scheduler"
	"github.com/idlegrid/idlegrid/internal/store"
	"github.com/idlegrid/idlegrid/internal/tstest"
)

// caseChain is a one-validator chain (CometBFT with the ledger, in
// process) on which the test plays the gateway that settles receipts and
// the verifier that judges them, so that cases about a provider's digests
// mature on a real ledger.
type caseChain struct {
	t        *testing.T
	chainID  string
	gw       keys.PrivateKey
	consumer keys.PrivateKey
	client   chainrpc.Client
	gateway  *chainrpc.Signer // the gateway's: it settles, and gateways read the ledger through it
	verifier *chainrpc.Signer
	payer    *chainrpc.Signer // sends a transfer a block, so that cases mature
	nextID   int
}

// newCaseChain starts the chain: one verifier (all the verifier stake: its
// verdict decides), cases that mature 2 blocks after they open, a failed
// case that leaves the conviction window after 3 blocks and 10 failures to
// convict (the test fails cases without a conviction), and providers
// registered and staked.
func newCaseChain(t *testing.T, providers ...keys.PublicKey) *caseChain {
	t.Helper()
	gen := func() keys.PrivateKey {
		k, err := keys.Generate()
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	c := &caseChain{t: t, chainID: "probation-test", gw: gen(), consumer: gen()}
	ver := gen()
	p := ledger.DefaultParams()
	p.VerdictQuorum, p.VerdictDelayBlocks, p.ConvictFailures, p.ConvictWindowBlocks = 1, 2, 10, 3
	g := ledger.Genesis{Params: p, Accounts: []ledger.GenesisAccount{
		{Address: c.gw.Public().Address(), PubKey: c.gw.Public(), Stake: 10_000 * money.Unit, Roles: []string{"gateway"}},
		{Address: c.consumer.Public().Address(), PubKey: c.consumer.Public(), Balance: 1_000 * money.Unit,
			Approvals: []ledger.GenesisApproval{{Gateway: c.gw.Public().Address(), Deposit: 100 * money.Unit}}},
		{Address: ver.Public().Address(), PubKey: ver.Public(), Balance: money.Unit, Stake: 1_000 * money.Unit, Roles: []string{"verifier"}},
	}}
	for _, k := range providers {
		g.Accounts = append(g.Accounts, ledger.GenesisAccount{Address: k.Address(), PubKey: k, Stake: p.MinProviderStake, Roles: []string{"provider"}})
	}
	appState, err := json.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	if err := chain.InitSingle(home, c.chainID, appState); err != nil {
		t.Fatal(err)
	}
	app, err := chain.OpenApp(filepath.Join(home, "data"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	n, err := chain.StartNode(ctx, chain.NodeConfig{Home: home, App: app})
	if err != nil {
		app.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Stop(); err != nil {
			t.Errorf("stop the node: %v", err)
		}
		app.Close()
	})
	c.client = n.Client()
	c.gateway = chainrpc.NewSigner(c.client, c.gw, c.chainID)
	c.verifier = chainrpc.NewSigner(c.client, ver, c.chainID)
	c.payer = chainrpc.NewSigner(c.client, c.consumer, c.chainID)
	return c
}

// judge settles n receipts of prov served with digest and opens a case on
// each with a verdict (pass or fail), then waits until the cases have
// matured and counted on prov's record.
func (c *caseChain) judge(prov keys.PrivateKey, digest string, n int, pass bool) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.t.Context(), time.Minute)
	defer cancel()
	before := c.record(prov.Public())
	rs := make([]receipt.Signed, n)
	for i := range rs {
		c.nextID++
		r := receipt.Receipt{Version: receipt.Version, ChainID: c.chainID, RequestID: fmt.Sprint("req-", c.nextID),
			Gateway: c.gw.Public(), Provider: prov.Public(), Consumer: c.consumer.Public().Address(),
			Model: "tiny:latest", ModelDigest: digest, PromptTokens: 4, CompletionTokens: 8,
			RequestHash: receipt.Sum(fmt.Append(nil, "request ", c.nextID)), ResponseHash: receipt.Sum(fmt.Append(nil, "response ", c.nextID)),
			StartUnixMs: 1_717_171_717_000, EndUnixMs: 1_717_171_718_000}
		rs[i] = receipt.Signed{Receipt: r, ProviderSignature: receipt.SignProvider(prov, &r), GatewaySignature: receipt.SignGateway(c.gw, &r)}
	}
	out, err := c.gateway.SettleBatch(ctx, rs)
	if err != nil || len(out.Settled) != n {
		c.t.Fatalf("settle %d receipts: %+v %v", n, out, err)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range rs {
		wg.Go(func() {
			br := []ledger.BatchReceipt{ledger.NewBatchReceipt(&rs[i])}
			res, err := c.verifier.Send(ctx, ledger.Tx{Kind: ledger.KindVerdict, Subject: prov.Public().Address(), Digest: digest,
				Evidence: ledger.CaseEvidence(br, false), Pass: pass, CaseReceipts: br})
			if err == nil {
				err = res.Err()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			c.t.Fatalf("verdict: %v", err)
		}
	}
	c.blocksUntil(fmt.Sprintf("%d cases about %s to count", n, digest), func() bool {
		return c.record(prov.Public()).Audits == before.Audits+uint64(n)
	})
}

// blocksUntil makes blocks (a transfer each) until cond holds.
func (c *caseChain) blocksUntil(what string, cond func() bool) {
	c.t.Helper()
	tstest.WaitFor(c.t, time.Minute, what, func() bool {
		if cond() {
			return true
		}
		if _, err := c.payer.Send(c.t.Context(), ledger.Tx{Kind: ledger.KindTransfer, To: c.gw.Public().Address(), Amount: 1}); err != nil {
			c.t.Fatal(err)
		}
		return false
	})
}

func (c *caseChain) record(k keys.PublicKey) chainrpc.ProviderInfo {
	c.t.Helper()
	p, err := c.gateway.Provider(c.t.Context(), k.Address())
	if err != nil {
		c.t.Fatal(err)
	}
	return p
}

// newGateway is a gateway (its own store and hub) reading c's ledger, with
// the standings of keys read, as admission reads them.
func (c *caseChain) newGateway(ks ...keys.PublicKey) *Gateway {
	c.t.Helper()
	st, err := store.Open(c.t.Context(), filepath.Join(c.t.TempDir(), "gateway.db"), store.WithProcessDurability())
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { st.Close() })
	g, err := New(Config{Key: c.gw, ChainID: c.chainID, Store: st, Hub: hub.New(hub.Config{Key: c.gw, ChainID: c.chainID}),
		Ledger: c.gateway, Policy: scheduler.PolicyRoundRobin})
	if err != nil {
		c.t.Fatal(err)
	}
	refreshStandings(c.t, g, ks...)
	return g
}

// refreshStandings reads the standings of ks, as the gateway does at each
// block for its connected providers.
func refreshStandings(t *testing.T, g *Gateway, ks ...keys.PublicKey) {
	t.Helper()
	for _, k := range ks {
		if err := g.admitProvider(t.Context(), k); err != nil {
			t.Fatal(err)
		}
	}
}

// shareOf places n requests for "tiny" among infos and returns the share
// of them placed on who.
func shareOf(t *testing.T, g *Gateway, n int, who keys.PublicKey, infos []hub.Info) float64 {
	t.Helper()
	got := 0
	for range n {
		c := &call{asked: "tiny", req: protocol.Request{Kind: protocol.KindGenerate, Model: "tiny", Prompt: "hi"}}
		c.sched = g.sched.NewRequest(&c.req, scheduler.Preferences{}, "")
		choice, err := g.pick(c, infos)
		if err != nil {
			t.Fatal(err)
		}
		g.placed(probationModel(c.asked), choice.Key, infos)
		if choice.Key == who {
			got++
		}
	}
	return float64(got) / float64(n)
}

// TestProbationPerDigestOnTheLedger: a gateway's probation per (provider,
// digest) reads the passes the ledger counts per digest. A provider that
// passed its cases serving digest A and serves digest B is capped at the
// probation share and sampled for B until B's own cases pass; cases it
// failed serving B never clear B; once it has passed B's cases too (more
// of them than the ledger's latest cases list, so none of A's is among
// them) it is off probation for both, and a gateway started afresh on
// the same ledger sees both cleared at once, without a new case.
func TestProbationPerDigestOnTheLedger(t *testing.T) {
	gen := func() keys.PrivateKey {
		k, err := keys.Generate()
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	old, prov := gen(), gen()
	c := newCaseChain(t, old.Public(), prov.Public())
	const a, b = "sha256:aa", "sha256:bb"
	info := func(k keys.PrivateKey, digest string) hub.Info {
		return hub.Info{Key: k.Public(), Capabilities: protocol.Capabilities{Models: []protocol.Model{{Name: "tiny:latest", Digest: digest}}, Slots: 4}}
	}
	// pairs says, for each (provider, digest), whether g has it on
	// probation (every response of it sampled).
	pairs := func(g *Gateway) map[string]bool {
		out := map[string]bool{}
		for name, k := range map[string]keys.PrivateKey{"old": old, "prov": prov} {
			for _, d := range []string{a, b} {
				out[name+" "+d] = g.sampledOnProbation(k.Public(), d)
			}
		}
		return out
	}
	check := func(g *Gateway, when string, want map[string]bool) {
		t.Helper()
		if got := pairs(g); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: on probation %v, want %v", when, got, want)
		}
	}

	g := c.newGateway(old.Public(), prov.Public())
	check(g, "newcomers", map[string]bool{"old " + a: true, "old " + b: true, "prov " + a: true, "prov " + b: true})
	c.judge(old, a, DefaultProbationCases, true)
	c.judge(prov, a, DefaultProbationCases, true)
	refreshStandings(t, g, old.Public(), prov.Public())
	check(g, "after passing with A", map[string]bool{"old " + a: false, "old " + b: true, "prov " + a: false, "prov " + b: true})
	// The attack: weights it did not pass with, under its good name.
	if s := shareOf(t, g, 500, prov.Public(), []hub.Info{info(old, a), info(prov, b)}); s > DefaultProbationShare+0.005 || s < DefaultProbationShare/2 {
		t.Errorf("serving B after passing with A, the provider got %.3f of the requests, want about %.2f (probation)", s, DefaultProbationShare)
	}

	// Failed cases with B do not clear B, even once the failures have left
	// the conviction window (a later pass with A prunes them).
	c.judge(prov, b, DefaultProbationCases, false)
	c.blocksUntil("the failures to leave the conviction window", func() bool {
		h, err := c.gateway.Height(t.Context())
		recent := c.record(prov.Public()).Recent
		return err == nil && len(recent) > 0 && uint64(h) > recent[len(recent)-1]+3
	})
	c.judge(prov, a, 1, true)
	if p := c.record(prov.Public()); len(p.Recent) != 0 || p.Failures != DefaultProbationCases {
		t.Fatalf("record %+v: want %d failures, none recent", p.ProviderRecord, DefaultProbationCases)
	}
	refreshStandings(t, g, old.Public(), prov.Public())
	check(g, "after failing with B", map[string]bool{"old " + a: false, "old " + b: true, "prov " + a: false, "prov " + b: true})
	if s := shareOf(t, g, 500, prov.Public(), []hub.Info{info(old, a), info(prov, b)}); s > DefaultProbationShare+0.005 {
		t.Errorf("serving B after failing with it, the provider got %.3f of the requests, want at most %.2f (probation)", s, DefaultProbationShare)
	}

	// It passes more cases with B than the ledger lists as latest.
	c.judge(prov, b, 9, true)
	p := c.record(prov.Public())
	if len(p.Last) != 8 || slices.ContainsFunc(p.Last, func(o ledger.CaseOutcome) bool { return !o.Pass }) {
		t.Fatalf("the latest cases are not all B's passes: %+v", p.Last)
	}
	refreshStandings(t, g, old.Public(), prov.Public())
	cleared := map[string]bool{"old " + a: false, "old " + b: true, "prov " + a: false, "prov " + b: false}
	check(g, "after passing with B", cleared)
	if s := shareOf(t, g, 500, prov.Public(), []hub.Info{info(old, a), info(prov, b)}); s < 0.4 || s > 0.6 {
		t.Errorf("after passing with B, the provider got %.3f of the requests serving B, want about half", s)
	}

	// A gateway started afresh on the same ledger.
	audits := p.Audits
	restarted := c.newGateway(old.Public(), prov.Public())
	check(restarted, "a gateway started afresh", cleared)
	if s := shareOf(t, restarted, 500, prov.Public(), []hub.Info{info(old, a), info(prov, a)}); s < 0.4 || s > 0.6 {
		t.Errorf("on the restarted gateway, the provider got %.3f of the requests serving A, want about half", s)
	}
	if p := c.record(prov.Public()); p.Audits != audits {
		t.Fatalf("cases counted meanwhile: %d audits, was %d", p.Audits, audits)
	}
	// What bench verify reads.
	for d, want := range map[string]uint64{a: DefaultProbationCases + 1, b: 9} {
		if n, err := (chainrpc.StateReader{Client: c.client}).PassedWith(t.Context(), prov.Public().Address(), d); err != nil || n != want {
			t.Errorf("PassedWith %s: %d %v, want %d", d, n, err, want)
		}
	}
}
