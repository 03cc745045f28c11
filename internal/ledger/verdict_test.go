package ledger

import (
	"fmt"
	"strings"
	"testing"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

const testDigest = "sha256:baf6a787fdffd633537aa2eb51cfd54cb93ff08e28040095462bb63daf552878" // makeReceipt's

func evidence(s string) receipt.Hash { return receipt.Sum([]byte("evidence " + s)) }

func (w *rewardWorld) verdictTx(v keys.PrivateKey, prov keys.PrivateKey, ev receipt.Hash, pass bool) []byte {
	return signTx(v, Tx{Kind: KindVerdict, Nonce: w.next(v), Subject: addr(prov), Digest: testDigest, Evidence: ev, Pass: pass})
}

func (w *rewardWorld) verdict(v, prov keys.PrivateKey, ev receipt.Hash, pass bool) Result {
	w.tb.Helper()
	return w.apply(w.verdictTx(v, prov, ev, pass))
}

func (w *rewardWorld) record(k keys.PrivateKey) ProviderRecord {
	w.tb.Helper()
	r, err := w.view().ProviderRecord(addr(k))
	if err != nil {
		w.tb.Fatal(err)
	}
	return r
}

func hasEvent(events []Event, typ string) *Event {
	for i := range events {
		if events[i].Type == typ {
			return &events[i]
		}
	}
	return nil
}

// TestConviction: three failed cases within the window convict a provider:
// half its stake, all its escrow and unvested rewards are burned, it is
// jailed (no settlement, no rewards) until it may unjail; its reputation
// drops.
func TestConviction(t *testing.T) {
	w := newRewardWorld(t, rewardParams())    // verdict delay 5, 3 failures convict
	w.serve(job{prov: w.p1, completion: 100}) // height 1: escrow until 6
	for i, h := range []uint64{2, 3, 4} {
		if res := w.verdict(w.ver1, w.p1, evidence(fmt.Sprint(i)), false); res.Code != CodeOK || hasEvent(res.Events, "case_decided") == nil {
			t.Fatalf("verdict at %d: %d %s %+v", h, res.Code, res.Log, res.Events)
		}
	}
	before := w.account(addr(w.p1))
	supplyBefore := w.supply()
	if len(before.Escrow) != 1 || before.Jailed {
		t.Fatalf("before: %+v", before)
	}
	w.skipTo(8) // cases mature at 7, 8, 9
	if r := w.record(w.p1); r.Audits != 2 || r.Failures != 2 || len(r.Recent) != 2 || w.account(addr(w.p1)).Jailed {
		t.Fatalf("after two matured failures: %+v", r)
	}
	run := w.block() // height 9: the third failure convicts
	conv := hasEvent(run.begin, "convicted")
	if conv == nil {
		t.Fatalf("no conviction at height 9: %+v", run.begin)
	}
	after := w.account(addr(w.p1))
	// The escrow was released at height 6, before the conviction: it is
	// the provider's balance now and stays. Half the stake is burned.
	if !after.Jailed || after.Stake != before.Stake/2 || len(after.Escrow) != 0 {
		t.Errorf("after conviction: %+v", after)
	}
	burned := money.Amount(mustUint(t, attr(*conv, "burned")))
	if burned != before.Stake/2 {
		t.Errorf("burned %d, want %d", burned, before.Stake/2)
	}
	s := w.supply()
	if s.Burned != supplyBefore.Burned+burned || s.Total != supplyBefore.Total-burned {
		t.Errorf("supply %+v, before %+v", s, supplyBefore)
	}
	w.checkSupply(s.Total)
	r := w.record(w.p1)
	if r.Convictions != 1 || r.JailedAt != 9 || r.Audits != 3 || r.Failures != 3 || r.Reputation() != 250 ||
		len(r.Last) != 3 || r.Last[2] != (CaseOutcome{Evidence: evidence("2"), Pass: false, Height: 9}) {
		t.Errorf("record %+v, reputation %d", r, r.Reputation())
	}
	// Jailed: its receipts no longer settle.
	rs := []BatchReceipt{batchReceipt(t, w.gw, w.p1, addr(w.alice), "after-jail", 1, 1)}
	res := w.apply(settleTx(w.gw, w.next(w.gw), rs...))
	if res.Code != CodeOK || attr(res.Events[0], "rejected") != "1" || !strings.Contains(attr(res.Events[1], "reason"), "jailed") {
		t.Errorf("receipt of a jailed provider: %+v", res.Events)
	}
	// It may unjail after JailBlocks (100).
	if res := w.apply(signTx(w.p1, Tx{Kind: KindUnjail, Nonce: w.next(w.p1)})); res.Code != CodeInvalid {
		t.Errorf("unjail too early: code %d", res.Code)
	}
	w.skipTo(108)
	if res := w.apply(signTx(w.p1, Tx{Kind: KindUnjail, Nonce: w.next(w.p1)})); res.Code != CodeOK {
		t.Errorf("unjail at 109: code %d %s", res.Code, res.Log)
	}
	if a := w.account(addr(w.p1)); a.Jailed {
		t.Error("still jailed")
	}
}

// TestConvictionForfeitsEscrowAndVesting: a conviction while earnings are
// in escrow and rewards still vest burns both; what had vested is paid.
func TestConvictionForfeitsEscrowAndVesting(t *testing.T) {
	p := rewardParams()
	p.EscrowBlocks = 1_000
	w := newRewardWorld(t, p)
	w.serve(job{prov: w.p1, completion: 100})
	w.skipTo(10) // epoch 1: p1's reward vests from 10 to 30
	for i := range 3 {
		w.verdict(w.ver1, w.p1, evidence(fmt.Sprint(i)), false)
	}
	// Cases open at 11, 12, 13 and mature at 16, 17, 18.
	w.skipTo(17)
	before := w.account(addr(w.p1))
	run := w.block()
	conv := hasEvent(run.begin, "convicted")
	if conv == nil {
		t.Fatalf("no conviction: %+v", run.begin)
	}
	a := w.account(addr(w.p1))
	vested := Vest{Amount: 700_000, Start: 10, End: 30}.VestedAt(18)
	escrow := before.Escrow[0].Amount
	want := before.Stake/2 + escrow + 700_000 - vested
	if got := money.Amount(mustUint(t, attr(*conv, "burned"))); got != want {
		t.Errorf("burned %d, want half the stake + escrow %d + unvested %d = %d", got, escrow, 700_000-vested, want)
	}
	if len(a.Escrow) != 0 || len(a.Vesting) != 0 || a.Balance != before.Balance+vested {
		t.Errorf("after: %+v (vested %d)", a, vested)
	}
	w.checkSupply(w.supply().Total)
}

// TestConvictionWindow: failures further apart than the window do not add
// up to a conviction.
func TestConvictionWindow(t *testing.T) {
	p := rewardParams()
	p.ConvictWindowBlocks = 4
	w := newRewardWorld(t, p)
	for i := range 3 {
		w.verdict(w.ver1, w.p1, evidence(fmt.Sprint(i)), false)
		w.skipTo(w.height + 4)
	}
	w.skipTo(30)
	if a, r := w.account(addr(w.p1)), w.record(w.p1); a.Jailed || r.Failures != 3 || len(r.Recent) > 1 {
		t.Errorf("account %+v, record %+v", a, r)
	}
}

// TestVerifierMajority: with a quorum of two, a split case acquits and the
// verifier in the minority loses VerifierSlashBps of its stake; verifiers
// who agree lose nothing.
func TestVerifierMajority(t *testing.T) {
	p := rewardParams()
	p.VerdictQuorum = 2
	w := newRewardWorld(t, p)
	if res := w.verdict(w.ver1, w.p1, evidence("a"), false); res.Code != CodeOK || hasEvent(res.Events, "case_decided") != nil {
		t.Fatalf("first verdict: %+v", res)
	}
	res := w.verdict(w.ver2, w.p1, evidence("a"), true)
	dec := hasEvent(res.Events, "case_decided")
	sl := hasEvent(res.Events, "verifier_slashed")
	if dec == nil || attr(*dec, "pass") != "true" || sl == nil || attr(*sl, "verifier") != string(addr(w.ver1)) || attr(*sl, "amount") != "500" {
		t.Fatalf("split case: %+v", res.Events)
	}
	if a := w.account(addr(w.ver1)); a.Stake != 4_500 {
		t.Errorf("lying verifier's stake %d, want 4500", a.Stake)
	}
	// Two verifiers agreeing: nobody is slashed, and the case fails.
	w.verdict(w.ver1, w.p2, evidence("b"), false)
	res = w.verdict(w.ver2, w.p2, evidence("b"), false)
	if dec := hasEvent(res.Events, "case_decided"); dec == nil || attr(*dec, "pass") != "false" || hasEvent(res.Events, "verifier_slashed") != nil {
		t.Errorf("unanimous case: %+v", res.Events)
	}
	if a := w.account(addr(w.ver2)); a.Stake != 15_000 {
		t.Errorf("honest verifier's stake %d", a.Stake)
	}
	w.checkSupply(w.supply().Total)
}

// TestPlantedSamples: a gateway commits to a sample's right verdict before
// verifiers see it; at the reveal, verifiers who misjudged it are slashed
// and the case never counts against its provider. Reveals that do not
// match the commitment, come from another gateway or were committed after
// the case opened are refused.
func TestPlantedSamples(t *testing.T) {
	w := newRewardWorld(t, rewardParams())
	salt := receipt.Sum([]byte("salt"))
	ev := evidence("planted")
	commit := PlantCommitment(ev, true, salt)
	if res := w.apply(signTx(w.gw, Tx{Kind: KindPlant, Nonce: w.next(w.gw), Evidence: commit})); res.Code != CodeOK {
		t.Fatalf("plant: %d %s", res.Code, res.Log)
	}
	if res := w.apply(signTx(w.alice, Tx{Kind: KindPlant, Evidence: receipt.Sum([]byte("x"))})); res.Code == CodeOK {
		t.Error("a non-gateway planted")
	}
	if res := w.verdict(w.ver1, w.p2, ev, false); res.Code != CodeOK { // wrong: the sample is good
		t.Fatalf("verdict: %+v", res)
	}
	reveal := func(k keys.PrivateKey, pass bool, salt receipt.Hash) Result {
		return w.apply(signTx(k, Tx{Kind: KindReveal, Nonce: w.next(k), Evidence: ev, Pass: pass, Salt: salt}))
	}
	if res := reveal(w.gw, false, salt); res.Code != CodeInvalid {
		t.Errorf("reveal with another verdict: %d %s", res.Code, res.Log)
	}
	if res := reveal(w.gw, true, receipt.Sum([]byte("other salt"))); res.Code != CodeInvalid {
		t.Errorf("reveal with another salt: %d %s", res.Code, res.Log)
	}
	res := reveal(w.gw, true, salt)
	if sl := hasEvent(res.Events, "verifier_slashed"); res.Code != CodeOK || sl == nil || attr(*sl, "verifier") != string(addr(w.ver1)) {
		t.Fatalf("reveal: %d %s %+v", res.Code, res.Log, res.Events)
	}
	if a := w.account(addr(w.ver1)); a.Stake != 4_500 {
		t.Errorf("verifier stake %d after misjudging a planted sample", a.Stake)
	}
	if res := w.verdict(w.ver2, w.p2, ev, true); res.Code != CodeInvalid {
		t.Errorf("verdict on a revealed case: %d", res.Code)
	}
	w.skipTo(20)
	if r := w.record(w.p2); r.Audits != 0 {
		t.Errorf("a planted case counted for the provider: %+v", r)
	}
	// Committed after the case opened: refused (the gateway could choose
	// the verdict that punishes the verifiers).
	late := evidence("late")
	w.verdict(w.ver1, w.p2, late, true)
	w.apply(signTx(w.gw, Tx{Kind: KindPlant, Nonce: w.next(w.gw), Evidence: PlantCommitment(late, false, salt)}))
	if res := w.apply(signTx(w.gw, Tx{Kind: KindReveal, Nonce: w.next(w.gw), Evidence: late, Pass: false, Salt: salt})); res.Code != CodeInvalid {
		t.Errorf("late commitment: %d %s", res.Code, res.Log)
	}
	w.checkSupply(w.supply().Total)
}

// TestBadVerdicts: verdicts from non-verifiers, about non-providers,
// without a digest, twice by the same verifier, on a decided case, or
// naming another provider than the case are refused.
func TestBadVerdicts(t *testing.T) {
	p := rewardParams()
	p.VerdictQuorum = 2
	w := newRewardWorld(t, p)
	cases := []struct {
		name string
		tx   func() []byte
		code uint32
	}{
		{"not a verifier", func() []byte { return w.verdictTx(w.alice, w.p1, evidence("x"), false) }, CodeNotRegistered},
		{"about a non-provider", func() []byte { return w.verdictTx(w.ver1, w.alice, evidence("x"), false) }, CodeInvalid},
		{"no digest", func() []byte {
			return signTx(w.ver1, Tx{Kind: KindVerdict, Nonce: w.next(w.ver1), Subject: addr(w.p1), Evidence: evidence("x")})
		}, CodeInvalid},
	}
	for _, tc := range cases {
		if res := w.apply(tc.tx()); res.Code != tc.code {
			t.Errorf("%s: code %d (%s), want %d", tc.name, res.Code, res.Log, tc.code)
		}
	}
	if res := w.verdict(w.ver1, w.p1, evidence("c"), false); res.Code != CodeOK {
		t.Fatal(res.Log)
	}
	if res := w.verdict(w.ver1, w.p1, evidence("c"), true); res.Code != CodeInvalid {
		t.Errorf("second verdict by the same verifier: %d", res.Code)
	}
	if res := w.verdict(w.ver2, w.p2, evidence("c"), false); res.Code != CodeInvalid {
		t.Errorf("verdict naming another provider: %d", res.Code)
	}
	w.verdict(w.ver2, w.p1, evidence("c"), false)
	ver3 := testKey(t, "ver3")
	w.putAccount(addr(ver3), Account{PubKey: ver3.Public(), Stake: 5_000, Roles: RoleVerifier})
	if res := w.verdict(ver3, w.p1, evidence("c"), false); res.Code != CodeInvalid || !strings.Contains(res.Log, "decided") {
		t.Errorf("verdict on a decided case: %d %s", res.Code, res.Log)
	}
}

// TestReputationWeighsRewards: a provider that failed one of its two
// audits has reputation 500 (one pass assumed) and earns half per work unit
// of one that passed.
func TestReputationWeighsRewards(t *testing.T) {
	w := newRewardWorld(t, rewardParams())
	w.verdict(w.ver1, w.p1, evidence("p1"), false)
	w.verdict(w.ver1, w.p2, evidence("p2"), true)
	w.serve(job{prov: w.p1, completion: 10}, job{prov: w.p2, completion: 10})
	w.skipTo(10)
	if r1, r2 := w.record(w.p1), w.record(w.p2); r1.Reputation() != 500 || r2.Reputation() != 1_000 {
		t.Fatalf("reputations %d, %d", r1.Reputation(), r2.Reputation())
	}
	got := w.payouts(1)
	if got[addr(w.p1)] != 233_333 || got[addr(w.p2)] != 466_667 {
		t.Errorf("payouts %v", got)
	}
}

// TestAllowedDigests: a receipt for a model with an allowed-digest list
// settles only with one of those digests.
func TestAllowedDigests(t *testing.T) {
	p := rewardParams()
	p.AllowedDigests = []ModelDigests{{Model: "llama3.2:1b", Digests: []string{"sha256:other"}}}
	w := newRewardWorld(t, p)
	rs := []BatchReceipt{
		batchReceipt(t, w.gw, w.p1, addr(w.alice), "d1", 1, 1),
		batchReceipt(t, w.gw, w.p1, addr(w.alice), "d2", 1, 1, func(r *receipt.Receipt) { r.ModelDigest = "sha256:other" }),
		batchReceipt(t, w.gw, w.p1, addr(w.alice), "d3", 1, 1, func(r *receipt.Receipt) { r.Model = "unlisted" }),
	}
	res := w.apply(settleTx(w.gw, w.next(w.gw), rs...))
	if res.Code != CodeOK || attr(res.Events[0], "accepted") != "2" || !strings.Contains(attr(res.Events[1], "reason"), "not allowed") || attr(res.Events[1], "index") != "0" {
		t.Errorf("events %+v", res.Events)
	}
	if !p.DigestAllowed("unlisted", "x") || p.DigestAllowed("llama3.2:1b", testDigest) {
		t.Error("DigestAllowed")
	}
}
