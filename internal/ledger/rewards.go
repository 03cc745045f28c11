package ledger

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"math/bits"
	"slices"
	"strings"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// Reward state keys.
const (
	keyEpoch       = "x/epoch"      // → EpochState of the running epoch
	prefixEpochRec = "x/e/"         // + epoch (8 bytes) → EpochRecord
	prefixPayouts  = "y/"           // + epoch (8 bytes) → the epoch's payouts, sorted by account
	prefixWork     = "u/"           // + epoch (8 bytes) + address → work units (8 bytes)
	prefixWorkList = "n/"           // + epoch (8 bytes) → count; + epoch + index (4 bytes) → address
	keyValidators  = "l/validators" // → the validators and their reward accounts
	keyVerifiers   = "l/verifiers"  // → addresses holding the verifier role, sorted
	keyParamsVer   = "p/version"    // → how many parameter changes were made (8 bytes)
)

// EpochState is the running epoch: its number (from 1), first height and,
// per validator in genesis order, how many blocks with transactions it
// signed the commit of.
type EpochState struct {
	Number uint64   `json:"number"`
	Start  uint64   `json:"start_height"`
	Signed []uint64 `json:"signed"`
}

func (s *EpochState) encode() []byte {
	e := enc{}
	e.u64(s.Number)
	e.u64(s.Start)
	e.u32(uint32(len(s.Signed)))
	for _, n := range s.Signed {
		e.u64(n)
	}
	return e.b
}

func decodeEpochState(b []byte) (EpochState, error) {
	d := dec{b: b}
	s := EpochState{Number: d.u64(), Start: d.u64()}
	n := d.length(len(b)/8, "signed counts")
	s.Signed = make([]uint64, 0, n)
	for range n {
		s.Signed = append(s.Signed, d.u64())
	}
	return s, d.end()
}

// EpochRecord is what an epoch paid, kept forever: anyone can check a
// payout against Root.
type EpochRecord struct {
	Number uint64 `json:"number"`
	Start  uint64 `json:"start_height"`
	End    uint64 `json:"end_height"`
	// Scheduled is the emission schedule's amount for the epoch; Minted is
	// what was paid: Scheduled clamped by the supply cap, less the pools
	// nobody could earn (no work, no verifier, no validator signature).
	Scheduled money.Amount `json:"scheduled"`
	Minted    money.Amount `json:"minted"`
	Providers money.Amount `json:"providers"`
	Verifiers money.Amount `json:"verifiers"`
	// Validators and Treasury are those pools' payouts.
	Validators money.Amount `json:"validators"`
	Treasury   money.Amount `json:"treasury"`
	// Work is the sum of the eligible providers' work units: what
	// consumers paid them in the epoch, in base units (saturating).
	Work uint64 `json:"work_units"`
	// Payees is the number of payouts; Root their RFC 6962 Merkle root.
	Payees uint32       `json:"payees"`
	Root   receipt.Hash `json:"root"`
}

func (r *EpochRecord) encode() []byte {
	e := enc{}
	e.u64(r.Number)
	e.u64(r.Start)
	e.u64(r.End)
	e.amount(r.Scheduled)
	e.amount(r.Minted)
	e.amount(r.Providers)
	e.amount(r.Verifiers)
	e.amount(r.Validators)
	e.amount(r.Treasury)
	e.u64(r.Work)
	e.u32(r.Payees)
	e.fixed(r.Root[:])
	return e.b
}

func decodeEpochRecord(b []byte) (EpochRecord, error) {
	d := dec{b: b}
	r := EpochRecord{Number: d.u64(), Start: d.u64(), End: d.u64(), Scheduled: d.amount(), Minted: d.amount(),
		Providers: d.amount(), Verifiers: d.amount(), Validators: d.amount(), Treasury: d.amount(), Work: d.u64(), Payees: d.u32()}
	d.fixed(r.Root[:])
	return r, d.end()
}

func epochBytes(epoch uint64) string { return string(binary.BigEndian.AppendUint64(nil, epoch)) }

func epochRecordKey(epoch uint64) string { return prefixEpochRec + epochBytes(epoch) }

// EpochRecordKey is the state key of a finished epoch's record, for tools
// that inspect a state store.
func EpochRecordKey(epoch uint64) []byte { return []byte(epochRecordKey(epoch)) }
func payoutsKey(epoch uint64) string     { return prefixPayouts + epochBytes(epoch) }
func workKey(epoch uint64, a keys.Address) string {
	return prefixWork + epochBytes(epoch) + string(a)
}
func workCountKey(epoch uint64) string { return prefixWorkList + epochBytes(epoch) }
func workListKey(epoch uint64, i uint32) string {
	return prefixWorkList + epochBytes(epoch) + string(binary.BigEndian.AppendUint32(nil, i))
}

// Saturating arithmetic for work units: a hostile receipt cannot wrap a
// provider's work around to a small number, and saturation is as
// deterministic as exact arithmetic.
func satAdd(a, b uint64) uint64 {
	s, carry := bits.Add64(a, b, 0)
	if carry != 0 {
		return math.MaxUint64
	}
	return s
}

func satMul(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	if hi != 0 {
		return math.MaxUint64
	}
	return lo
}

// Work is what a provider's settled receipts add up to in an epoch: the
// amounts their consumers paid (its work units: emission follows value
// paid, not tokens claimed) and the protocol fees those amounts paid to
// the treasury, which cap its reward (Params.RewardMaxPaidBps).
type Work struct {
	Paid money.Amount `json:"paid"`
	Fees money.Amount `json:"fees"`
}

// plus is w with one more receipt's amount and protocol fee (saturating:
// amounts paid are parts of the supply, so they never saturate).
func (w Work) plus(paid, fee money.Amount) Work {
	return Work{Paid: money.Amount(satAdd(uint64(w.Paid), uint64(paid))), Fees: money.Amount(satAdd(uint64(w.Fees), uint64(fee)))}
}

// RewardCap is the most a provider can earn in an epoch whose receipts
// paid w, at reputation rep (thousandths): the protocol fees it paid
// × RewardMaxPaidBps / ProtocolFeeBps × rep / 1000. Since
// RewardMaxPaidBps < ProtocolFeeBps, the cap is below the fees whenever
// they are not zero, and zero when they are: a receipt that pays nothing
// earns nothing, and self-dealing loses money.
func (p *Params) RewardCap(w Work, rep uint64) money.Amount {
	if p.RewardMaxPaidBps == 0 || p.ProtocolFeeBps == 0 {
		return 0
	}
	c, _ := w.Fees.MulDiv(uint64(p.RewardMaxPaidBps), uint64(p.ProtocolFeeBps)) // < fees: fits
	c, _ = c.MulDiv(min(rep, 1_000), 1_000)
	return c
}

// epochState reads the running epoch.
func (b *Block) epochState() (EpochState, error) {
	raw, err := b.get(keyEpoch)
	if err != nil {
		return EpochState{}, err
	}
	if raw == nil {
		return EpochState{}, fmt.Errorf("ledger: state has no epoch (genesis not applied)")
	}
	s, err := decodeEpochState(raw)
	if err != nil {
		return EpochState{}, fmt.Errorf("ledger: epoch state: %w", err)
	}
	return s, nil
}

func (b *Block) supply() (Supply, error) {
	raw, err := b.get(keySupply)
	if err != nil {
		return Supply{}, err
	}
	s, err := decodeSupply(raw)
	if err != nil {
		return Supply{}, fmt.Errorf("ledger: supply: %w", err)
	}
	return s, nil
}

// addWork adds to the providers' work in the running epoch; a provider
// new in the epoch joins the epoch's work list. Providers are handled in
// address order, so the list is the same on every node.
func (b *Block) addWork(work map[keys.Address]Work) error {
	if len(work) == 0 {
		return nil
	}
	st, err := b.epochState()
	if err != nil {
		return err
	}
	addrs := make([]keys.Address, 0, len(work))
	for a := range work {
		addrs = append(addrs, a)
	}
	slices.Sort(addrs)
	var count uint32
	countRaw, err := b.get(workCountKey(st.Number))
	if err != nil {
		return err
	}
	if countRaw != nil {
		count = binary.BigEndian.Uint32(countRaw)
	}
	listed := count
	for _, a := range addrs {
		k := workKey(st.Number, a)
		raw, err := b.get(k)
		if err != nil {
			return err
		}
		var have Work
		if raw == nil {
			b.set(workListKey(st.Number, count), []byte(a))
			count++
		} else if have, err = decodeWork(raw); err != nil {
			return fmt.Errorf("ledger: work record of %s in epoch %d: %w", a, st.Number, err)
		}
		w := work[a]
		b.set(k, have.plus(w.Paid, w.Fees).encode())
	}
	if count != listed {
		b.set(workCountKey(st.Number), binary.BigEndian.AppendUint32(nil, count))
	}
	return nil
}

// End runs what happens after a block's transactions: a block with
// transactions credits the validators that signed the previous block's
// commit (signers are CometBFT validator addresses), and the last block of
// an epoch pays the epoch's rewards. Only blocks with transactions count
// signatures: CometBFT makes a block after every state change to carry the
// new app hash, and if that block changed state too the chain would never
// stop making blocks.
func (b *Block) End(signers [][]byte, withTxs bool) ([]Event, error) {
	st, err := b.epochState()
	if err != nil {
		return nil, err
	}
	changed := false
	if withTxs && len(signers) > 0 {
		vals, err := b.validators()
		if err != nil {
			return nil, err
		}
		for i, v := range vals {
			ca := v.ConsensusAddress()
			if i < len(st.Signed) && slices.ContainsFunc(signers, func(s []byte) bool { return string(s) == string(ca) }) {
				st.Signed[i]++
				changed = true
			}
		}
	}
	// Saturating: an epoch length near the height limit never wraps.
	if b.height < satAdd(st.Start, b.params.EpochBlocks-1) {
		if changed {
			b.set(keyEpoch, st.encode())
			b.commitTx()
		}
		return nil, nil
	}
	ev, err := b.endEpoch(&st)
	if err != nil {
		b.dropTx()
		return nil, err
	}
	b.commitTx()
	return []Event{ev}, nil
}

func (w Work) encode() []byte {
	e := enc{}
	e.amount(w.Paid)
	e.amount(w.Fees)
	return e.b
}

func decodeWork(b []byte) (Work, error) {
	d := dec{b: b}
	w := Work{Paid: d.amount(), Fees: d.amount()}
	return w, d.end()
}

// share is one payee's claim on a pool.
type share struct {
	addr   keys.Address
	weight uint64
}

// split divides pool among shares in proportion to their weights, rounding
// down, and gives the units left over one each to the shares with the
// largest remainders (ties to the lower address): the amounts sum exactly
// to pool. With no weight at all it returns nil and nothing is paid.
func split(pool money.Amount, shares []share) []money.Amount {
	total := new(big.Int)
	for _, s := range shares {
		total.Add(total, new(big.Int).SetUint64(s.weight))
	}
	if total.Sign() == 0 || pool == 0 {
		return nil
	}
	out := make([]money.Amount, len(shares))
	rems := make([]*big.Int, len(shares))
	var paid money.Amount
	p := new(big.Int).SetUint64(uint64(pool))
	for i, s := range shares {
		q, r := new(big.Int).QuoRem(new(big.Int).Mul(p, new(big.Int).SetUint64(s.weight)), total, new(big.Int))
		out[i] = money.Amount(q.Uint64()) // ≤ pool
		rems[i] = r
		paid += out[i]
	}
	order := make([]int, len(shares))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(x, y int) int {
		if c := rems[y].Cmp(rems[x]); c != 0 {
			return c
		}
		return strings.Compare(string(shares[x].addr), string(shares[y].addr))
	})
	for i := 0; paid < pool; i++ { // fewer units left than shares with a remainder
		out[order[i]]++
		paid++
	}
	return out
}

// capped is a provider's claim on the provider pool: a share, paid at
// most cap.
type capped struct {
	share
	cap money.Amount
}

// splitCapped divides up to pool among shares in proportion to their
// weights, none getting more than its cap (water-filling): the shares
// whose proportional part exceeds their cap get their cap, and the rest
// of the pool is divided among the others the same way, so a capped
// payee's surplus dilutes nobody. Payees are visited by cap per unit of
// weight, lowest first (ties to the lower address); once one is below its
// cap, all after it are too, and split divides the rest exactly. What no
// payee can take is not paid: the amounts sum to at most pool.
func splitCapped(pool money.Amount, shares []capped) []money.Amount {
	out := make([]money.Amount, len(shares))
	order := make([]int, len(shares))
	total := new(big.Int)
	for i, s := range shares {
		order[i] = i
		total.Add(total, new(big.Int).SetUint64(s.weight))
	}
	ratio := func(i, j int) int { // cap_i/w_i against cap_j/w_j
		l := new(big.Int).Mul(new(big.Int).SetUint64(uint64(shares[i].cap)), new(big.Int).SetUint64(shares[j].weight))
		r := new(big.Int).Mul(new(big.Int).SetUint64(uint64(shares[j].cap)), new(big.Int).SetUint64(shares[i].weight))
		return l.Cmp(r)
	}
	slices.SortStableFunc(order, func(i, j int) int {
		if c := ratio(i, j); c != 0 {
			return c
		}
		return strings.Compare(string(shares[i].addr), string(shares[j].addr))
	})
	rest := pool
	for k, i := range order {
		if total.Sign() == 0 { // only weightless payees are left
			break
		}
		s := shares[i]
		// Its part of what is left, rest·w/total, reaches its cap.
		part := new(big.Int).Mul(new(big.Int).SetUint64(uint64(rest)), new(big.Int).SetUint64(s.weight))
		if part.Cmp(new(big.Int).Mul(new(big.Int).SetUint64(uint64(s.cap)), total)) < 0 {
			tail := make([]share, 0, len(order)-k)
			for _, j := range order[k:] {
				tail = append(tail, shares[j].share)
			}
			for n, a := range split(rest, tail) {
				out[order[k+n]] = a
			}
			return out
		}
		out[i] = s.cap
		rest -= s.cap // rest·w ≥ cap·total ≥ cap·w with w > 0, so cap ≤ rest
		total.Sub(total, new(big.Int).SetUint64(s.weight))
	}
	return out
}

// endEpoch pays the running epoch's emission, records it, and starts the
// next epoch at the following height.
func (b *Block) endEpoch(st *EpochState) (Event, error) {
	supply, err := b.supply()
	if err != nil {
		return Event{}, err
	}
	rec := EpochRecord{Number: st.Number, Start: st.Start, End: b.height, Scheduled: b.params.Emission(st.Number)}
	emission := rec.Scheduled
	if room, err := b.params.SupplyCap.Sub(supply.Minted); err != nil {
		emission = 0
	} else {
		emission = min(emission, room)
	}
	pool := func(bps uint32) money.Amount {
		a, _ := emission.MulDiv(uint64(bps), 10_000) // bps ≤ 10000: fits
		return a
	}
	providerPool, verifierPool, validatorPool := pool(b.params.ProviderRewardBps), pool(b.params.VerifierRewardBps), pool(b.params.ValidatorRewardBps)
	treasuryPool := emission - providerPool - verifierPool - validatorPool // the pools sum to at most emission

	rewards := map[keys.Address]money.Amount{}
	credit := func(shares []share, amounts []money.Amount) money.Amount {
		var sum money.Amount
		for i, a := range amounts {
			rewards[shares[i].addr] += a // all parts of emission: no overflow
			sum += a
		}
		return sum
	}
	providers, work, err := b.providerShares(st.Number)
	if err != nil {
		return Event{}, err
	}
	rec.Work = work
	amounts := splitCapped(providerPool, providers)
	for i, p := range providers {
		if amounts[i] > 0 {
			rewards[p.addr] += amounts[i] // parts of emission: no overflow
			rec.Providers += amounts[i]
		}
	}
	verifiers, err := b.verifierShares()
	if err != nil {
		return Event{}, err
	}
	rec.Verifiers = credit(verifiers, split(verifierPool, verifiers))
	vals, err := b.validators()
	if err != nil {
		return Event{}, err
	}
	var signers []share
	for i, v := range vals {
		if i < len(st.Signed) && st.Signed[i] > 0 {
			signers = append(signers, share{addr: v.Account, weight: st.Signed[i]})
		}
	}
	rec.Validators = credit(signers, split(validatorPool, signers))
	rec.Treasury = treasuryPool
	if treasuryPool > 0 {
		rewards[TreasuryAddress] += treasuryPool
	}
	rec.Minted = rec.Providers + rec.Verifiers + rec.Validators + rec.Treasury

	payouts := make([]Payout, 0, len(rewards))
	for a, amount := range rewards {
		if amount > 0 {
			payouts = append(payouts, Payout{Epoch: st.Number, Account: a, Amount: amount})
		}
	}
	slices.SortFunc(payouts, func(x, y Payout) int { return cmp.Compare(x.Account, y.Account) })
	for _, p := range payouts {
		if err := b.payReward(p.Account, p.Amount); err != nil {
			return Event{}, err
		}
	}
	if supply.Total, err = supply.Total.Add(rec.Minted); err == nil {
		supply.Minted, err = supply.Minted.Add(rec.Minted)
	}
	if err == nil {
		supply.NodeRewards, err = supply.NodeRewards.Add(rec.Providers + rec.Verifiers)
	}
	if err != nil {
		return Event{}, fmt.Errorf("ledger: epoch %d supply: %w", st.Number, err) // cannot happen below the cap
	}
	b.set(keySupply, supply.encode())
	rec.Payees = uint32(len(payouts))
	rec.Root = PayoutRoot(payouts)
	b.set(epochRecordKey(st.Number), rec.encode())
	if len(payouts) > 0 {
		b.set(payoutsKey(st.Number), encodePayouts(payouts))
	}
	next := EpochState{Number: st.Number + 1, Start: b.height + 1, Signed: make([]uint64, len(vals))}
	b.set(keyEpoch, next.encode())
	return Event{Type: "epoch_end", Attrs: []Attr{
		{Key: "epoch", Value: fmt.Sprint(rec.Number), Index: true},
		{Key: "minted", Value: fmt.Sprint(uint64(rec.Minted))},
		{Key: "providers", Value: fmt.Sprint(uint64(rec.Providers))},
		{Key: "verifiers", Value: fmt.Sprint(uint64(rec.Verifiers))},
		{Key: "validators", Value: fmt.Sprint(uint64(rec.Validators))},
		{Key: "treasury", Value: fmt.Sprint(uint64(rec.Treasury))},
		{Key: "payees", Value: fmt.Sprint(rec.Payees)},
		{Key: "root", Value: rec.Root.String(), Index: true},
	}}, nil
}

// providerShares reads the epoch's work list, drops it from state, and
// returns each eligible provider's claim in address order — weight: the
// amount its receipts paid × reputation (see ProviderRecord.Reputation);
// cap: Params.RewardCap — with the total paid to the eligible providers.
// A provider that is no longer registered, is jailed, or is staked below
// the minimum at the epoch's end gets nothing.
func (b *Block) providerShares(epoch uint64) ([]capped, uint64, error) {
	countRaw, err := b.get(workCountKey(epoch))
	if err != nil || countRaw == nil {
		return nil, 0, err
	}
	count := binary.BigEndian.Uint32(countRaw)
	b.delete(workCountKey(epoch))
	var out []capped
	var total uint64
	for i := range count {
		raw, err := b.get(workListKey(epoch, i))
		if err != nil {
			return nil, 0, err
		}
		addr := keys.Address(raw)
		b.delete(workListKey(epoch, i))
		wraw, err := b.get(workKey(epoch, addr))
		if err != nil {
			return nil, 0, err
		}
		b.delete(workKey(epoch, addr))
		work, err := decodeWork(wraw)
		if err != nil {
			return nil, 0, fmt.Errorf("ledger: work record of %s in epoch %d: %w", addr, epoch, err)
		}
		a, ok, err := b.account(addr)
		if err != nil {
			return nil, 0, err
		}
		if !ok || !a.Has(RoleProvider) || a.Jailed || a.Stake < b.params.MinProviderStake || work.Paid == 0 {
			continue
		}
		rec, err := b.providerRecord(addr)
		if err != nil {
			return nil, 0, err
		}
		rep := rec.Reputation()
		w := satMul(uint64(work.Paid), rep) / 1_000
		if w == 0 {
			continue
		}
		out = append(out, capped{share: share{addr: addr, weight: w}, cap: b.params.RewardCap(work, rep)})
		total = satAdd(total, uint64(work.Paid))
	}
	slices.SortFunc(out, func(x, y capped) int { return cmp.Compare(x.addr, y.addr) })
	return out, total, nil
}

// verifierShares weighs every verifier that is not jailed and is staked at
// least the minimum by its stake.
func (b *Block) verifierShares() ([]share, error) {
	addrs, err := b.verifiers()
	if err != nil {
		return nil, err
	}
	var out []share
	for _, addr := range addrs {
		a, ok, err := b.account(addr)
		if err != nil {
			return nil, err
		}
		if ok && a.Has(RoleVerifier) && !a.Jailed && a.Stake >= b.params.MinVerifierStake && a.Stake > 0 {
			out = append(out, share{addr: addr, weight: uint64(a.Stake)})
		}
	}
	return out, nil
}

// payReward credits a reward: into a vesting schedule from this height over
// VestingBlocks, or straight to the balance when rewards do not vest (and
// always for the treasury, which nobody can slash). What has vested of the
// account's earlier schedules is paid out on the way, which keeps the list
// of schedules short.
func (b *Block) payReward(addr keys.Address, amount money.Amount) error {
	a, _, err := b.account(addr)
	if err != nil {
		return err
	}
	a.releaseVested(b.height)
	if b.params.VestingBlocks == 0 || addr == TreasuryAddress {
		a.Balance += amount // newly minted below the cap: no overflow
	} else {
		a.Vesting = append(a.Vesting, Vest{Amount: amount, Start: b.height, End: b.height + b.params.VestingBlocks})
	}
	b.putAccount(addr, &a)
	return nil
}

// Epoch returns the record of a finished epoch.
func (v View) Epoch(n uint64) (EpochRecord, bool, error) {
	raw, err := v.R.Get([]byte(epochRecordKey(n)))
	if err != nil || raw == nil {
		return EpochRecord{}, false, err
	}
	r, err := decodeEpochRecord(raw)
	return r, err == nil, err
}

// EpochState returns the running epoch.
func (v View) EpochState() (EpochState, error) {
	raw, err := v.R.Get([]byte(keyEpoch))
	if err != nil {
		return EpochState{}, err
	}
	return decodeEpochState(raw)
}

// PayoutProof proves one payout against its epoch's root.
type PayoutProof struct {
	Payout Payout `json:"payout"`
	// Index is the payout's leaf index among Size leaves.
	Index uint64 `json:"index"`
	Size  uint64 `json:"size"`
	// Path is the audit path from the leaf to Root.
	Path []receipt.Hash `json:"path"`
	Root receipt.Hash   `json:"root"`
}

// Verify checks that the proof's path leads from its payout to root. It
// trusts nothing in the proof but the path: root must come from the chain.
func (p *PayoutProof) Verify(root receipt.Hash) error {
	if p.Root != root {
		return fmt.Errorf("proof is for root %s, the epoch's root is %s", p.Root, root)
	}
	if err := receipt.VerifyMerkleProof(receipt.LeafHash(p.Payout.Leaf()), p.Index, p.Size, p.Path, root); err != nil {
		return fmt.Errorf("payout of %d to %s in epoch %d does not verify against root %s: %w", p.Payout.Amount, p.Payout.Account, p.Payout.Epoch, root, err)
	}
	return nil
}

// PayoutProof builds the proof of account's payout in a finished epoch; ok
// is false when the account was not paid in it.
func (v View) PayoutProof(epoch uint64, account keys.Address) (PayoutProof, bool, error) {
	rec, found, err := v.Epoch(epoch)
	if err != nil || !found {
		return PayoutProof{}, false, err
	}
	ps, err := v.Payouts(epoch)
	if err != nil {
		return PayoutProof{}, false, err
	}
	i, found := slices.BinarySearchFunc(ps, account, func(p Payout, a keys.Address) int { return cmp.Compare(p.Account, a) })
	if !found {
		return PayoutProof{}, false, nil
	}
	leaves := payoutLeafHashes(ps)
	path, err := receipt.MerkleProof(leaves, i)
	if err != nil {
		return PayoutProof{}, false, err
	}
	return PayoutProof{Payout: ps[i], Index: uint64(i), Size: uint64(len(ps)), Path: path, Root: rec.Root}, true, nil
}
