package ledger

import (
	"bytes"
	"crypto"
	_ "crypto/sha256" // registers SHA-256 for rfc6962.New
	"fmt"
	"math/big"
	"reflect"
	"slices"
	"strconv"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

func mustUint(tb testing.TB, s string) uint64 {
	tb.Helper()
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		tb.Fatalf("%q: %v", s, err)
	}
	return n
}

// rewardWorld is a chain with 10-block epochs:
//
//	gw      gateway (stake 50,000)
//	alice   consumer, balance 100,000,000, allows gw all of it
//	p1, p2  providers staked 1,000 (the minimum)
//	p3      funded, no role yet (joins mid-epoch)
//	ver1    verifier staked 5,000; ver2 verifier staked 15,000
//	val1-3  validators' reward accounts; cons1-3 their consensus keys
type rewardWorld struct {
	*testChain
	gw, alice, p1, p2, p3, ver1, ver2 keys.PrivateKey
	vals, cons                        []keys.PrivateKey
	nonce                             map[keys.Address]uint64
	nextID                            int
	cases                             map[receipt.Hash]BatchReceipt // evidence → the receipt its case names
}

const rewardGenesisSupply = 50_000 + 100_000_000 + 1_000 + 1_000 + 10_000 + 5_000 + 15_000

// Prices of the reward tests' receipts, per million tokens: a completion
// token pays 300,000 base units and a prompt token a quarter of that, so
// that small token counts pay enough for providers to earn the whole pool
// under rewardParams' caps.
const (
	rewardPricePrompt     money.Amount = 75_000_000_000
	rewardPriceCompletion money.Amount = 300_000_000_000
)

// rewardParams are testParams with 10-block epochs, and fees and a reward
// cap that let a provider earn up to 40 % of what it was paid (protocol
// fee 50 %, cap 4,000 bps): the tests of who earns what are not bound by
// the cap unless they say so.
func rewardParams() Params {
	p := testParams()
	p.ProtocolFeeBps, p.RewardMaxPaidBps = 5_000, 4_000
	p.EpochBlocks = 10
	p.EpochEmission = 1_000_000
	p.HalvingEpochs = 2
	p.VestingBlocks = 20
	return p
}

func newRewardWorld(tb testing.TB, p Params) *rewardWorld {
	tb.Helper()
	w := &rewardWorld{
		gw: testKey(tb, "gw"), alice: testKey(tb, "alice"),
		p1: testKey(tb, "p1"), p2: testKey(tb, "p2"), p3: testKey(tb, "p3"),
		ver1: testKey(tb, "ver1"), ver2: testKey(tb, "ver2"),
		nonce: map[keys.Address]uint64{},
	}
	g := Genesis{Params: p, Accounts: []GenesisAccount{
		{Address: addr(w.gw), PubKey: w.gw.Public(), Stake: 50_000, Roles: []string{"gateway"}},
		{Address: addr(w.alice), Balance: 100_000_000, Approvals: []GenesisApproval{{Gateway: addr(w.gw), Deposit: 100_000_000}}},
		{Address: addr(w.p1), PubKey: w.p1.Public(), Stake: 1_000, Roles: []string{"provider"}},
		{Address: addr(w.p2), PubKey: w.p2.Public(), Stake: 1_000, Roles: []string{"provider"}},
		{Address: addr(w.p3), Balance: 10_000},
		{Address: addr(w.ver1), PubKey: w.ver1.Public(), Stake: 5_000, Roles: []string{"verifier"}},
		{Address: addr(w.ver2), PubKey: w.ver2.Public(), Stake: 15_000, Roles: []string{"verifier"}},
	}}
	for i := range 3 {
		val, con := testKey(tb, fmt.Sprint("val", i)), testKey(tb, fmt.Sprint("cons", i))
		w.vals, w.cons = append(w.vals, val), append(w.cons, con)
		g.Validators = append(g.Validators, Validator{ConsensusKey: con.Public(), Account: addr(val)})
		g.Accounts = append(g.Accounts, GenesisAccount{Address: addr(val), PubKey: val.Public()})
	}
	w.testChain = newChain(tb, g)
	return w
}

// signedBy sets the validators whose signatures every later block carries.
func (w *rewardWorld) signedBy(idx ...int) {
	w.signers = nil
	for _, i := range idx {
		w.signers = append(w.signers, Validator{ConsensusKey: w.cons[i].Public()}.ConsensusAddress())
	}
}

func (w *rewardWorld) next(k keys.PrivateKey) uint64 {
	n := w.nonce[addr(k)]
	w.nonce[addr(k)]++
	return n
}

// serve settles one receipt per (provider, prompt, completion) triple in
// one block and fails unless all settle.
func (w *rewardWorld) serve(jobs ...job) blockRun {
	w.tb.Helper()
	var rs []BatchReceipt
	for _, j := range jobs {
		w.nextID++
		price := func(r *receipt.Receipt) {
			r.PricePromptPerMTok, r.PriceCompletionPerMTok = rewardPricePrompt, rewardPriceCompletion
			var err error
			if r.Amount, err = receipt.ComputeAmount(r.PromptTokens, r.CompletionTokens, rewardPricePrompt, rewardPriceCompletion); err != nil {
				w.tb.Fatal(err)
			}
		}
		rs = append(rs, batchReceipt(w.tb, w.gw, j.prov, addr(w.alice), fmt.Sprint("req-", w.nextID), j.prompt, j.completion, append([]func(*receipt.Receipt){price}, j.edit...)...))
	}
	run := w.block(settleTx(w.gw, w.next(w.gw), rs...))
	if res := run.results[0]; res.Code != CodeOK || attr(res.Events[0], "rejected") != "0" {
		w.tb.Fatalf("settle: code %d %s %+v", res.Code, res.Log, res.Events)
	}
	return run
}

type job struct {
	prov               keys.PrivateKey
	prompt, completion uint64
	edit               []func(*receipt.Receipt)
}

func (w *rewardWorld) epoch(n uint64) EpochRecord {
	w.tb.Helper()
	r, ok, err := w.view().Epoch(n)
	if err != nil || !ok {
		w.tb.Fatalf("epoch %d: %v %v", n, ok, err)
	}
	return r
}

func (w *rewardWorld) payouts(n uint64) map[keys.Address]money.Amount {
	w.tb.Helper()
	ps, err := w.view().Payouts(n)
	if err != nil {
		w.tb.Fatal(err)
	}
	out := map[keys.Address]money.Amount{}
	for _, p := range ps {
		out[p.Account] = p.Amount
	}
	return out
}

// TestEpochRewards follows one epoch by hand: providers paid by work units
// (what their receipts paid) with the remainder rule, verifiers by stake, validators by blocks signed,
// the treasury its share; rewards vest; the supply grows by what was
// minted; the root covers exactly the payouts.
func TestEpochRewards(t *testing.T) {
	w := newRewardWorld(t, rewardParams())
	w.signedBy(0, 1) // validator 2 is offline
	// Work units, the amounts paid: p1 10×300,000 + 100×75,000 =
	// 10,500,000, p2 7×300,000 = 2,100,000. Their caps (40 % of that)
	// do not bind.
	w.serve(job{prov: w.p1, prompt: 100, completion: 10}, job{prov: w.p2, completion: 7})
	w.signedBy(0) // later blocks carry only validator 0's signature
	w.serve(job{prov: w.p2, completion: 0})
	w.skipTo(9)
	if _, ok, _ := w.view().Epoch(1); ok {
		t.Fatal("epoch 1 ended before its last block")
	}
	run := w.block()
	if len(run.end) != 1 || run.end[0].Type != "epoch_end" {
		t.Fatalf("block 10 events %+v, want epoch_end", run.end)
	}
	rec := w.epoch(1)
	// Providers: 700,000 × 10.5/12.6 = 583,333.33 and × 2.1/12.6 =
	// 116,666.67; the unit left over goes to the larger remainder (p2).
	// Verifiers: 150,000 by stake 1:3. Validators: 100,000 by blocks signed,
	// 2:1 (validator 0 signed both blocks with transactions, validator 1 the
	// first, empty blocks do not count). Treasury: 50,000.
	want := map[keys.Address]money.Amount{
		addr(w.p1): 583_333, addr(w.p2): 116_667,
		addr(w.ver1): 37_500, addr(w.ver2): 112_500,
		addr(w.vals[0]): 66_667, addr(w.vals[1]): 33_333,
		TreasuryAddress: 50_000,
	}
	if got := w.payouts(1); !reflect.DeepEqual(got, want) {
		t.Fatalf("payouts\n got %v\nwant %v", got, want)
	}
	wantRec := EpochRecord{Number: 1, Start: 1, End: 10, Scheduled: 1_000_000, Minted: 1_000_000,
		Providers: 700_000, Verifiers: 150_000, Validators: 100_000, Treasury: 50_000, Work: 12_600_000, Payees: 7}
	ps, _ := w.view().Payouts(1)
	wantRec.Root = PayoutRoot(ps)
	if rec != wantRec {
		t.Fatalf("record\n got %+v\nwant %+v", rec, wantRec)
	}
	if attr(run.end[0], "root") != rec.Root.String() || attr(run.end[0], "minted") != "1000000" {
		t.Errorf("event %+v", run.end[0])
	}
	s := w.supply()
	if s.Total != rewardGenesisSupply+1_000_000 || s.Minted != s.Total || s.NodeRewards != 850_000 {
		t.Errorf("supply %+v", s)
	}
	w.checkSupply(rewardGenesisSupply + 1_000_000)
	// Rewards vest from height 10 to 30; the treasury is paid at once.
	if got := w.account(addr(w.p1)).Vesting; !reflect.DeepEqual(got, []Vest{{Amount: 583_333, Start: 10, End: 30}}) {
		t.Errorf("p1 vesting %+v", got)
	}
	if tr := w.account(TreasuryAddress); tr.Balance < 50_000 || len(tr.Vesting) != 0 {
		t.Errorf("treasury %+v", tr)
	}
	if st, _ := w.view().EpochState(); st.Number != 2 || st.Start != 11 || !slices.Equal(st.Signed, []uint64{0, 0, 0}) {
		t.Errorf("next epoch %+v", st)
	}
	// The epoch's work records are gone; only its record and payouts stay.
	for k := range w.state {
		if k[:2] == prefixWork || k[:2] == prefixWorkList {
			t.Errorf("work key %q left after the epoch", k)
		}
	}
}

// TestSplitSumsExactly: payouts always add up to the pool, each within one
// unit of its exact share, and the leftover units go to the largest
// remainders.
func TestSplitSumsExactly(t *testing.T) {
	pools := []money.Amount{0, 1, 7, 999_999_937, 1 << 62}
	weights := [][]uint64{{1}, {1, 1, 1}, {3, 5, 7, 11}, {1 << 63, 1 << 63, 1}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}}
	for _, pool := range pools {
		for _, ws := range weights {
			var shares []share
			total := new(big.Int)
			for i, w := range ws {
				shares = append(shares, share{addr: keys.Address(fmt.Sprint("a", i)), weight: w})
				total.Add(total, new(big.Int).SetUint64(w))
			}
			got := split(pool, shares)
			if pool == 0 {
				if got != nil {
					t.Errorf("pool 0: %v", got)
				}
				continue
			}
			var sum money.Amount
			for i, a := range got {
				sum += a
				exact := new(big.Rat).SetFrac(new(big.Int).Mul(new(big.Int).SetUint64(uint64(pool)), new(big.Int).SetUint64(ws[i])), total)
				diff := new(big.Rat).Sub(new(big.Rat).SetUint64(uint64(a)), exact)
				if diff.Cmp(big.NewRat(-1, 1)) <= 0 || diff.Cmp(big.NewRat(1, 1)) >= 0 {
					t.Errorf("pool %d weights %v: share %d = %d, exact %s", pool, ws, i, a, exact.FloatString(3))
				}
			}
			if sum != pool {
				t.Errorf("pool %d weights %v: shares %v sum to %d", pool, ws, got, sum)
			}
		}
	}
	if got := split(100, []share{{addr: "a", weight: 0}}); got != nil {
		t.Errorf("zero weights: %v", got)
	}
}

// TestVesting checks VestedAt at its boundaries and the claim transaction.
func TestVesting(t *testing.T) {
	v := Vest{Amount: 1_000, Start: 10, End: 30}
	for h, want := range map[uint64]money.Amount{0: 0, 10: 0, 11: 50, 20: 500, 29: 950, 30: 1_000, 1 << 40: 1_000} {
		if got := v.VestedAt(h); got != want {
			t.Errorf("VestedAt(%d) = %d, want %d", h, got, want)
		}
	}
	odd := Vest{Amount: 7, Start: 0, End: 3}
	if got := []money.Amount{odd.VestedAt(1), odd.VestedAt(2), odd.VestedAt(3)}; !slices.Equal(got, []money.Amount{2, 4, 7}) {
		t.Errorf("7 over 3 blocks vests %v, want rounded down until the end", got)
	}

	w := newRewardWorld(t, rewardParams())
	w.serve(job{prov: w.p1, completion: 10})
	w.skipTo(10) // epoch 1 ends: p1 earns the whole provider pool, 700,000
	if got := w.account(addr(w.p1)).Vesting; !reflect.DeepEqual(got, []Vest{{Amount: 700_000, Start: 10, End: 30}}) {
		t.Fatalf("vesting %+v", got)
	}
	claim := func(k keys.PrivateKey) Result {
		return w.apply(signTx(k, Tx{Kind: KindClaim, Nonce: w.next(k)}))
	}
	w.skipTo(19)
	// Its share of the receipt, out of escrow by now.
	fees := w.account(addr(w.p1)).Balance
	// At height 20 half has vested.
	if res := claim(w.p1); res.Code != CodeOK || attr(res.Events[0], "amount") != "350000" {
		t.Fatalf("claim at 20: %d %s %+v", res.Code, res.Log, res.Events)
	}
	if a := w.account(addr(w.p1)); a.Balance != fees+350_000 || a.Claimable(20) != 0 || a.Unvested(20) != 350_000 {
		t.Errorf("after claim: %+v", a)
	}
	if res := claim(w.p1); res.Code != CodeOK || attr(res.Events[0], "amount") != "35000" { // height 21: 1/20 more
		t.Fatalf("claim at 21: %d %s %+v", res.Code, res.Log, res.Events)
	}
	if res := claim(w.alice); res.Code != CodeInvalid {
		t.Errorf("claim with nothing vesting: code %d", res.Code)
	}
	// Epoch 2 (heights 11-20) had no work: p1 is not a payee, its schedule
	// runs on. At 30 the rest vests and the schedule is dropped.
	w.skipTo(33)
	if res := claim(w.p1); res.Code != CodeOK || attr(res.Events[0], "amount") != "315000" {
		t.Fatalf("claim at 34: %d %s %+v", res.Code, res.Log, res.Events)
	}
	if a := w.account(addr(w.p1)); a.Balance != fees+700_000 || len(a.Vesting) != 0 {
		t.Errorf("after vesting: %+v", a)
	}
	if res := claim(w.p1); res.Code != CodeInvalid {
		t.Errorf("second claim after full vesting: code %d", res.Code)
	}
	w.checkSupply(w.supply().Total)
}

// TestZeroWorkEpoch: with no settled work and no validator signatures,
// the provider and validator pools are not minted at all; the verifiers and
// the treasury are still paid.
func TestZeroWorkEpoch(t *testing.T) {
	w := newRewardWorld(t, rewardParams())
	w.skipTo(10)
	rec := w.epoch(1)
	if rec.Providers != 0 || rec.Validators != 0 || rec.Verifiers != 150_000 || rec.Treasury != 50_000 || rec.Minted != 200_000 || rec.Scheduled != 1_000_000 {
		t.Errorf("record %+v", rec)
	}
	w.checkSupply(rewardGenesisSupply + 200_000)
	if s := w.supply(); s.NodeRewards != 150_000 {
		t.Errorf("supply %+v", s)
	}
}

// TestWhoEarns: a provider that joins mid-epoch earns for its work; one
// jailed or staked below the minimum at the epoch's end earns nothing; a
// receipt that pays nothing earns no work, however many tokens it claims;
// the model a receipt names does not weigh its work (a fabricated receipt
// can name any model): only what it paid does.
func TestWhoEarns(t *testing.T) {
	p := rewardParams()
	w := newRewardWorld(t, p)
	free := func(r *receipt.Receipt) { r.PricePromptPerMTok, r.PriceCompletionPerMTok, r.Amount = 0, 0, 0 }
	big := func(r *receipt.Receipt) { r.Model = "llama3.3:70b" }
	w.serve(job{prov: w.p1, completion: 10}, job{prov: w.p2, completion: 10}, job{prov: w.p2, completion: 1_000_000, edit: []func(*receipt.Receipt){free}})
	w.block(registerTx(w.p3, w.next(w.p3), RoleProvider, ""))
	w.block(stakeTx(w.p3, w.next(w.p3), 1_000))
	w.serve(job{prov: w.p3, completion: 3, edit: []func(*receipt.Receipt){big}})
	// p2 unstakes below the minimum before the epoch ends.
	w.block(unstakeTx(w.p2, w.next(w.p2), 1))
	w.skipTo(10)
	// p1 paid 3,000,000, p3 900,000; p2 excluded. 700,000 × 3/3.9 =
	// 538,461.54 and × 0.9/3.9 = 161,538.46.
	got := w.payouts(1)
	if got[addr(w.p1)] != 538_462 || got[addr(w.p3)] != 161_538 || got[addr(w.p2)] != 0 {
		t.Errorf("payouts %v", got)
	}
	if rec := w.epoch(1); rec.Work != 3_900_000 || rec.Providers != 700_000 {
		t.Errorf("record %+v", rec)
	}
	// A jailed provider (set by verdicts, written directly here) earns
	// nothing; the pool goes to the others.
	w.serve(job{prov: w.p1, completion: 10}, job{prov: w.p3, completion: 10})
	a := w.account(addr(w.p3))
	a.Jailed = true
	w.putAccount(addr(w.p3), a)
	w.skipTo(20)
	if got := w.payouts(2); got[addr(w.p3)] != 0 || got[addr(w.p1)] != 700_000 {
		t.Errorf("epoch 2 payouts %v", got)
	}
}

// TestRewardCap: under the default fee and cap (protocol fee 100 bps, cap
// 50 bps), a provider earns at most half the protocol fees its receipts
// paid, however large the pool, and what no provider can take is not
// minted; when the pool is smaller than the caps, it is split by work.
func TestRewardCap(t *testing.T) {
	p := rewardParams()
	p.ProtocolFeeBps, p.RewardMaxPaidBps = 100, 50
	p.EpochEmission = 100_000 // provider pool 70,000
	w := newRewardWorld(t, p)
	// p1 pays 300,000 (fees 3,000, cap 1,500), p2 600,000 (cap 3,000).
	w.serve(job{prov: w.p1, completion: 1}, job{prov: w.p2, completion: 2})
	w.skipTo(10)
	// Proportional shares would be 23,333 and 46,667: both get their caps.
	if got := w.payouts(1); got[addr(w.p1)] != 1_500 || got[addr(w.p2)] != 3_000 {
		t.Errorf("payouts %v", got)
	}
	if rec := w.epoch(1); rec.Providers != 4_500 || rec.Minted != 4_500+15_000+5_000 || rec.Work != 900_000 {
		t.Errorf("record %+v", rec)
	}
	// Epoch 2: p1 pays 3,000,000 (cap 15,000), p2 30,000,000 (cap
	// 150,000): the pool binds and is split 3:30.
	w.serve(job{prov: w.p1, completion: 10}, job{prov: w.p2, completion: 100})
	w.skipTo(20)
	if got := w.payouts(2); got[addr(w.p1)] != 6_364 || got[addr(w.p2)] != 63_636 {
		t.Errorf("epoch 2 payouts %v", got)
	}
	if rec := w.epoch(2); rec.Providers != 70_000 {
		t.Errorf("epoch 2 record %+v", rec)
	}
	w.checkSupply(w.supply().Total)
}

// TestSplitCapped: nobody gets more than its cap; shares below their caps
// keep the proportions of their weights; the amounts sum to the pool when
// the caps allow it, and to the caps' sum when they do not.
func TestSplitCapped(t *testing.T) {
	c := func(a string, w uint64, cap money.Amount) capped {
		return capped{share: share{addr: keys.Address(a), weight: w}, cap: cap}
	}
	for _, tc := range []struct {
		pool   money.Amount
		shares []capped
		want   []money.Amount
	}{
		{100, []capped{c("a", 1, 10), c("b", 1, 1_000)}, []money.Amount{10, 90}},
		{100, []capped{c("a", 1, 10), c("b", 1, 20)}, []money.Amount{10, 20}},
		{100, []capped{c("a", 1, 0), c("b", 3, 1_000)}, []money.Amount{0, 100}},
		{100, []capped{c("a", 1, 100), c("b", 1, 100), c("c", 1, 100)}, []money.Amount{34, 33, 33}},
		{0, []capped{c("a", 1, 100)}, []money.Amount{0}},
		{100, []capped{c("a", 0, 100)}, []money.Amount{0}},
		{1 << 62, []capped{c("a", 1<<63, 1<<61), c("b", 1<<63, 1<<62), c("c", 1, 1<<62)}, []money.Amount{1 << 61, 1<<62 - 1<<61, 0}},
	} {
		got := splitCapped(tc.pool, tc.shares)
		if !slices.Equal(got, tc.want) {
			t.Errorf("pool %d %v: got %v, want %v", tc.pool, tc.shares, got, tc.want)
		}
		var sum money.Amount
		for i, a := range got {
			if a > tc.shares[i].cap {
				t.Errorf("pool %d %v: share %d gets %d above its cap", tc.pool, tc.shares, i, a)
			}
			sum += a
		}
		if sum > tc.pool {
			t.Errorf("pool %d %v: pays %d", tc.pool, tc.shares, sum)
		}
	}
}

// TestEmissionNeverExceedsCap runs 10,000 one-block epochs through the real
// state machine with a schedule that would mint far more than the cap: the
// minted supply never passes the cap, reaches it exactly, and the accounts
// always add up to the supply.
func TestEmissionNeverExceedsCap(t *testing.T) {
	p := rewardParams()
	p.EpochBlocks, p.VestingBlocks = 1, 50
	p.SupplyCap = 300_000_000
	p.EpochEmission, p.HalvingEpochs = 1_000_000, 200 // the schedule totals ~400,000,000
	// Every pool has payees (verifiers and the treasury), so nothing is
	// left unminted and the cap is reached.
	p.ProviderRewardBps, p.VerifierRewardBps, p.ValidatorRewardBps, p.TreasuryRewardBps = 0, 8_500, 0, 1_500
	w := newRewardWorld(t, p)
	prev := w.supply().Minted
	capReached := uint64(0)
	for e := uint64(1); e <= 10_000; e++ {
		w.block()
		s := w.supply()
		if s.Minted > p.SupplyCap || s.Minted < prev {
			t.Fatalf("epoch %d: minted %d (before %d), cap %d", e, s.Minted, prev, p.SupplyCap)
		}
		if rec := w.epoch(e); rec.Minted != s.Minted-prev || rec.Scheduled != p.Emission(e) {
			t.Fatalf("epoch %d: record %+v, minted %d", e, rec, s.Minted-prev)
		}
		if s.Minted == p.SupplyCap && capReached == 0 {
			capReached = e
		}
		prev = s.Minted
		if e%1000 == 0 {
			w.checkSupply(s.Total)
		}
	}
	if capReached == 0 {
		t.Fatalf("minted %d after 10,000 epochs, never reached the cap %d", prev, p.SupplyCap)
	}
	t.Logf("cap reached in epoch %d", capReached)
	// The schedule on its own, with the default parameters: it halves to
	// zero and its total stays under the cap.
	d := DefaultParams()
	var total money.Amount
	for e := uint64(1); e <= 100_000; e++ {
		total += d.Emission(e)
	}
	if total > d.SupplyCap || d.Emission(64*d.HalvingEpochs+1) != 0 {
		t.Errorf("default schedule totals %d over 100,000 epochs, cap %d", total, d.SupplyCap)
	}
}

// TestPayoutProofs: every payout's proof verifies against the epoch root;
// a changed amount, account, epoch or root does not; the root and proofs
// match transparency-dev/merkle's RFC 6962 implementation.
func TestPayoutProofs(t *testing.T) {
	w := newRewardWorld(t, rewardParams())
	w.signedBy(0, 1, 2)
	w.serve(job{prov: w.p1, completion: 10}, job{prov: w.p2, completion: 13})
	w.skipTo(10)
	rec := w.epoch(1)
	ps, err := w.view().Payouts(1)
	if err != nil || len(ps) != int(rec.Payees) || len(ps) != 8 {
		t.Fatalf("payouts %v %v", ps, err)
	}
	hasher := rfc6962.New(crypto.SHA256)
	ref := testonly.New(hasher)
	for _, p := range ps {
		ref.AppendData(p.Leaf())
	}
	if !bytes.Equal(ref.Hash(), rec.Root[:]) {
		t.Fatalf("root %s, transparency-dev computes %x", rec.Root, ref.Hash())
	}
	for i, p := range ps {
		pr, ok, err := w.view().PayoutProof(1, p.Account)
		if err != nil || !ok || pr.Payout != p || pr.Index != uint64(i) || pr.Size != uint64(len(ps)) {
			t.Fatalf("proof of %s: %+v %v %v", p.Account, pr, ok, err)
		}
		if err := pr.Verify(rec.Root); err != nil {
			t.Fatalf("proof of %s: %v", p.Account, err)
		}
		raw := make([][]byte, len(pr.Path))
		for j := range pr.Path {
			raw[j] = pr.Path[j][:]
		}
		if err := proof.VerifyInclusion(hasher, pr.Index, pr.Size, hasher.HashLeaf(p.Leaf()), raw, rec.Root[:]); err != nil {
			t.Fatalf("transparency-dev rejects the proof of %s: %v", p.Account, err)
		}
		for name, f := range map[string]func(*PayoutProof){
			"amount":  func(q *PayoutProof) { q.Payout.Amount++ },
			"account": func(q *PayoutProof) { q.Payout.Account = addr(w.alice) },
			"epoch":   func(q *PayoutProof) { q.Payout.Epoch = 2 },
			"index":   func(q *PayoutProof) { q.Index = (q.Index + 1) % q.Size },
		} {
			q := pr
			q.Path = slices.Clone(pr.Path)
			f(&q)
			if err := q.Verify(rec.Root); err == nil {
				t.Errorf("proof of %s with another %s verifies", p.Account, name)
			}
		}
		other := rec.Root
		other[0] ^= 1
		if err := pr.Verify(other); err == nil {
			t.Error("proof verifies against another root")
		}
	}
	if _, ok, err := w.view().PayoutProof(1, addr(w.alice)); ok || err != nil {
		t.Errorf("proof for an account not paid: %v %v", ok, err)
	}
	if _, ok, err := w.view().PayoutProof(7, addr(w.p1)); ok || err != nil {
		t.Errorf("proof for an epoch not ended: %v %v", ok, err)
	}
}

// TestSignaturesOnlyInBlocksWithTxs: a block without transactions changes
// nothing even though its commit carries signatures, so CometBFT's block
// after a state change does not make another one.
func TestSignaturesOnlyInBlocksWithTxs(t *testing.T) {
	w := newRewardWorld(t, rewardParams())
	w.signedBy(0, 1, 2)
	if run := w.block(); len(run.changes) != 0 {
		t.Errorf("an empty block changed %d keys", len(run.changes))
	}
	w.block(transferTx(w.p3, w.next(w.p3), addr(w.alice), 1))
	if st, _ := w.view().EpochState(); !slices.Equal(st.Signed, []uint64{1, 1, 1}) {
		t.Errorf("signed %v", st.Signed)
	}
}

// TestParamsChange: new parameters need more than two thirds of the
// validators' approvals for the current version; the cap cannot change;
// node rewards keep at least half of all supply; approvals cannot be
// replayed.
func TestParamsChange(t *testing.T) {
	w := newRewardWorld(t, rewardParams())
	newP := rewardParams()
	newP.EpochEmission = 2_000_000
	send := func(p Params, signers ...keys.PrivateKey) Result {
		var as []Approval
		for _, k := range signers {
			as = append(as, ApproveParams(k, testChainID, 0, &p))
		}
		return w.apply(signTx(w.p3, Tx{Kind: KindParams, Nonce: w.next(w.p3), Params: p, Approvals: as}))
	}
	if res := send(newP, w.vals[0], w.vals[1]); res.Code != CodeInvalid {
		t.Errorf("2 of 3 approvals: code %d %s", res.Code, res.Log)
	}
	if res := send(newP, w.vals[0], w.vals[1], w.alice); res.Code != CodeInvalid {
		t.Errorf("an approval by a non-validator: code %d %s", res.Code, res.Log)
	}
	if res := send(newP, w.vals[0], w.vals[1], w.vals[1]); res.Code != CodeInvalid {
		t.Errorf("the same validator twice: code %d %s", res.Code, res.Log)
	}
	capped := newP
	capped.SupplyCap++
	if res := send(capped, w.vals...); res.Code != CodeInvalid {
		t.Errorf("cap change: code %d %s", res.Code, res.Log)
	}
	greedy := newP
	greedy.ProviderRewardBps, greedy.VerifierRewardBps, greedy.TreasuryRewardBps = 2_000, 1_000, 6_000
	if res := send(greedy, w.vals...); res.Code != CodeInvalid {
		t.Errorf("shares leaving less than half to node rewards: code %d %s", res.Code, res.Log)
	}
	// An approval signed for other parameters does not carry over.
	forged := []Approval{ApproveParams(w.vals[0], testChainID, 0, &capped), ApproveParams(w.vals[1], testChainID, 0, &newP), ApproveParams(w.vals[2], testChainID, 0, &newP)}
	if res := w.apply(signTx(w.p3, Tx{Kind: KindParams, Nonce: w.next(w.p3), Params: newP, Approvals: forged})); res.Code != CodeBadSignature {
		t.Errorf("approval of other params: code %d %s", res.Code, res.Log)
	}
	if p, _ := w.view().Params(); !reflect.DeepEqual(p, rewardParams()) {
		t.Fatal("params changed by a rejected transaction")
	}
	if res := send(newP, w.vals...); res.Code != CodeOK {
		t.Fatalf("3 of 3 approvals: code %d %s", res.Code, res.Log)
	}
	if p, _ := w.view().Params(); !reflect.DeepEqual(p, newP) {
		t.Errorf("params %+v", p)
	}
	if v, _ := w.view().ParamsVersion(); v != 1 {
		t.Errorf("version %d", v)
	}
	// The same approvals again (version 0) no longer verify.
	if res := send(newP, w.vals...); res.Code != CodeBadSignature {
		t.Errorf("replayed approvals: code %d %s", res.Code, res.Log)
	}
	w.skipTo(10)
	if rec := w.epoch(1); rec.Scheduled != 2_000_000 {
		t.Errorf("epoch 1 scheduled %d after the change", rec.Scheduled)
	}
	if !QuorumMet(3, 4) || QuorumMet(2, 3) || !QuorumMet(3, 3) || QuorumMet(0, 0) {
		t.Error("QuorumMet")
	}
}

// TestGenesisReservesHalf: genesis refuses allocations that exceed the cap
// or leave less than half of all supply to node rewards.
func TestGenesisReservesHalf(t *testing.T) {
	p := rewardParams()
	p.SupplyCap = 1_000_000
	a := testKey(t, "a")
	for _, tc := range []struct {
		balance money.Amount
		ok      bool
	}{
		{0, true},
		{400_000, true},  // 600,000 × 85% = 510,000 left for nodes
		{420_000, false}, // 580,000 × 85% = 493,000
		{1_000_001, false},
	} {
		g := Genesis{Params: p, Accounts: []GenesisAccount{{Address: addr(a), Balance: tc.balance,
			Vesting: []GenesisVesting{{Amount: 0, StartHeight: 0, EndHeight: 10}}}}}
		if err := g.Validate(); (err == nil) != tc.ok {
			t.Errorf("allocation %d: %v", tc.balance, err)
		}
	}
	// A team allocation vests and counts against the cap from genesis.
	g := Genesis{Params: p, Accounts: []GenesisAccount{{Address: addr(a), Balance: 100_000,
		Vesting: []GenesisVesting{{Amount: 300_000, StartHeight: 0, EndHeight: 1_000}}}}}
	c := newChain(t, g)
	if acct := c.account(addr(a)); acct.Claimable(500) != 150_000 || acct.Unvested(500) != 150_000 {
		t.Errorf("team account %+v", acct)
	}
	c.checkSupply(400_000)
	g.Accounts[0].Vesting[0].Amount = 320_000
	if err := g.Validate(); err == nil {
		t.Error("a vesting allocation beyond the reserve was accepted")
	}
	g.Accounts[0].Vesting[0] = GenesisVesting{Amount: 1, StartHeight: 5, EndHeight: 5}
	if err := g.Validate(); err == nil {
		t.Error("an empty vesting period was accepted")
	}
}
