package ledger

import (
	"crypto/sha256"
	"fmt"
	"slices"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// Verification state keys.
const (
	prefixCase      = "v/" // + evidence hash (32 bytes) → Case
	prefixMaturing  = "m/" // + height (8 bytes) → evidence hashes whose cases mature then
	prefixPlant     = "c/" // + commitment (32 bytes) → gateway address and height
	prefixProviderQ = "q/" // + address → ProviderRecord
)

// Limits of the verification records.
const (
	maxVotes          = 64
	maxRecentFailures = 64
	maxLastCases      = 8
)

// Case states.
const (
	CaseOpen   uint8 = 0 // collecting verdicts
	CasePassed uint8 = 1 // decided: the provider served what it claimed
	CaseFailed uint8 = 2 // decided: it did not
)

// Vote is one verifier's verdict in a case.
type Vote struct {
	Verifier keys.Address `json:"verifier"`
	Pass     bool         `json:"pass"`
}

// Case is what verifiers said about one piece of evidence (a canary or a
// re-scored response, named by the hash of what the verifiers examined).
// It is decided by majority once VerdictQuorum verifiers voted, and counts
// for or against its provider VerdictDelayBlocks after it opened, unless a
// gateway revealed it as a planted test of the verifiers.
type Case struct {
	Provider keys.Address `json:"provider"`
	Digest   string       `json:"digest"`
	Opened   uint64       `json:"opened_height"`
	Votes    []Vote       `json:"votes"`
	State    uint8        `json:"state"`
	Planted  bool         `json:"planted"`
	// Matured: the case has counted (or, planted or undecided, was
	// closed); later verdicts are refused.
	Matured bool `json:"matured"`
}

func (c *Case) encode() []byte {
	e := enc{}
	e.address(c.Provider)
	e.str(c.Digest)
	e.u64(c.Opened)
	e.u32(uint32(len(c.Votes)))
	for _, v := range c.Votes {
		e.address(v.Verifier)
		e.boolean(v.Pass)
	}
	e.u8(c.State)
	e.boolean(c.Planted)
	e.boolean(c.Matured)
	return e.b
}

func decodeCase(b []byte) (Case, error) {
	d := dec{b: b}
	c := Case{Provider: d.address(), Digest: d.str(receipt.MaxDigest, "digest"), Opened: d.u64()}
	n := d.length(maxVotes, "votes")
	for range n {
		c.Votes = append(c.Votes, Vote{Verifier: d.address(), Pass: d.boolean()})
	}
	c.State, c.Planted, c.Matured = d.u8(), d.boolean(), d.boolean()
	if d.err == nil && c.State > CaseFailed {
		d.fail("case state %d", c.State)
	}
	return c, d.end()
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
	return r, d.end()
}

func caseKey(evidence receipt.Hash) string    { return prefixCase + string(evidence[:]) }
func maturingKey(height uint64) string        { return prefixMaturing + epochBytes(height) }
func plantKey(commitment receipt.Hash) string { return prefixPlant + string(commitment[:]) }
func providerRecordKey(a keys.Address) string { return prefixProviderQ + string(a) }

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

// verdict records a verifier's verdict on a piece of evidence about a
// provider, deciding the case when it reaches the quorum.
func (x *txn) verdict() (Result, error) {
	t := x.tx
	me, _, err := x.account(x.sender)
	if err != nil {
		return Result{}, err
	}
	if res, bad := x.checkRole(&me, RoleVerifier, x.params.MinVerifierStake); bad {
		return res, nil
	}
	prov, found, err := x.account(t.Subject)
	if err != nil {
		return Result{}, err
	}
	if !found || !prov.Has(RoleProvider) {
		return fail(CodeInvalid, fmt.Sprintf("verdict: %s is not a registered provider", t.Subject)), nil
	}
	if t.Digest == "" {
		return fail(CodeInvalid, "verdict: the model digest is missing"), nil
	}
	c, exists, err := x.loadCase(t.Evidence)
	if err != nil {
		return Result{}, err
	}
	switch {
	case !exists:
		c = Case{Provider: t.Subject, Digest: t.Digest, Opened: x.height}
		if err := x.schedule(maturingKey(x.height+x.params.VerdictDelayBlocks), t.Evidence); err != nil {
			return Result{}, err
		}
	case c.Matured || c.Planted:
		return fail(CodeInvalid, fmt.Sprintf("verdict: case %s is closed", t.Evidence)), nil
	case c.State != CaseOpen:
		return fail(CodeInvalid, fmt.Sprintf("verdict: case %s is already decided", t.Evidence)), nil
	case c.Provider != t.Subject || c.Digest != t.Digest:
		return fail(CodeInvalid, fmt.Sprintf("verdict: case %s is about %s serving %s", t.Evidence, c.Provider, c.Digest)), nil
	}
	if slices.ContainsFunc(c.Votes, func(v Vote) bool { return v.Verifier == x.sender }) {
		return fail(CodeInvalid, fmt.Sprintf("verdict: %s already judged case %s", x.sender, t.Evidence)), nil
	}
	c.Votes = append(c.Votes, Vote{Verifier: x.sender, Pass: t.Pass})
	events := []Event{{Type: "verdict", Attrs: []Attr{
		{Key: "verifier", Value: string(x.sender), Index: true},
		{Key: "provider", Value: string(t.Subject), Index: true},
		{Key: "evidence", Value: t.Evidence.String(), Index: true},
		{Key: "pass", Value: fmt.Sprint(t.Pass)},
	}}}
	if len(c.Votes) >= int(x.params.VerdictQuorum) {
		ev, err := x.decide(t.Evidence, &c)
		if err != nil {
			return Result{}, err
		}
		events = append(events, ev...)
	}
	x.set(caseKey(t.Evidence), c.encode())
	return ok(events...), nil
}

// decide settles an open case by majority (a tie acquits) and slashes the
// verifiers who voted against it.
func (b *Block) decide(evidence receipt.Hash, c *Case) ([]Event, error) {
	passes := 0
	for _, v := range c.Votes {
		if v.Pass {
			passes++
		}
	}
	pass := 2*passes >= len(c.Votes)
	c.State = CaseFailed
	if pass {
		c.State = CasePassed
	}
	events := []Event{{Type: "case_decided", Attrs: []Attr{
		{Key: "evidence", Value: evidence.String(), Index: true},
		{Key: "provider", Value: string(c.Provider), Index: true},
		{Key: "pass", Value: fmt.Sprint(pass)},
		{Key: "votes", Value: fmt.Sprint(len(c.Votes))},
	}}}
	ev, err := b.slashWrongVerifiers(c.Votes, pass, "disagreed with the majority")
	return append(events, ev...), err
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

// plant records a gateway's commitment to a planted sample.
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
	return ok(Event{Type: "plant", Attrs: []Attr{{Key: "gateway", Value: string(x.sender), Index: true}}}), nil
}

// reveal opens a gateway's commitment: the case becomes a test of its
// verifiers, each judged against the committed verdict, and never counts
// against its provider.
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
		return fail(CodeInvalid, fmt.Sprintf("reveal: no verdicts on %s yet", t.Evidence)), nil
	case c.Planted || c.Matured:
		return fail(CodeInvalid, fmt.Sprintf("reveal: case %s is closed", t.Evidence)), nil
	case committed > c.Opened:
		// Committed after verifiers had spoken: the gateway could pick the
		// "truth" that punishes them.
		return fail(CodeInvalid, fmt.Sprintf("reveal: committed at height %d, after the case opened at %d", committed, c.Opened)), nil
	}
	c.Planted = true
	events, err := x.slashWrongVerifiers(c.Votes, t.Pass, "misjudged a planted sample")
	if err != nil {
		return Result{}, err
	}
	x.set(caseKey(t.Evidence), c.encode())
	x.delete(plantKey(commitment))
	return ok(append([]Event{{Type: "plant_revealed", Attrs: []Attr{
		{Key: "evidence", Value: t.Evidence.String(), Index: true},
		{Key: "pass", Value: fmt.Sprint(t.Pass)},
	}}}, events...)...), nil
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

// matureCases runs at the start of a block: cases opened VerdictDelayBlocks
// ago count for or against their providers, and a provider with
// ConvictFailures failed cases inside the window is convicted.
func (b *Block) matureCases() ([]Event, error) {
	key := maturingKey(b.height)
	raw, err := b.get(key)
	if err != nil || raw == nil {
		return nil, err
	}
	if len(raw)%32 != 0 {
		return nil, fmt.Errorf("ledger: maturing list at %d: %d bytes", b.height, len(raw))
	}
	b.delete(key)
	var events []Event
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
		c.Matured = true
		b.set(caseKey(evidence), c.encode())
		if c.Planted || c.State == CaseOpen {
			continue // a test of the verifiers, or too few verdicts: no effect
		}
		ev, err := b.countCase(evidence, &c)
		if err != nil {
			return nil, err
		}
		events = append(events, ev...)
	}
	return events, nil
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
	if c.State == CaseFailed {
		r.Failures++
		r.Recent = append(r.Recent, b.height)
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

// Case returns the case about a piece of evidence.
func (v View) Case(evidence receipt.Hash) (Case, bool, error) {
	raw, err := v.R.Get([]byte(caseKey(evidence)))
	if err != nil || raw == nil {
		return Case{}, false, err
	}
	c, err := decodeCase(raw)
	return c, err == nil, err
}
