package ledger

import (
	"crypto/sha256"
	"fmt"
	"math/bits"
	"slices"
	"strings"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// Verification state keys.
const (
	prefixCase      = "v/" // + evidence hash (32 bytes) → Case
	prefixMaturing  = "m/" // + height (8 bytes) → evidence hashes whose cases mature then
	prefixPlant     = "c/" // + commitment (32 bytes) → gateway address and height
	prefixPlantDue  = "k/" // + height (8 bytes) → commitments whose reveal is due then
	prefixRevealed  = "h/" // + evidence hash (32 bytes) → the gateway that revealed it as planted, and the verdict
	prefixOpening   = "o/" // + evidence hash (32 bytes) → an open canary case's receipts and texts, until it matures
	prefixProviderQ = "q/" // + address → ProviderRecord
)

// ReasonNotSettled is in the log of a verdict refused because a receipt
// it names is not settled (yet): a verifier waits and posts again.
const ReasonNotSettled = "is not settled on this ledger"

// Limits of the verification records.
const (
	maxVotes          = 256
	maxRecentFailures = 64
	maxLastCases      = 8
	maxPassedDigests  = 16
)

// Case states.
const (
	CaseOpen   uint8 = 0 // collecting verdicts, or matured undecided
	CasePassed uint8 = 1 // decided: the provider served what it claimed
	CaseFailed uint8 = 2 // decided: it did not
)

// Vote is one verifier's verdict in a case. Stake is the weight it had
// when the case matured (0 before, and for a voter no longer eligible).
type Vote struct {
	Verifier keys.Address `json:"verifier"`
	Pass     bool         `json:"pass"`
	Stake    money.Amount `json:"stake"`
}

// Case is what verifiers said about settled receipts of one provider: a
// canary batch (Canary: its receipts and texts are kept until it matures,
// CaseOpening) or one sampled receipt of real traffic. Its id, the evidence hash, is
// CaseEvidence of those receipts. Every eligible verifier may vote until
// it matures VerdictDelayBlocks after it opened; then it is decided by
// stake (see matureCases) and counts for or against its provider, unless
// its gateway revealed it as a planted test of the verifiers.
type Case struct {
	Provider keys.Address `json:"provider"`
	Digest   string       `json:"digest"`
	Opened   uint64       `json:"opened_height"`
	Canary   bool         `json:"canary"`
	// Gateway countersigned the case's receipts: it may not vote, and
	// only it may reveal the case as planted.
	Gateway keys.Address `json:"gateway"`
	// Total is the stake of the verifiers eligible to vote when the case
	// opened, raised at maturity to the eligible stake then if that is
	// larger; PassStake and FailStake are the votes' weights at maturity.
	Total     money.Amount `json:"eligible_stake"`
	PassStake money.Amount `json:"pass_stake"`
	FailStake money.Amount `json:"fail_stake"`
	Votes     []Vote       `json:"votes"`
	State     uint8        `json:"state"`
	// Planted: the gateway revealed the case as a planted sample whose
	// right verdict is PlantPass. Equivocated: it revealed two verdicts
	// for it; the case is void.
	Planted     bool `json:"planted"`
	PlantPass   bool `json:"plant_pass"`
	Equivocated bool `json:"equivocated"`
	// Matured: the case has counted (or, planted or undecided, was
	// closed); later verdicts are refused.
	Matured bool `json:"matured"`
}

func (c *Case) encode() []byte {
	e := enc{}
	e.address(c.Provider)
	e.str(c.Digest)
	e.u64(c.Opened)
	e.boolean(c.Canary)
	e.address(c.Gateway)
	e.amount(c.Total)
	e.amount(c.PassStake)
	e.amount(c.FailStake)
	e.u32(uint32(len(c.Votes)))
	for _, v := range c.Votes {
		e.address(v.Verifier)
		e.boolean(v.Pass)
		e.amount(v.Stake)
	}
	e.u8(c.State)
	e.boolean(c.Planted)
	e.boolean(c.PlantPass)
	e.boolean(c.Equivocated)
	e.boolean(c.Matured)
	return e.b
}

func decodeCase(b []byte) (Case, error) {
	d := dec{b: b}
	c := Case{Provider: d.address(), Digest: d.str(receipt.MaxDigest, "digest"), Opened: d.u64(), Canary: d.boolean(),
		Gateway: d.address(), Total: d.amount(), PassStake: d.amount(), FailStake: d.amount()}
	n := d.length(maxVotes, "votes")
	for range n {
		c.Votes = append(c.Votes, Vote{Verifier: d.address(), Pass: d.boolean(), Stake: d.amount()})
	}
	c.State, c.Planted, c.PlantPass, c.Equivocated, c.Matured = d.u8(), d.boolean(), d.boolean(), d.boolean(), d.boolean()
	if d.err == nil && c.State > CaseFailed {
		d.fail("case state %d", c.State)
	}
	return c, d.end()
}

// CaseEvidence is the id of the case about receipts rs: for a canary
// batch (canary), the hash of its receipts' hashes; for one sampled
// receipt, the hash every verifier of the sample feed computes for it
// (samplefeed.Evidence).
func CaseEvidence(rs []BatchReceipt, canary bool) receipt.Hash {
	if !canary && len(rs) == 1 {
		h := receipt.Sum(rs[0].Bytes)
		return sha256.Sum256(append([]byte("idlegrid/sample/v1\n"), h[:]...))
	}
	b := []byte("idlegrid/canary/v1\n")
	for _, r := range rs {
		h := receipt.Sum(r.Bytes)
		b = append(b, h[:]...)
	}
	return sha256.Sum256(b)
}

// ProviderRecord is a provider's verification history.
type ProviderRecord struct {
	// Audits and Failures count the matured cases about the provider.
	Audits   uint64 `json:"audits"`
	Failures uint64 `json:"failures"`
	// Recent are the maturity heights of its failed cases still inside the
	// conviction window, oldest first.
	Recent      []uint64 `json:"recent_failures"`
	Convictions uint32   `json:"convictions"`
	// JailedAt is the height of the last conviction (0: never).
	JailedAt uint64 `json:"jailed_at"`
	// Last are its latest matured cases, oldest first (at most maxLastCases).
	Last []CaseOutcome `json:"last_cases,omitempty"`
	// Open counts the cases about the provider that have not matured.
	Open uint32 `json:"open_cases"`
	// Passed counts its passed cases per model digest, sorted by digest,
	// for at most maxPassedDigests digests: a gateway's probation per
	// (provider, digest) reads it (see countPass).
	Passed PassedDigests `json:"passed_digests,omitempty"`
}

// DigestPasses is how many cases a provider passed serving one digest.
type DigestPasses struct {
	Digest string `json:"digest"`
	Passes uint64 `json:"passes"`
	// Height is when the last of them matured.
	Height uint64 `json:"height"`
}

// PassedDigests are a provider's passes per digest, sorted by digest.
type PassedDigests []DigestPasses

// Passes is how many cases were passed serving digest (0 for a digest
// not held).
func (ps PassedDigests) Passes(digest string) uint64 {
	if i, ok := slices.BinarySearchFunc(ps, digest, byDigest); ok {
		return ps[i].Passes
	}
	return 0
}

func byDigest(p DigestPasses, digest string) int { return strings.Compare(p.Digest, digest) }

// countPass adds a case passed serving digest at height. A digest new to a
// full record takes the place of the one whose last pass is oldest (ties:
// the smallest digest): a provider that cycles through more digests than
// the record holds goes back through probation for the ones evicted.
func (r *ProviderRecord) countPass(digest string, height uint64) {
	if digest == "" {
		return
	}
	if i, ok := slices.BinarySearchFunc(r.Passed, digest, byDigest); ok {
		r.Passed[i].Passes = satAdd(r.Passed[i].Passes, 1)
		r.Passed[i].Height = height
		return
	}
	if len(r.Passed) >= maxPassedDigests {
		oldest := 0
		for i, p := range r.Passed {
			if p.Height < r.Passed[oldest].Height {
				oldest = i // on a tie the earlier, smaller digest stays chosen
			}
		}
		r.Passed = slices.Delete(r.Passed, oldest, oldest+1)
	}
	i, _ := slices.BinarySearchFunc(r.Passed, digest, byDigest)
	r.Passed = slices.Insert(r.Passed, i, DigestPasses{Digest: digest, Passes: 1, Height: height})
}

// CaseOutcome is how one matured case ended for its provider.
type CaseOutcome struct {
	Evidence receipt.Hash `json:"evidence"`
	Pass     bool         `json:"pass"`
	Height   uint64       `json:"height"`
}

// Reputation is the provider's reputation factor in thousandths: the
// share of its audits it passed, with one passed audit assumed (a new
// provider starts at 1000).
func (r *ProviderRecord) Reputation() uint64 {
	if r.Failures > r.Audits {
		return 0
	}
	n, _ := money.Amount(1_000).MulDiv(r.Audits-r.Failures+1, satAdd(r.Audits, 1)) // ≤ 1000
	return uint64(n)
}

func (r *ProviderRecord) encode() []byte {
	e := enc{}
	e.u64(r.Audits)
	e.u64(r.Failures)
	e.u32(uint32(len(r.Recent)))
	for _, h := range r.Recent {
		e.u64(h)
	}
	e.u32(r.Convictions)
	e.u64(r.JailedAt)
	e.u32(uint32(len(r.Last)))
	for _, c := range r.Last {
		e.fixed(c.Evidence[:])
		e.boolean(c.Pass)
		e.u64(c.Height)
	}
	e.u32(r.Open)
	e.u32(uint32(len(r.Passed)))
	for _, p := range r.Passed {
		e.str(p.Digest)
		e.u64(p.Passes)
		e.u64(p.Height)
	}
	return e.b
}

func decodeProviderRecord(b []byte) (ProviderRecord, error) {
	d := dec{b: b}
	r := ProviderRecord{Audits: d.u64(), Failures: d.u64()}
	n := d.length(maxRecentFailures, "recent failures")
	for range n {
		r.Recent = append(r.Recent, d.u64())
	}
	r.Convictions, r.JailedAt = d.u32(), d.u64()
	n = d.length(maxLastCases, "last cases")
	for range n {
		var c CaseOutcome
		d.fixed(c.Evidence[:])
		c.Pass, c.Height = d.boolean(), d.u64()
		r.Last = append(r.Last, c)
	}
	r.Open = d.u32()
	n = d.length(maxPassedDigests, "passed digests")
	for i := range n {
		p := DigestPasses{Digest: d.str(receipt.MaxDigest, "digest"), Passes: d.u64(), Height: d.u64()}
		if d.err == nil && (p.Digest == "" || p.Passes == 0 || i > 0 && p.Digest <= r.Passed[i-1].Digest) {
			d.fail("passed digest %d: want non-empty digests in increasing order, each with a pass", i)
		}
		r.Passed = append(r.Passed, p)
	}
	return r, d.end()
}

func caseKey(evidence receipt.Hash) string     { return prefixCase + string(evidence[:]) }
func maturingKey(height uint64) string         { return prefixMaturing + epochBytes(height) }
func plantKey(commitment receipt.Hash) string  { return prefixPlant + string(commitment[:]) }
func plantDueKey(height uint64) string         { return prefixPlantDue + epochBytes(height) }
func revealedKey(evidence receipt.Hash) string { return prefixRevealed + string(evidence[:]) }
func openingKey(evidence receipt.Hash) string  { return prefixOpening + string(evidence[:]) }
func providerRecordKey(a keys.Address) string  { return prefixProviderQ + string(a) }

// PlantCommitment is what a gateway commits to before it hands verifiers a
// planted sample whose right verdict it knows: the evidence hash, the
// verdict and a secret salt, so that verifiers cannot tell planted samples
// from real ones until the reveal.
func PlantCommitment(evidence receipt.Hash, pass bool, salt receipt.Hash) receipt.Hash {
	e := enc{b: []byte("idlegrid/plant/v1\n")}
	e.fixed(evidence[:])
	e.boolean(pass)
	e.fixed(salt[:])
	return sha256.Sum256(e.b)
}

func (b *Block) loadCase(evidence receipt.Hash) (Case, bool, error) {
	raw, err := b.get(caseKey(evidence))
	if err != nil || raw == nil {
		return Case{}, false, err
	}
	c, err := decodeCase(raw)
	if err != nil {
		return Case{}, false, fmt.Errorf("ledger: case %s: %w", evidence, err)
	}
	return c, true, nil
}

func (b *Block) providerRecord(a keys.Address) (ProviderRecord, error) {
	raw, err := b.get(providerRecordKey(a))
	if err != nil || raw == nil {
		return ProviderRecord{}, err
	}
	r, err := decodeProviderRecord(raw)
	if err != nil {
		return ProviderRecord{}, fmt.Errorf("ledger: verification record of %s: %w", a, err)
	}
	return r, nil
}

// verdict records a verifier's verdict in a case about a provider. The
// first verdict opens the case and must carry its evidence (openCase);
// nothing is decided before the case matures.
func (x *txn) verdict() (Result, error) {
	t := x.tx
	me, _, err := x.account(x.sender)
	if err != nil {
		return Result{}, err
	}
	if res, bad := x.checkRole(&me, RoleVerifier, x.params.MinVerifierStake); bad {
		return res, nil
	}
	if t.Digest == "" {
		return fail(CodeInvalid, "verdict: the model digest is missing"), nil
	}
	c, exists, err := x.loadCase(t.Evidence)
	if err != nil {
		return Result{}, err
	}
	var events []Event
	switch {
	case !exists:
		revealed, err := x.get(revealedKey(t.Evidence))
		if err != nil {
			return Result{}, err
		}
		if revealed != nil {
			return fail(CodeInvalid, fmt.Sprintf("verdict: %s was revealed as a planted sample", t.Evidence)), nil
		}
		var reason string
		if c, reason, err = x.openCase(t); err != nil {
			return Result{}, err
		} else if reason != "" {
			return fail(CodeInvalid, "verdict: "+reason), nil
		}
		if err := x.schedule(maturingKey(x.height+x.params.VerdictDelayBlocks), t.Evidence); err != nil {
			return Result{}, err
		}
		r, err := x.providerRecord(c.Provider)
		if err != nil {
			return Result{}, err
		}
		r.Open++
		x.set(providerRecordKey(c.Provider), r.encode())
		if c.Canary {
			// Kept until the case matures, so that other verifiers can
			// replay the canaries (CaseOpening).
			x.set(openingKey(t.Evidence), encodeOpening(t.CaseReceipts, t.CaseTexts))
		}
		events = append(events, Event{Type: "case_opened", Attrs: []Attr{
			{Key: "evidence", Value: t.Evidence.String(), Index: true},
			{Key: "provider", Value: string(c.Provider), Index: true},
			{Key: "canary", Value: fmt.Sprint(c.Canary)},
			{Key: "eligible_stake", Value: fmt.Sprint(uint64(c.Total))},
			{Key: "matures", Value: fmt.Sprint(x.height + x.params.VerdictDelayBlocks)},
		}})
	case c.Matured:
		return fail(CodeInvalid, fmt.Sprintf("verdict: case %s is closed", t.Evidence)), nil
	case c.Planted || c.Equivocated:
		return fail(CodeInvalid, fmt.Sprintf("verdict: case %s was revealed as a planted sample", t.Evidence)), nil
	case c.Provider != t.Subject || c.Digest != t.Digest:
		return fail(CodeInvalid, fmt.Sprintf("verdict: case %s is about %s serving %s", t.Evidence, c.Provider, c.Digest)), nil
	}
	switch x.sender {
	case c.Provider:
		return fail(CodeInvalid, fmt.Sprintf("verdict: %s is the provider of case %s and may not judge it", x.sender, t.Evidence)), nil
	case c.Gateway:
		return fail(CodeInvalid, fmt.Sprintf("verdict: %s is the gateway of case %s and may not judge it", x.sender, t.Evidence)), nil
	}
	if slices.ContainsFunc(c.Votes, func(v Vote) bool { return v.Verifier == x.sender }) {
		return fail(CodeInvalid, fmt.Sprintf("verdict: %s already judged case %s", x.sender, t.Evidence)), nil
	}
	if len(c.Votes) >= maxVotes {
		return fail(CodeInvalid, fmt.Sprintf("verdict: case %s holds the most verdicts a case can (%d)", t.Evidence, maxVotes)), nil
	}
	c.Votes = append(c.Votes, Vote{Verifier: x.sender, Pass: t.Pass})
	x.set(caseKey(t.Evidence), c.encode())
	return ok(append(events, Event{Type: "verdict", Attrs: []Attr{
		{Key: "verifier", Value: string(x.sender), Index: true},
		{Key: "provider", Value: string(t.Subject), Index: true},
		{Key: "evidence", Value: t.Evidence.String(), Index: true},
		{Key: "pass", Value: fmt.Sprint(t.Pass)},
	}})...), nil
}

// openCase checks the evidence a case-opening verdict carries and returns
// the new case, or why there is none: the receipts are well-formed, signed
// for this chain by the subject and one gateway, of the case's digest,
// settled on this ledger as exactly these bytes, and the texts of a canary
// batch are those the receipts' request and response hashes sign.
func (x *txn) openCase(t *Tx) (Case, string, error) {
	n, canary := len(t.CaseReceipts), len(t.CaseTexts) > 0
	switch {
	case n == 0:
		return Case{}, fmt.Sprintf("no case %s: the verdict that opens a case must carry the settled receipts it judges", t.Evidence), nil
	case canary && len(t.CaseTexts) != n:
		return Case{}, fmt.Sprintf("%d texts for %d receipts", len(t.CaseTexts), n), nil
	case !canary && n != 1:
		return Case{}, fmt.Sprintf("a sample case names one receipt, not %d (a canary batch carries its texts)", n), nil
	}
	if want := CaseEvidence(t.CaseReceipts, canary); want != t.Evidence {
		return Case{}, fmt.Sprintf("evidence %s is not the hash of the receipts carried (%s)", t.Evidence, want), nil
	}
	var gateway keys.PublicKey
	seen := map[string]bool{}
	for i, br := range t.CaseReceipts {
		r, err := receipt.Decode(br.Bytes)
		if err != nil {
			return Case{}, fmt.Sprintf("receipt %d: %v", i, err), nil
		}
		s := receipt.Signed{Receipt: r, ProviderSignature: br.ProviderSignature, GatewaySignature: br.GatewaySignature}
		if err := s.Verify(); err != nil {
			return Case{}, fmt.Sprintf("receipt %d: %v", i, err), nil
		}
		switch {
		case r.ChainID != x.chainID:
			return Case{}, fmt.Sprintf("receipt %d is for chain %q", i, r.ChainID), nil
		case r.Provider.Address() != t.Subject:
			return Case{}, fmt.Sprintf("receipt %d was served by %s, not %s", i, r.Provider.Address(), t.Subject), nil
		case r.ModelDigest != t.Digest:
			return Case{}, fmt.Sprintf("receipt %d was served with digest %s, not %s", i, r.ModelDigest, t.Digest), nil
		case i > 0 && r.Gateway != gateway:
			return Case{}, "the receipts of one case are countersigned by one gateway", nil
		case seen[r.RequestID]:
			return Case{}, fmt.Sprintf("receipt %d repeats request %s", i, r.RequestID), nil
		}
		gateway = r.Gateway
		seen[r.RequestID] = true
		st, found, err := x.settlement(r.Gateway.Address(), r.RequestID)
		if err != nil {
			return Case{}, "", err
		}
		if !found || st.Receipt != receipt.Sum(br.Bytes) {
			return Case{}, fmt.Sprintf("receipt %d (request %s) %s", i, r.RequestID, ReasonNotSettled), nil
		}
		if canary {
			tx := &t.CaseTexts[i]
			if receipt.Sum(tx.Request) != r.RequestHash || receipt.Sum([]byte(tx.Response)) != r.ResponseHash {
				return Case{}, fmt.Sprintf("text %d is not what receipt %d signs", i, i), nil
			}
		}
	}
	prov, found, err := x.account(t.Subject)
	if err != nil {
		return Case{}, "", err
	}
	if !found || !prov.Has(RoleProvider) {
		return Case{}, fmt.Sprintf("%s is not a registered provider", t.Subject), nil
	}
	c := Case{Provider: t.Subject, Digest: t.Digest, Opened: x.height, Canary: canary, Gateway: gateway.Address()}
	if c.Total, err = x.eligibleStake(&c); err != nil {
		return Case{}, "", err
	}
	return c, "", nil
}

// voteWeight is what addr's vote weighs in c: its bonded stake if it is a
// registered, unjailed verifier with the minimum stake and neither the
// case's provider nor its gateway; otherwise 0.
func (b *Block) voteWeight(c *Case, addr keys.Address) (money.Amount, error) {
	if addr == c.Provider || addr == c.Gateway {
		return 0, nil
	}
	a, found, err := b.account(addr)
	if err != nil || !found || !a.Has(RoleVerifier) || a.Jailed || a.Stake < b.params.MinVerifierStake {
		return 0, err
	}
	return a.Stake, nil
}

// eligibleStake is the stake of every verifier that may vote in c.
func (b *Block) eligibleStake(c *Case) (money.Amount, error) {
	vs, err := b.verifiers()
	if err != nil {
		return 0, err
	}
	var total money.Amount
	for _, v := range vs {
		w, err := b.voteWeight(c, v)
		if err != nil {
			return 0, err
		}
		if total, err = total.Add(w); err != nil {
			return 0, fmt.Errorf("ledger: verifier stake: %w", err)
		}
	}
	return total, nil
}

// reaches reports whether part is at least bps/10000 of total.
func reaches(part, total money.Amount, bps uint32) bool {
	hi1, lo1 := bits.Mul64(uint64(part), 10_000)
	hi2, lo2 := bits.Mul64(uint64(total), uint64(bps))
	return hi1 > hi2 || hi1 == hi2 && lo1 >= lo2
}

// decide weighs a matured case's votes by the voters' stake now and
// decides it: FAILED if fail-votes hold VerdictFailStakeBps of the
// eligible stake (the larger of the total when it opened and now) and
// outweigh the pass-votes, PASSED if pass-votes hold that share and at
// least match the fail-votes, otherwise undecided (CaseOpen). It also
// needs VerdictQuorum eligible voters. It reports whether it decided.
func (b *Block) decide(c *Case) (bool, error) {
	now, err := b.eligibleStake(c)
	if err != nil {
		return false, err
	}
	c.Total = max(now, c.Total)
	base := c.Total
	voters := 0
	c.PassStake, c.FailStake = 0, 0
	for i := range c.Votes {
		v := &c.Votes[i]
		if v.Stake, err = b.voteWeight(c, v.Verifier); err != nil {
			return false, err
		}
		if v.Stake == 0 {
			continue
		}
		voters++
		// Each is part of the verifiers' stake: the sums cannot overflow.
		if v.Pass {
			c.PassStake += v.Stake
		} else {
			c.FailStake += v.Stake
		}
	}
	bps := b.params.VerdictFailStakeBps
	switch {
	case voters < int(b.params.VerdictQuorum) || base == 0:
		c.State = CaseOpen
	case c.FailStake > c.PassStake && reaches(c.FailStake, base, bps):
		c.State = CaseFailed
	case c.PassStake >= c.FailStake && reaches(c.PassStake, base, bps):
		c.State = CasePassed
	default:
		c.State = CaseOpen
	}
	return c.State != CaseOpen, nil
}

// slashWrongVerifiers burns VerifierSlashBps of the stake of every
// verifier whose vote was not want.
func (b *Block) slashWrongVerifiers(votes []Vote, want bool, why string) ([]Event, error) {
	var events []Event
	for _, v := range votes {
		if v.Pass == want {
			continue
		}
		burned, err := b.slash(v.Verifier, b.params.VerifierSlashBps, false)
		if err != nil {
			return nil, err
		}
		events = append(events, Event{Type: "verifier_slashed", Attrs: []Attr{
			{Key: "verifier", Value: string(v.Verifier), Index: true},
			{Key: "amount", Value: fmt.Sprint(uint64(burned))},
			{Key: "reason", Value: why},
		}})
	}
	return events, nil
}

// slash burns bps of addr's stake and unbonding stake and, when all is
// set, its escrowed earnings and unvested rewards too (what has vested is
// paid out first: it was earned). It returns the amount burned.
func (b *Block) slash(addr keys.Address, bps uint32, all bool) (money.Amount, error) {
	a, ok, err := b.account(addr)
	if err != nil || !ok {
		return 0, err
	}
	part := func(x money.Amount) money.Amount {
		p, _ := x.MulDiv(uint64(bps), 10_000) // bps ≤ 10000: fits
		return p
	}
	burned := part(a.Stake)
	a.Stake -= burned
	for i := range a.Unbonding {
		p := part(a.Unbonding[i].Amount)
		a.Unbonding[i].Amount -= p
		burned += p // parts of the account's total: no overflow
	}
	a.Unbonding = slices.DeleteFunc(a.Unbonding, func(e Entry) bool { return e.Amount == 0 })
	if all {
		for _, e := range a.Escrow {
			burned += e.Amount
		}
		a.Escrow = nil
		a.releaseVested(b.height)
		for _, v := range a.Vesting {
			burned += v.Amount - v.Released
		}
		a.Vesting = nil
	}
	if burned == 0 {
		return 0, nil
	}
	s, err := b.supply()
	if err != nil {
		return 0, err
	}
	s.Total -= burned // part of the supply
	if s.Burned, err = s.Burned.Add(burned); err != nil {
		return 0, fmt.Errorf("ledger: burned supply: %w", err)
	}
	b.set(keySupply, s.encode())
	b.putAccount(addr, &a)
	return burned, nil
}

// schedule appends evidence to the list stored under key.
func (b *Block) schedule(key string, evidence receipt.Hash) error {
	raw, err := b.get(key)
	if err != nil {
		return err
	}
	b.set(key, append(append([]byte{}, raw...), evidence[:]...))
	return nil
}

// plant records a gateway's commitment to a planted sample. The gateway
// must reveal it within PlantRevealBlocks (expirePlants), so committing
// both verdicts for one sample costs stake whichever it reveals.
func (x *txn) plant() (Result, error) {
	gw, _, err := x.account(x.sender)
	if err != nil {
		return Result{}, err
	}
	if res, bad := x.checkRole(&gw, RoleGateway, x.params.MinGatewayStake); bad {
		return res, nil
	}
	raw, err := x.get(plantKey(x.tx.Evidence))
	if err != nil {
		return Result{}, err
	}
	if raw != nil {
		return fail(CodeInvalid, "plant: commitment already recorded"), nil
	}
	e := enc{}
	e.address(x.sender)
	e.u64(x.height)
	x.set(plantKey(x.tx.Evidence), e.b)
	due := x.height + x.params.PlantRevealBlocks
	if err := x.schedule(plantDueKey(due), x.tx.Evidence); err != nil {
		return Result{}, err
	}
	return ok(Event{Type: "plant", Attrs: []Attr{
		{Key: "gateway", Value: string(x.sender), Index: true},
		{Key: "reveal_by", Value: fmt.Sprint(due)},
	}}), nil
}

// reveal opens a gateway's commitment. The first reveal of an evidence
// hash marks its case (if one is open) as planted: at maturity the votes
// are judged against the revealed verdict and the case does not count
// against its provider; without a case, or after it matured, the reveal
// only retires the commitment. A second reveal of the same evidence hash
// — the gateway committed to both verdicts — burns PlantForfeitBps of the
// gateway's stake and voids the case if it is open.
func (x *txn) reveal() (Result, error) {
	t := x.tx
	commitment := PlantCommitment(t.Evidence, t.Pass, t.Salt)
	raw, err := x.get(plantKey(commitment))
	if err != nil {
		return Result{}, err
	}
	if raw == nil {
		return fail(CodeInvalid, "reveal: no such commitment (evidence, verdict or salt differ)"), nil
	}
	d := dec{b: raw}
	owner, committed := d.address(), d.u64()
	if err := d.end(); err != nil {
		return Result{}, fmt.Errorf("ledger: plant commitment: %w", err)
	}
	if owner != x.sender {
		return fail(CodeInvalid, "reveal: the commitment belongs to another gateway"), nil
	}
	c, exists, err := x.loadCase(t.Evidence)
	if err != nil {
		return Result{}, err
	}
	switch {
	case !exists:
	case c.Gateway != x.sender:
		return fail(CodeInvalid, fmt.Sprintf("reveal: case %s is about a receipt of gateway %s", t.Evidence, c.Gateway)), nil
	case c.Matured:
		// Too late to count: the reveal only retires the commitment.
	case committed > c.Opened:
		// Committed after verifiers had spoken: the gateway could pick the
		// "truth" that punishes them.
		return fail(CodeInvalid, fmt.Sprintf("reveal: committed at height %d, after the case opened at %d", committed, c.Opened)), nil
	}
	live := exists && !c.Matured
	x.delete(plantKey(commitment))
	prev, err := x.get(revealedKey(t.Evidence))
	if err != nil {
		return Result{}, err
	}
	if prev != nil {
		burned, err := x.slash(x.sender, x.params.PlantForfeitBps, false)
		if err != nil {
			return Result{}, err
		}
		if live {
			c.Equivocated = true
			x.set(caseKey(t.Evidence), c.encode())
		}
		return ok(Event{Type: "plant_equivocated", Attrs: []Attr{
			{Key: "gateway", Value: string(x.sender), Index: true},
			{Key: "evidence", Value: t.Evidence.String(), Index: true},
			{Key: "burned", Value: fmt.Sprint(uint64(burned))},
		}}), nil
	}
	e := enc{}
	e.address(x.sender)
	e.boolean(t.Pass)
	x.set(revealedKey(t.Evidence), e.b)
	if live {
		c.Planted, c.PlantPass = true, t.Pass
		x.set(caseKey(t.Evidence), c.encode())
	}
	return ok(Event{Type: "plant_revealed", Attrs: []Attr{
		{Key: "evidence", Value: t.Evidence.String(), Index: true},
		{Key: "pass", Value: fmt.Sprint(t.Pass)},
		{Key: "case", Value: fmt.Sprint(live)},
	}}), nil
}

// expirePlants runs at the start of a block: a commitment whose reveal
// was due and never came burns PlantForfeitBps of its gateway's stake.
func (b *Block) expirePlants() ([]Event, error) {
	key := plantDueKey(b.height)
	raw, err := b.get(key)
	if err != nil || raw == nil {
		return nil, err
	}
	if len(raw)%32 != 0 {
		return nil, fmt.Errorf("ledger: plant due list at %d: %d bytes", b.height, len(raw))
	}
	b.delete(key)
	var events []Event
	for i := 0; i < len(raw); i += 32 {
		var commitment receipt.Hash
		copy(commitment[:], raw[i:i+32])
		rec, err := b.get(plantKey(commitment))
		if err != nil {
			return nil, err
		}
		if rec == nil {
			continue // revealed
		}
		d := dec{b: rec}
		owner, _ := d.address(), d.u64()
		if err := d.end(); err != nil {
			return nil, fmt.Errorf("ledger: plant commitment: %w", err)
		}
		b.delete(plantKey(commitment))
		burned, err := b.slash(owner, b.params.PlantForfeitBps, false)
		if err != nil {
			return nil, err
		}
		events = append(events, Event{Type: "plant_forfeited", Attrs: []Attr{
			{Key: "gateway", Value: string(owner), Index: true},
			{Key: "commitment", Value: commitment.String()},
			{Key: "burned", Value: fmt.Sprint(uint64(burned))},
		}})
	}
	return events, nil
}

// withdrawBlocked says why the sender's unbonding stake must stay
// slashable, or "": it has failed cases inside the conviction window (one
// more could convict it). Cases opened before the stake started unbonding
// mature before it is released (unbonding_blocks > verdict_delay_blocks).
func (x *txn) withdrawBlocked() (string, error) {
	r, err := x.providerRecord(x.sender)
	if err != nil {
		return "", err
	}
	var last uint64
	for _, h := range r.Recent {
		if h+x.params.ConvictWindowBlocks > x.height {
			last = max(last, h)
		}
	}
	if last > 0 {
		return fmt.Sprintf("%s has failed verification cases inside the conviction window; unbonding stake stays slashable until height %d", x.sender, last+x.params.ConvictWindowBlocks), nil
	}
	return "", nil
}

// unjail lets a convicted provider serve again once its jail time is over.
func (x *txn) unjail() (Result, error) {
	a, _, err := x.account(x.sender)
	if err != nil {
		return Result{}, err
	}
	if !a.Jailed {
		return fail(CodeInvalid, "unjail: the account is not jailed"), nil
	}
	r, err := x.providerRecord(x.sender)
	if err != nil {
		return Result{}, err
	}
	if free := r.JailedAt + x.params.JailBlocks; x.height < free {
		return fail(CodeInvalid, fmt.Sprintf("unjail: jailed until height %d", free)), nil
	}
	a.Jailed = false
	r.Recent = nil
	x.putAccount(x.sender, &a)
	x.set(providerRecordKey(x.sender), r.encode())
	return ok(Event{Type: "unjail", Attrs: []Attr{{Key: "account", Value: string(x.sender), Index: true}}}), nil
}

// matureCases runs at the start of a block: cases opened
// VerdictDelayBlocks ago are decided by stake (decide); a decided case
// slashes the voters against its outcome and counts for or against its
// provider, and a provider with ConvictFailures failed cases inside the
// window is convicted. A case revealed as planted judges its voters
// against the revealed verdict instead and does not count — unless
// verifiers holding the deciding share of stake contradicted the reveal:
// then the gateway forfeits PlantForfeitBps and the case counts as
// decided (a gateway cannot shield a provider by "planting" its receipts).
func (b *Block) matureCases() ([]Event, error) {
	events, err := b.expirePlants()
	if err != nil {
		return nil, err
	}
	key := maturingKey(b.height)
	raw, err := b.get(key)
	if err != nil || raw == nil {
		return events, err
	}
	if len(raw)%32 != 0 {
		return nil, fmt.Errorf("ledger: maturing list at %d: %d bytes", b.height, len(raw))
	}
	b.delete(key)
	for i := 0; i < len(raw); i += 32 {
		var evidence receipt.Hash
		copy(evidence[:], raw[i:i+32])
		c, found, err := b.loadCase(evidence)
		if err != nil {
			return nil, err
		}
		if !found || c.Matured {
			continue
		}
		ev, err := b.matureCase(evidence, &c)
		if err != nil {
			return nil, err
		}
		events = append(events, ev...)
	}
	return events, nil
}

// matureCase closes one case (see matureCases).
func (b *Block) matureCase(evidence receipt.Hash, c *Case) ([]Event, error) {
	c.Matured = true
	if c.Canary {
		b.delete(openingKey(evidence))
	}
	r, err := b.providerRecord(c.Provider)
	if err != nil {
		return nil, err
	}
	if r.Open > 0 {
		r.Open--
	}
	b.set(providerRecordKey(c.Provider), r.encode())
	decided, err := b.decide(c)
	if err != nil {
		return nil, err
	}
	outcome := "undecided"
	switch {
	case c.Equivocated:
		outcome = "void"
	case c.Planted && (!decided || (c.State == CasePassed) == c.PlantPass):
		outcome = "planted"
	case decided:
		outcome = map[bool]string{true: "pass", false: "fail"}[c.State == CasePassed]
	}
	events := []Event{{Type: "case_decided", Attrs: []Attr{
		{Key: "evidence", Value: evidence.String(), Index: true},
		{Key: "provider", Value: string(c.Provider), Index: true},
		{Key: "outcome", Value: outcome},
		{Key: "pass", Value: fmt.Sprint(c.State == CasePassed)},
		{Key: "pass_stake", Value: fmt.Sprint(uint64(c.PassStake))},
		{Key: "fail_stake", Value: fmt.Sprint(uint64(c.FailStake))},
		{Key: "eligible_stake", Value: fmt.Sprint(uint64(c.Total))},
		{Key: "votes", Value: fmt.Sprint(len(c.Votes))},
	}}}
	if outcome == "planted" {
		c.State = CaseOpen // a test of the verifiers: it decides nothing about the provider
	}
	b.set(caseKey(evidence), c.encode())
	switch outcome {
	case "void", "undecided":
		return events, nil
	case "planted":
		ev, err := b.slashWrongVerifiers(c.Votes, c.PlantPass, "misjudged a planted sample")
		return append(events, ev...), err
	}
	if c.Planted {
		burned, err := b.slash(c.Gateway, b.params.PlantForfeitBps, false)
		if err != nil {
			return nil, err
		}
		events = append(events, Event{Type: "plant_contradicted", Attrs: []Attr{
			{Key: "gateway", Value: string(c.Gateway), Index: true},
			{Key: "evidence", Value: evidence.String(), Index: true},
			{Key: "burned", Value: fmt.Sprint(uint64(burned))},
		}})
	}
	ev, err := b.slashWrongVerifiers(c.Votes, c.State == CasePassed, "voted against the decided outcome")
	if err != nil {
		return nil, err
	}
	events = append(events, ev...)
	ev, err = b.countCase(evidence, c)
	return append(events, ev...), err
}

// countCase adds a decided case to its provider's record and convicts the
// provider when the failures in the window reach ConvictFailures.
func (b *Block) countCase(evidence receipt.Hash, c *Case) ([]Event, error) {
	r, err := b.providerRecord(c.Provider)
	if err != nil {
		return nil, err
	}
	r.Audits++
	r.Last = append(r.Last, CaseOutcome{Evidence: evidence, Pass: c.State == CasePassed, Height: b.height})
	if n := len(r.Last); n > maxLastCases {
		r.Last = r.Last[n-maxLastCases:]
	}
	switch c.State {
	case CaseFailed:
		r.Failures++
		r.Recent = append(r.Recent, b.height)
	case CasePassed:
		r.countPass(c.Digest, b.height)
	}
	cutoff := uint64(0)
	if b.height > b.params.ConvictWindowBlocks {
		cutoff = b.height - b.params.ConvictWindowBlocks
	}
	r.Recent = slices.DeleteFunc(r.Recent, func(h uint64) bool { return h <= cutoff })
	if n := len(r.Recent); n > maxRecentFailures {
		r.Recent = r.Recent[n-maxRecentFailures:]
	}
	var events []Event
	a, found, err := b.account(c.Provider)
	if err != nil {
		return nil, err
	}
	if found && !a.Jailed && len(r.Recent) >= int(b.params.ConvictFailures) {
		burned, err := b.slash(c.Provider, b.params.SlashStakeBps, true)
		if err != nil {
			return nil, err
		}
		a, _, err = b.account(c.Provider)
		if err != nil {
			return nil, err
		}
		a.Jailed = true
		b.putAccount(c.Provider, &a)
		r.Convictions++
		r.JailedAt = b.height
		r.Recent = nil
		// Trust earned before does not outlive a conviction: back from
		// jail, the provider goes through probation for every digest.
		r.Passed = nil
		events = append(events, Event{Type: "convicted", Attrs: []Attr{
			{Key: "provider", Value: string(c.Provider), Index: true},
			{Key: "digest", Value: c.Digest},
			{Key: "burned", Value: fmt.Sprint(uint64(burned))},
			{Key: "jailed_until", Value: fmt.Sprint(b.height + b.params.JailBlocks)},
		}})
	}
	b.set(providerRecordKey(c.Provider), r.encode())
	return events, nil
}

// ProviderRecord returns a provider's verification history.
func (v View) ProviderRecord(a keys.Address) (ProviderRecord, error) {
	raw, err := v.R.Get([]byte(providerRecordKey(a)))
	if err != nil || raw == nil {
		return ProviderRecord{}, err
	}
	return decodeProviderRecord(raw)
}

// encodeOpening is the stored form of a canary case's receipts and texts.
func encodeOpening(rs []BatchReceipt, texts []CaseText) []byte {
	e := enc{}
	e.u32(uint32(len(rs)))
	for _, r := range rs {
		e.bytes(r.Bytes)
		e.fixed(r.ProviderSignature[:])
		e.fixed(r.GatewaySignature[:])
	}
	e.u32(uint32(len(texts)))
	for _, t := range texts {
		e.bytes(t.Request)
		e.str(t.Response)
	}
	return e.b
}

// CaseOpening is what opened an open canary case: its settled receipts
// and each one's request body and response text, so that any verifier can
// replay the canaries and vote. It is kept until the case matures.
type CaseOpening struct {
	Receipts []BatchReceipt `json:"receipts"`
	Texts    []CaseText     `json:"texts"`
}

// CaseOpening returns the receipts and texts of an open canary case.
func (v View) CaseOpening(evidence receipt.Hash) (CaseOpening, bool, error) {
	raw, err := v.R.Get([]byte(openingKey(evidence)))
	if err != nil || raw == nil {
		return CaseOpening{}, false, err
	}
	d := dec{b: raw}
	var o CaseOpening
	n := d.length(MaxCaseReceipts, "case receipts")
	for range n {
		r := BatchReceipt{Bytes: d.bytes(maxReceiptBytes, "receipt")}
		d.fixed(r.ProviderSignature[:])
		d.fixed(r.GatewaySignature[:])
		o.Receipts = append(o.Receipts, r)
	}
	n = d.length(MaxCaseReceipts, "case texts")
	for range n {
		o.Texts = append(o.Texts, CaseText{Request: d.bytes(MaxCaseTextBytes, "request"), Response: d.str(MaxCaseTextBytes, "response")})
	}
	if err := d.end(); err != nil {
		return CaseOpening{}, false, fmt.Errorf("ledger: case opening %s: %w", evidence, err)
	}
	return o, true, nil
}

// OpenCases lists the evidence hashes of the cases that have not matured
// after height, by the height they mature at: those scheduled within the
// next VerdictDelayBlocks (at most maxOpenScan heights are read).
func (v View) OpenCases(height uint64) ([]receipt.Hash, error) {
	p, err := v.Params()
	if err != nil {
		return nil, err
	}
	var out []receipt.Hash
	for h := height + 1; h <= height+min(p.VerdictDelayBlocks, maxOpenScan); h++ {
		raw, err := v.R.Get([]byte(maturingKey(h)))
		if err != nil {
			return nil, err
		}
		for i := 0; i+32 <= len(raw); i += 32 {
			out = append(out, receipt.Hash(raw[i:i+32]))
		}
	}
	return out, nil
}

// maxOpenScan bounds the heights OpenCases reads.
const maxOpenScan = 10_000

// Case returns the case about a piece of evidence.
func (v View) Case(evidence receipt.Hash) (Case, bool, error) {
	raw, err := v.R.Get([]byte(caseKey(evidence)))
	if err != nil || raw == nil {
		return Case{}, false, err
	}
	c, err := decodeCase(raw)
	return c, err == nil, err
}
