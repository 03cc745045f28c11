package ledger

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// randomRun drives a chain with random transactions, many of them invalid,
// and settle-batches mixing good and bad receipts.
type randomRun struct {
	tb        testing.TB
	rng       *rand.Rand
	c         *testChain
	consumers []keys.PrivateKey
	gws       []keys.PrivateKey // gws[0] is staked, gws[1] is not
	provs     []keys.PrivateKey // provs[2] is under-staked
	verifiers []keys.PrivateKey
	senders   []keys.PrivateKey // everyone with an account
	stranger  keys.PrivateKey
	nonce     map[keys.Address]uint64 // next nonce, counting this block's txs
	nextID    int
	// convictions and slashes count what the run provoked.
	convictions, slashes int
	ids                  []string       // request ids used so far
	made                 []BatchReceipt // receipts put into batches, settled or not
	judged               []BatchReceipt // receipts verdicts named
	judgedBy             []keys.Address // and who named them
	supply               money.Amount
}

func newRandomRun(tb testing.TB, seed uint64) *randomRun {
	tb.Helper()
	r := &randomRun{tb: tb, rng: rand.New(rand.NewPCG(seed, 0x1d1e)), nonce: map[keys.Address]uint64{}}
	for i := range 5 {
		r.consumers = append(r.consumers, testKey(tb, fmt.Sprintf("consumer-%d", i)))
	}
	r.gws = []keys.PrivateKey{testKey(tb, "gw-0"), testKey(tb, "gw-1")}
	r.provs = []keys.PrivateKey{testKey(tb, "prov-0"), testKey(tb, "prov-1"), testKey(tb, "prov-2")}
	r.stranger = testKey(tb, "stranger")
	r.verifiers = []keys.PrivateKey{testKey(tb, "verifier-0"), testKey(tb, "verifier-1"), testKey(tb, "verifier-2")}
	p := testParams()
	p.VerdictQuorum, p.ConvictFailures, p.JailBlocks, p.VerdictDelayBlocks = 1, 2, 10, 10 // split verdicts slash, convictions happen
	p.EscrowBlocks, p.UnbondingBlocks, p.MaxBatchReceipts = 3, 11, 10
	p.EpochBlocks, p.VestingBlocks = 7, 5 // epochs end and rewards vest all along
	g := Genesis{Params: p}
	for i, k := range r.consumers {
		ga := GenesisAccount{Address: addr(k), Balance: []money.Amount{200_000, 200_000, 50_000, 10_000, 500}[i]}
		if i != 2 {
			ga.Approvals = []GenesisApproval{{Gateway: addr(r.gws[0]), Deposit: []money.Amount{100_000, 200_000, 0, 1_000, 500}[i]}}
		}
		g.Accounts = append(g.Accounts, ga)
	}
	for i, k := range r.gws {
		g.Accounts = append(g.Accounts, GenesisAccount{Address: addr(k), PubKey: k.Public(), Balance: 5_000, Stake: []money.Amount{1_000_000, 5_000}[i], Roles: []string{"gateway"}})
	}
	for i, k := range r.provs {
		g.Accounts = append(g.Accounts, GenesisAccount{Address: addr(k), PubKey: k.Public(), Stake: []money.Amount{2_000, 1_000, 500}[i], Roles: []string{"provider"}})
	}
	for _, k := range r.verifiers {
		g.Accounts = append(g.Accounts, GenesisAccount{Address: addr(k), PubKey: k.Public(), Stake: 50_000, Roles: []string{"verifier"}})
	}
	r.senders = append(append(append(append([]keys.PrivateKey{}, r.consumers...), r.gws...), r.provs...), r.verifiers...)
	r.c = newChain(tb, g)
	r.supply = r.c.supply().Total
	return r
}

func (r *randomRun) pick(ks []keys.PrivateKey) keys.PrivateKey { return ks[r.rng.IntN(len(ks))] }

func (r *randomRun) amount(max uint64) money.Amount {
	if r.rng.IntN(20) == 0 {
		return 0
	}
	return money.Amount(r.rng.Uint64N(max))
}

// precheckCodes are the results of a transaction that did not spend its
// nonce.
var precheckCodes = map[uint32]bool{CodeMalformed: true, CodeWrongChain: true, CodeBadSignature: true, CodeBadNonce: true, CodeUnknownAccount: true}

// block makes and applies up to maxTxs random transactions in one block and
// checks the invariants after it.
func (r *randomRun) block(maxTxs int) blockRun {
	r.tb.Helper()
	run := r.c.blockWith(func(apply func([]byte) Result) {
		for range r.rng.IntN(maxTxs + 1) {
			sender, tx := r.tx(r.pick(r.senders))
			res := apply(tx)
			if res.Code > CodeBadBatch {
				r.tb.Fatalf("unknown code %d", res.Code)
			}
			if !precheckCodes[res.Code] {
				r.nonce[addr(sender)]++
			}
		}
	})
	r.check(run)
	return run
}

// checkRewardCaps verifies that no provider earned more in an epoch than
// its cap, below the protocol fees its receipts settled in the epoch paid:
// nobody profits from paying itself.
func (r *randomRun) checkRewardCaps(epoch uint64) {
	r.tb.Helper()
	rec, ok, err := r.c.view().Epoch(epoch)
	if err != nil || !ok {
		r.tb.Fatalf("epoch %d: %v %v", epoch, ok, err)
	}
	p := r.c.params(r.tb)
	fees := map[keys.Address]money.Amount{}
	for k, v := range r.c.state {
		if !strings.HasPrefix(k, prefixReceipt) {
			continue
		}
		s, err := decodeSettlement(v)
		if err != nil {
			r.tb.Fatal(err)
		}
		if s.Height >= rec.Start && s.Height <= rec.End {
			fee, _ := s.Amount.MulDiv(uint64(p.ProtocolFeeBps), 10_000)
			fees[s.Provider.Address()] += fee
		}
	}
	ps, err := r.c.view().Payouts(epoch)
	if err != nil {
		r.tb.Fatal(err)
	}
	for _, pay := range ps {
		a := r.c.account(pay.Account)
		for _, k := range r.provs {
			// A provider that is also a verifier is paid from both pools.
			if pay.Account == addr(k) && !a.Has(RoleVerifier) {
				if limit := p.RewardCap(Work{Fees: fees[pay.Account]}, 1_000); pay.Amount > limit || (pay.Amount > 0 && pay.Amount >= fees[pay.Account]) {
					r.tb.Fatalf("epoch %d: provider %s earned %d, its receipts paid %d in protocol fees (cap %d)", epoch, pay.Account, pay.Amount, fees[pay.Account], limit)
				}
			}
		}
	}
}

// check verifies the invariants of committed state after a block.
func (r *randomRun) check(run blockRun) {
	r.tb.Helper()
	for _, e := range run.end {
		if e.Type == "epoch_end" {
			r.supply += money.Amount(mustUint(r.tb, attr(e, "minted")))
			r.checkRewardCaps(mustUint(r.tb, attr(e, "epoch")))
		}
	}
	burns := run.begin
	for _, res := range run.results {
		burns = append(burns, res.Events...)
	}
	for _, e := range burns {
		switch e.Type {
		case "convicted":
			r.supply -= money.Amount(mustUint(r.tb, attr(e, "burned")))
			r.convictions++
		case "verifier_slashed":
			r.supply -= money.Amount(mustUint(r.tb, attr(e, "amount")))
			r.slashes++
		}
	}
	r.c.checkSupply(r.supply)
	if s := r.c.supply(); s.Minted > r.c.params(r.tb).SupplyCap {
		r.tb.Fatalf("height %d: minted %d above the cap", run.height, s.Minted)
	}
	for k, v := range r.c.state {
		switch {
		case strings.HasPrefix(k, prefixAccount):
			a, err := decodeAccount(v)
			if err != nil {
				r.tb.Fatal(err)
			}
			for _, e := range a.Escrow {
				if e.Height <= run.height || e.Amount == 0 {
					r.tb.Fatalf("height %d: %s holds escrow %+v that should have been released", run.height, k, e)
				}
			}
		case strings.HasPrefix(k, prefixDue):
			if h := binary.BigEndian.Uint64([]byte(k[len(prefixDue):])); h <= run.height {
				r.tb.Fatalf("height %d: due list of height %d left behind", run.height, h)
			}
		}
	}
}

// tx makes a transaction, usually from sender; it returns who signed it.
func (r *randomRun) tx(sender keys.PrivateKey) (keys.PrivateKey, []byte) {
	nonce := r.nonce[addr(sender)]
	anyone := append(append([]keys.PrivateKey{}, r.senders...), r.stranger)
	switch n := r.rng.IntN(28); {
	case n >= 24:
		// Verdicts on recent receipts (settled or not), naming their
		// provider (sometimes another) or made-up evidence: splits,
		// repeats, refused and closed cases.
		v := r.pick(r.verifiers)
		if len(r.made) == 0 || r.rng.IntN(10) == 0 {
			return v, signTx(v, Tx{Kind: KindVerdict, Nonce: r.nonce[addr(v)], Subject: addr(r.pick(r.provs)), Digest: testDigest,
				Evidence: receipt.Sum([]byte{byte(r.rng.IntN(30))}), Pass: r.rng.IntN(3) == 0})
		}
		// Mostly settled receipts: pick a few times for one.
		settled := func(br BatchReceipt) bool {
			got, err := receipt.Decode(br.Bytes)
			if err != nil {
				return false
			}
			st, ok, _ := r.c.view().Settlement(got.Gateway.Address(), got.RequestID)
			return ok && st.Receipt == receipt.Sum(br.Bytes)
		}
		br := r.made[max(0, len(r.made)-1-r.rng.IntN(12))]
		for range 8 {
			if settled(br) {
				break
			}
			br = r.made[max(0, len(r.made)-1-r.rng.IntN(12))]
		}
		if len(r.judged) > 0 && r.rng.IntN(2) == 0 {
			// A second opinion, by another verifier (with three, a
			// split of two against one is decided and slashes the one).
			i := max(0, len(r.judged)-1-r.rng.IntN(4))
			br = r.judged[i]
			for v = r.pick(r.verifiers); addr(v) == r.judgedBy[i]; v = r.pick(r.verifiers) {
			}
		} else if settled(br) {
			r.judged, r.judgedBy = append(r.judged, br), append(r.judgedBy, addr(v))
		}
		subject := r.pick(r.provs).Public()
		if got, err := receipt.Decode(br.Bytes); err == nil && r.rng.IntN(10) != 0 {
			subject = got.Provider
		}
		rs := []BatchReceipt{br}
		return v, signTx(v, Tx{Kind: KindVerdict, Nonce: r.nonce[addr(v)], Subject: subject.Address(), Digest: testDigest,
			Evidence: CaseEvidence(rs, false), Pass: r.rng.IntN(3) == 0, CaseReceipts: rs})
	case n < 5:
		to := addr(r.pick(anyone))
		if r.rng.IntN(10) == 0 {
			to = TreasuryAddress
		}
		return sender, transferTx(sender, nonce, to, r.amount(60_000))
	case n < 6:
		return sender, registerTx(sender, nonce, Role(r.rng.IntN(9)), "info")
	case n < 8:
		return sender, stakeTx(sender, nonce, r.amount(20_000))
	case n < 10:
		return sender, unstakeTx(sender, nonce, r.amount(3_000))
	case n < 11:
		if r.rng.IntN(2) == 0 {
			return sender, signTx(sender, Tx{Kind: KindClaim, Nonce: nonce})
		}
		return sender, withdrawTx(sender, nonce)
	case n < 12:
		return sender, approveTx(sender, nonce, addr(r.pick(anyone)), r.amount(200_000))
	case n < 18:
		gw := r.gws[0]
		switch r.rng.IntN(10) {
		case 0:
			gw = r.gws[1]
		case 1:
			gw = r.pick(r.senders)
		}
		return gw, r.batch(gw, r.nonce[addr(gw)])
	case n < 19:
		b := transferTx(sender, nonce, addr(r.pick(anyone)), 1)
		b[r.rng.IntN(len(b))] ^= byte(1 + r.rng.IntN(255))
		return sender, b
	case n < 20:
		return sender, transferTx(sender, nonce+1+r.rng.Uint64N(3), addr(r.pick(anyone)), 1)
	case n < 21:
		return sender, signTx(sender, Tx{ChainID: "other-chain", Kind: KindStake, Nonce: nonce, Amount: 1})
	case n < 22:
		return r.stranger, transferTx(r.stranger, 0, addr(sender), 1)
	case n < 23:
		b := stakeTx(sender, nonce, 1)
		return sender, b[:r.rng.IntN(len(b))]
	default:
		b := make([]byte, r.rng.IntN(200))
		for i := range b {
			b[i] = byte(r.rng.Uint32())
		}
		return sender, b
	}
}

// batch is a settle-batch from gw mixing good receipts with replays,
// duplicates, receipts of other chains and gateways, tampered ones,
// mispriced ones, unregistered or under-staked providers and consumers who
// cannot pay.
func (r *randomRun) batch(gw keys.PrivateKey, nonce uint64) []byte {
	n := 1 + r.rng.IntN(12)
	var rs []BatchReceipt
	for range n {
		id := fmt.Sprintf("req-%d", r.nextID)
		r.nextID++
		consumer := addr(r.pick(append(append([]keys.PrivateKey{}, r.consumers...), r.stranger)))
		prov := r.pick(append(append([]keys.PrivateKey{}, r.provs...), r.consumers[0]))
		prompt, completion := r.rng.Uint64N(5_000), r.rng.Uint64N(3_000)
		if r.rng.IntN(8) == 0 {
			prompt = r.rng.Uint64N(60_000) // more than most can pay
		}
		var br BatchReceipt
		switch r.rng.IntN(14) {
		case 0:
			if len(r.ids) > 0 {
				id = r.ids[r.rng.IntN(len(r.ids))]
			}
			br = batchReceipt(r.tb, gw, prov, consumer, id, prompt, completion)
		case 1:
			if len(rs) > 0 {
				br = rs[r.rng.IntN(len(rs))]
				break
			}
			fallthrough
		case 2:
			br = batchReceipt(r.tb, gw, prov, consumer, id, prompt, completion, func(x *receipt.Receipt) { x.ChainID = "other-chain" })
		case 3:
			br = batchReceipt(r.tb, r.gws[1], prov, consumer, id, prompt, completion)
		case 4:
			s := makeReceipt(r.tb, gw, prov, consumer, id, prompt, completion)
			s.Receipt.ResponseHash[r.rng.IntN(32)] ^= 1
			br = NewBatchReceipt(&s)
		case 5:
			br = batchReceipt(r.tb, gw, prov, consumer, id, prompt, completion, func(x *receipt.Receipt) { x.Amount++ })
		default:
			br = batchReceipt(r.tb, gw, prov, consumer, id, prompt, completion)
		}
		r.ids = append(r.ids, id)
		r.made = append(r.made, br)
		rs = append(rs, br)
	}
	tx := Tx{Kind: KindSettleBatch, Nonce: nonce, Receipts: rs, Root: BatchRoot(rs)}
	if r.rng.IntN(20) == 0 {
		tx.Root[0] ^= 1
	}
	return signTx(gw, tx)
}

// TestSupplyInvariant: after every block of a random run, the accounts add
// up to the supply and the supply changes only by what epochs mint (nothing
// burns yet); no matured escrow or due list is left behind.
func TestSupplyInvariant(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := newRandomRun(t, seed)
			txs, settled, rejected := 0, 0, 0
			for txs < 450 {
				run := r.block(8)
				txs += len(run.txs)
				for _, res := range run.results {
					if res.Code == CodeOK && len(res.Events) > 0 && res.Events[0].Type == "settle_batch" {
						settled += atoi(t, attr(res.Events[0], "accepted"))
						rejected += atoi(t, attr(res.Events[0], "rejected"))
					}
				}
			}
			// Let everything in escrow and every case mature.
			for range max(r.c.params(t).EscrowBlocks, r.c.params(t).VerdictDelayBlocks) + 1 {
				r.check(r.c.block())
			}
			paidByGateway := 0
			for k, v := range r.c.state {
				if strings.HasPrefix(k, prefixReceipt) {
					s, err := decodeSettlement(v)
					if err != nil {
						t.Fatal(err)
					}
					if s.PaidByGateway {
						paidByGateway++
					}
				}
			}
			if settled == 0 || rejected == 0 || paidByGateway == 0 || r.slashes == 0 {
				t.Fatalf("run settled %d receipts (%d paid by the gateway), rejected %d, slashed %d verifiers: the generator is off", settled, paidByGateway, rejected, r.slashes)
			}
			t.Logf("seed %d: %d txs in %d blocks, %d receipts settled (%d paid by the gateway), %d rejected, %d convictions, %d verifier slashes",
				seed, txs, r.c.height, settled, paidByGateway, rejected, r.convictions, r.slashes)
		})
	}
}

func (c *testChain) params(tb testing.TB) Params {
	tb.Helper()
	p, err := c.view().Params()
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

func atoi(tb testing.TB, s string) int {
	tb.Helper()
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		tb.Fatalf("%q: %v", s, err)
	}
	return n
}

// TestDeterminism: replaying a random run's blocks on fresh state, with
// signatures checked on one thread instead of several, gives the same
// results, the same changes byte for byte and the same app hash at every
// height.
func TestDeterminism(t *testing.T) {
	r := newRandomRun(t, 42)
	var runs []blockRun
	for range 40 {
		runs = append(runs, r.block(6))
	}
	replay := newRandomRun(t, 42) // same genesis; its generator is not used
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	for _, want := range runs {
		got := replay.c.block(want.txs...)
		if !reflect.DeepEqual(got.results, want.results) || !reflect.DeepEqual(got.begin, want.begin) {
			t.Fatalf("height %d: results differ", want.height)
		}
		if !reflect.DeepEqual(got.changes, want.changes) {
			t.Fatalf("height %d: changes differ", want.height)
		}
		if !bytes.Equal(got.appHash, want.appHash) {
			t.Fatalf("height %d: app hash %x, want %x", want.height, got.appHash, want.appHash)
		}
	}
	if !reflect.DeepEqual(replay.c.state, r.c.state) {
		t.Fatal("final states differ")
	}
}
