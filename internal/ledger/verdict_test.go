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

// evidence names the case about a free receipt of prov (label tells
// cases apart); the receipt is settled in the block of the verdict that
// opens the case, so heights stay those of the verdicts.
func (w *rewardWorld) evidence(prov keys.PrivateKey, label string) receipt.Hash {
	br := batchReceipt(w.tb, w.gw, prov, addr(w.alice), "case-"+label+"-"+string(addr(prov))[:8], 0, 0)
	ev := CaseEvidence([]BatchReceipt{br}, false)
	if w.cases == nil {
		w.cases = map[receipt.Hash]BatchReceipt{}
	}
	w.cases[ev] = br
	return ev
}

// opening is the receipt a verdict on ev must carry: the one ev names
// when its case is not open yet.
func (w *rewardWorld) opening(ev receipt.Hash) []BatchReceipt {
	br, ok := w.cases[ev]
	if _, open, _ := w.view().Case(ev); !ok || open {
		return nil
	}
	return []BatchReceipt{br}
}

func (w *rewardWorld) verdictTx(v keys.PrivateKey, prov keys.PrivateKey, ev receipt.Hash, pass bool) []byte {
	return signTx(v, Tx{Kind: KindVerdict, Nonce: w.next(v), Subject: addr(prov), Digest: testDigest, Evidence: ev, Pass: pass, CaseReceipts: w.opening(ev)})
}

// verdict posts a verdict; one that opens a case runs in a block after the
// settlement of the receipt it names.
func (w *rewardWorld) verdict(v, prov keys.PrivateKey, ev receipt.Hash, pass bool) Result {
	w.tb.Helper()
	rs := w.opening(ev)
	if rs == nil {
		return w.apply(w.verdictTx(v, prov, ev, pass))
	}
	r, err := receipt.Decode(rs[0].Bytes)
	if err != nil {
		w.tb.Fatal(err)
	}
	if _, settled, _ := w.view().Settlement(r.Gateway.Address(), r.RequestID); settled {
		return w.apply(w.verdictTx(v, prov, ev, pass))
	}
	return w.block(settleTx(w.gw, w.next(w.gw), rs...), w.verdictTx(v, prov, ev, pass)).results[1]
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
	var evs []receipt.Hash
	for i, h := range []uint64{2, 3, 4} {
		evs = append(evs, w.evidence(w.p1, fmt.Sprint(i)))
		// ver2 holds 75 % of the verifier stake: its verdict decides.
		if res := w.verdict(w.ver2, w.p1, evs[i], false); res.Code != CodeOK || hasEvent(res.Events, "case_opened") == nil || hasEvent(res.Events, "case_decided") != nil {
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
		len(r.Last) != 3 || r.Last[2] != (CaseOutcome{Evidence: evs[2], Pass: false, Height: 9}) {
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
		w.verdict(w.ver2, w.p1, w.evidence(w.p1, fmt.Sprint(i)), false)
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
		w.verdict(w.ver2, w.p1, w.evidence(w.p1, fmt.Sprint(i)), false)
		w.skipTo(w.height + 4)
	}
	w.skipTo(30)
	if a, r := w.account(addr(w.p1)), w.record(w.p1); a.Jailed || r.Failures != 3 || len(r.Recent) > 1 {
		t.Errorf("account %+v, record %+v", a, r)
	}
}

// TestVerifierMajority: cases are decided at maturity by stake. ver1
// holds 25 % of the verifier stake and ver2 75 %: a split case goes
// ver2's way and ver1 loses VerifierSlashBps; ver1 alone is short of
// verdict_fail_stake_bps and decides nothing; verifiers who agree lose
// nothing.
func TestVerifierMajority(t *testing.T) {
	w := newRewardWorld(t, rewardParams())
	a := w.evidence(w.p1, "a")
	if res := w.verdict(w.ver1, w.p1, a, false); res.Code != CodeOK || hasEvent(res.Events, "case_decided") != nil {
		t.Fatalf("first verdict: %+v", res)
	}
	if res := w.verdict(w.ver2, w.p1, a, true); res.Code != CodeOK || hasEvent(res.Events, "case_decided") != nil {
		t.Fatalf("second verdict decided early: %+v", res)
	}
	b := w.evidence(w.p2, "b")
	w.verdict(w.ver1, w.p2, b, false)
	w.verdict(w.ver2, w.p2, b, false)
	lone := w.evidence(w.p2, "lone")
	w.verdict(w.ver1, w.p2, lone, false)
	opened := w.height
	var begin []Event
	for w.height < opened+5 {
		begin = append(begin, w.block().begin...)
	}
	outcomes := map[string]string{}
	for _, e := range begin {
		if e.Type == "case_decided" {
			outcomes[attr(e, "evidence")] = attr(e, "outcome")
		}
	}
	if outcomes[a.String()] != "pass" || outcomes[b.String()] != "fail" || outcomes[lone.String()] != "undecided" {
		t.Errorf("outcomes %v", outcomes)
	}
	if a := w.account(addr(w.ver1)); a.Stake != 4_500 {
		t.Errorf("outvoted verifier's stake %d, want 4500", a.Stake)
	}
	if a := w.account(addr(w.ver2)); a.Stake != 15_000 {
		t.Errorf("honest verifier's stake %d", a.Stake)
	}
	if r := w.record(w.p2); r.Audits != 1 || r.Failures != 1 || r.Open != 0 {
		t.Errorf("p2's record %+v: the undecided case must not count", r)
	}
	w.checkSupply(w.supply().Total)
}

// TestPlantedSamples: a gateway commits to a sample's right verdict before
// verifiers see it; its reveal takes effect at maturity: verifiers who
// misjudged it are slashed and the case never counts against its
// provider. Reveals that do not match the commitment or were committed
// after the case opened are refused; revealing both verdicts of one
// evidence hash, or none, burns plant_forfeit_bps of the gateway's stake.
func TestPlantedSamples(t *testing.T) {
	w := newRewardWorld(t, rewardParams())
	salt := receipt.Sum([]byte("salt"))
	ev := w.evidence(w.p2, "planted")
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
	opened := w.height
	reveal := func(k keys.PrivateKey, ev receipt.Hash, pass bool, salt receipt.Hash) Result {
		return w.apply(signTx(k, Tx{Kind: KindReveal, Nonce: w.next(k), Evidence: ev, Pass: pass, Salt: salt}))
	}
	if res := reveal(w.gw, ev, false, salt); res.Code != CodeInvalid {
		t.Errorf("reveal with another verdict: %d %s", res.Code, res.Log)
	}
	if res := reveal(w.gw, ev, true, receipt.Sum([]byte("other salt"))); res.Code != CodeInvalid {
		t.Errorf("reveal with another salt: %d %s", res.Code, res.Log)
	}
	if res := reveal(w.gw, ev, true, salt); res.Code != CodeOK || hasEvent(res.Events, "verifier_slashed") != nil {
		t.Fatalf("reveal: %d %s %+v", res.Code, res.Log, res.Events)
	}
	if res := w.verdict(w.ver2, w.p2, ev, true); res.Code != CodeInvalid {
		t.Errorf("verdict on a revealed case: %d", res.Code)
	}
	w.skipTo(opened + 5)
	if a := w.account(addr(w.ver1)); a.Stake != 4_500 {
		t.Errorf("verifier stake %d after misjudging a planted sample", a.Stake)
	}
	if r := w.record(w.p2); r.Audits != 0 {
		t.Errorf("a planted case counted for the provider: %+v", r)
	}
	// Committed after the case opened: refused (the gateway could choose
	// the verdict that punishes the verifiers).
	late := w.evidence(w.p2, "late")
	w.verdict(w.ver1, w.p2, late, true)
	w.apply(signTx(w.gw, Tx{Kind: KindPlant, Nonce: w.next(w.gw), Evidence: PlantCommitment(late, false, salt)}))
	if res := reveal(w.gw, late, false, salt); res.Code != CodeInvalid {
		t.Errorf("late commitment: %d %s", res.Code, res.Log)
	}
	// Both verdicts committed for one sample: the second reveal burns.
	both := w.evidence(w.p2, "both")
	w.apply(signTx(w.gw, Tx{Kind: KindPlant, Nonce: w.next(w.gw), Evidence: PlantCommitment(both, true, salt)}))
	w.apply(signTx(w.gw, Tx{Kind: KindPlant, Nonce: w.next(w.gw), Evidence: PlantCommitment(both, false, salt)}))
	stake := w.account(addr(w.gw)).Stake
	if res := reveal(w.gw, both, true, salt); res.Code != CodeOK {
		t.Fatalf("first reveal: %d %s", res.Code, res.Log)
	}
	if res := reveal(w.gw, both, false, salt); res.Code != CodeOK || hasEvent(res.Events, "plant_equivocated") == nil {
		t.Fatalf("second reveal: %d %s %+v", res.Code, res.Log, res.Events)
	}
	if got := w.account(addr(w.gw)).Stake; got != stake-stake/10 {
		t.Errorf("equivocating gateway's stake %d, want %d", got, stake-stake/10)
	}
	// The late commitment is never revealed: it forfeits when due.
	stake = w.account(addr(w.gw)).Stake
	w.skipTo(w.height + 50)
	if got := w.account(addr(w.gw)).Stake; got != stake-stake/10 {
		t.Errorf("gateway's stake %d after an unrevealed commitment, want %d", got, stake-stake/10)
	}
	w.checkSupply(w.supply().Total)
}

// TestBadVerdicts: verdicts from non-verifiers, about non-providers,
// without a digest, about unsettled or made-up evidence, twice by the same
// verifier, by the case's own provider, on a closed case, or naming
// another provider than the case are refused.
func TestBadVerdicts(t *testing.T) {
	w := newRewardWorld(t, rewardParams())
	x := w.evidence(w.p1, "x")
	made := receipt.Sum([]byte("made up"))
	cases := []struct {
		name string
		tx   func() []byte
		code uint32
	}{
		{"not a verifier", func() []byte { return w.verdictTx(w.alice, w.p1, x, false) }, CodeNotRegistered},
		{"about a non-provider", func() []byte { return w.verdictTx(w.ver1, w.alice, x, false) }, CodeInvalid},
		{"no digest", func() []byte {
			return signTx(w.ver1, Tx{Kind: KindVerdict, Nonce: w.next(w.ver1), Subject: addr(w.p1), Evidence: x, CaseReceipts: w.opening(x)})
		}, CodeInvalid},
		{"unsettled receipt", func() []byte { return w.verdictTx(w.ver1, w.p1, x, false) }, CodeInvalid},
		{"made-up evidence", func() []byte { return w.verdictTx(w.ver1, w.p1, made, false) }, CodeInvalid},
		{"evidence of another receipt", func() []byte {
			return signTx(w.ver1, Tx{Kind: KindVerdict, Nonce: w.next(w.ver1), Subject: addr(w.p1), Digest: testDigest, Evidence: made, CaseReceipts: w.opening(x)})
		}, CodeInvalid},
	}
	for _, tc := range cases {
		if res := w.apply(tc.tx()); res.Code != tc.code {
			t.Errorf("%s: code %d (%s), want %d", tc.name, res.Code, res.Log, tc.code)
		}
	}
	c := w.evidence(w.p1, "c")
	if res := w.verdict(w.ver1, w.p1, c, false); res.Code != CodeOK {
		t.Fatal(res.Log)
	}
	if res := w.verdict(w.ver1, w.p1, c, true); res.Code != CodeInvalid {
		t.Errorf("second verdict by the same verifier: %d", res.Code)
	}
	if res := w.verdict(w.ver2, w.p2, c, false); res.Code != CodeInvalid {
		t.Errorf("verdict naming another provider: %d", res.Code)
	}
	// The provider, registered as a verifier too, cannot judge itself.
	p1 := w.account(addr(w.p1))
	p1.Roles |= RoleVerifier
	p1.Stake = 100_000
	w.putAccount(addr(w.p1), p1)
	if res := w.verdict(w.p1, w.p1, c, true); res.Code != CodeInvalid || !strings.Contains(res.Log, "provider of case") {
		t.Errorf("the provider judging itself: %d %s", res.Code, res.Log)
	}
	w.verdict(w.ver2, w.p1, c, false)
	w.skipTo(w.height + 5)
	ver3 := testKey(t, "ver3")
	w.putAccount(addr(ver3), Account{PubKey: ver3.Public(), Stake: 5_000, Roles: RoleVerifier})
	if res := w.verdict(ver3, w.p1, c, false); res.Code != CodeInvalid || !strings.Contains(res.Log, "closed") {
		t.Errorf("verdict on a matured case: %d %s", res.Code, res.Log)
	}
}

// TestReputationWeighsRewards: a provider that failed one of its two
// audits has reputation 500 (one pass assumed) and earns half per work unit
// of one that passed.
func TestReputationWeighsRewards(t *testing.T) {
	w := newRewardWorld(t, rewardParams())
	w.verdict(w.ver2, w.p1, w.evidence(w.p1, "p1"), false)
	w.verdict(w.ver2, w.p2, w.evidence(w.p2, "p2"), true)
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

// TestCanaryCase: a canary batch opens its case with the settled receipts
// and their texts, which must hash to what the provider signed; the case
// is listed as open, its texts are readable by other verifiers until it
// matures, and then dropped.
func TestCanaryCase(t *testing.T) {
	w := newRewardWorld(t, rewardParams())
	var rs []BatchReceipt
	var texts []CaseText
	for i := range 2 {
		body, text := fmt.Sprintf(`{"model":"m","prompt":"canary %d"}`, i), fmt.Sprintf("answer %d", i)
		rs = append(rs, batchReceipt(t, w.gw, w.p1, addr(w.alice), fmt.Sprint("canary-", i), 0, 0, func(r *receipt.Receipt) {
			r.RequestHash, r.ResponseHash = receipt.Sum([]byte(body)), receipt.Sum([]byte(text))
		}))
		texts = append(texts, CaseText{Request: []byte(body), Response: text})
	}
	w.apply(settleTx(w.gw, w.next(w.gw), rs...))
	ev := CaseEvidence(rs, true)
	open := func(texts []CaseText) Result {
		return w.apply(signTx(w.ver1, Tx{Kind: KindVerdict, Nonce: w.next(w.ver1), Subject: addr(w.p1), Digest: testDigest, Evidence: ev,
			CaseReceipts: rs, CaseTexts: texts}))
	}
	bad := []CaseText{texts[0], {Request: texts[1].Request, Response: "another answer"}}
	if res := open(bad); res.Code != CodeInvalid || !strings.Contains(res.Log, "text 1") {
		t.Errorf("texts the receipts do not sign: %d %s", res.Code, res.Log)
	}
	if res := open(texts[:1]); res.Code != CodeInvalid {
		t.Errorf("texts for one of two receipts: %d %s", res.Code, res.Log)
	}
	if res := open(texts); res.Code != CodeOK || hasEvent(res.Events, "case_opened") == nil {
		t.Fatalf("canary case: %d %s", res.Code, res.Log)
	}
	opened := w.height
	if evs, err := w.view().OpenCases(w.height); err != nil || len(evs) != 1 || evs[0] != ev {
		t.Errorf("open cases %v %v", evs, err)
	}
	if o, ok, err := w.view().CaseOpening(ev); err != nil || !ok || len(o.Receipts) != 2 || o.Texts[1].Response != "answer 1" {
		t.Errorf("opening %+v %v %v", o, ok, err)
	}
	w.verdict(w.ver2, w.p1, ev, false)
	w.skipTo(opened + 5)
	if _, ok, _ := w.view().CaseOpening(ev); ok {
		t.Error("the texts of a matured case are still kept")
	}
	if c, _, _ := w.view().Case(ev); !c.Canary || c.State != CaseFailed {
		t.Errorf("case %+v", c)
	}
}

// TestPlantRetired: a plant whose case matured before the reveal, or that
// no verifier judged, is retired by its reveal and costs the gateway
// nothing; parameters in which a case could outlive the unbonding period
// or the reveal window are refused.
func TestPlantRetired(t *testing.T) {
	w := newRewardWorld(t, rewardParams())
	salt := receipt.Sum([]byte("salt"))
	judged, unjudged := w.evidence(w.p2, "judged"), w.evidence(w.p2, "unjudged")
	for _, ev := range []receipt.Hash{judged, unjudged} {
		w.apply(signTx(w.gw, Tx{Kind: KindPlant, Nonce: w.next(w.gw), Evidence: PlantCommitment(ev, true, salt)}))
	}
	w.verdict(w.ver2, w.p2, judged, true)
	w.skipTo(w.height + 6) // matured
	stake := w.account(addr(w.gw)).Stake
	for _, ev := range []receipt.Hash{judged, unjudged} {
		if res := w.apply(signTx(w.gw, Tx{Kind: KindReveal, Nonce: w.next(w.gw), Evidence: ev, Pass: true, Salt: salt})); res.Code != CodeOK || attr(res.Events[0], "case") != "false" {
			t.Errorf("retiring reveal: %d %s %+v", res.Code, res.Log, res.Events)
		}
	}
	w.skipTo(w.height + 50)
	if got := w.account(addr(w.gw)).Stake; got != stake {
		t.Errorf("gateway stake %d after retiring its plants, was %d", got, stake)
	}
	if c, _, _ := w.view().Case(judged); c.Planted || c.State != CasePassed {
		t.Errorf("a retiring reveal changed a matured case: %+v", c)
	}
	if res := w.verdict(w.ver1, w.p2, unjudged, false); res.Code != CodeInvalid {
		t.Errorf("a case on revealed evidence: %d %s", res.Code, res.Log)
	}
	for _, edit := range []func(*Params){
		func(p *Params) { p.UnbondingBlocks = p.VerdictDelayBlocks },
		func(p *Params) { p.PlantRevealBlocks = p.VerdictDelayBlocks },
		func(p *Params) { p.VerdictFailStakeBps = 0 },
		func(p *Params) { p.PlantForfeitBps = 10_001 },
	} {
		p := testParams()
		edit(&p)
		if err := p.Validate(); err == nil {
			t.Errorf("params accepted: %+v", p)
		}
	}
}
