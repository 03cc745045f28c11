package ledger

import (
	"bytes"
	"crypto/sha256"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// The test harness: a map as committed state, a chain that commits each
// block's Changes into it and chains the app hash, fixed keys, and builders
// for every kind of transaction and for signed receipts.

const testChainID = "idlegrid-test-1"

// memState is committed state: Get returns nil, nil for an absent key.
type memState map[string][]byte

func (m memState) Get(k []byte) ([]byte, error) { return m[string(k)], nil }

var _ Reader = memState(nil)

// testChain is a single node: it runs blocks on its state and commits them.
type testChain struct {
	tb      testing.TB
	state   memState
	height  uint64
	appHash []byte
	// signers are the CometBFT addresses every block's last commit carries.
	signers [][]byte
}

func newChain(tb testing.TB, g Genesis) *testChain {
	tb.Helper()
	c := &testChain{tb: tb, state: memState{}}
	b, err := Init(c.state, testChainID, g)
	if err != nil {
		tb.Fatalf("Init: %v", err)
	}
	changes := b.Changes()
	c.commit(changes)
	c.appHash = NextAppHash(nil, changes)
	return c
}

// blockRun is what one block did.
type blockRun struct {
	height  uint64
	begin   []Event
	end     []Event
	txs     [][]byte
	results []Result
	changes []Change
	appHash []byte
}

// block runs Begin and every tx at the next height and commits the result.
func (c *testChain) block(txs ...[]byte) blockRun {
	c.tb.Helper()
	return c.blockWith(func(apply func([]byte) Result) {
		for _, tx := range txs {
			apply(tx)
		}
	})
}

// blockWith runs Begin at the next height, then the transactions fill
// applies (seeing each result before making the next), and commits.
func (c *testChain) blockWith(fill func(apply func([]byte) Result)) blockRun {
	c.tb.Helper()
	b, err := NewBlock(c.state, c.height+1)
	if err != nil {
		c.tb.Fatalf("NewBlock(%d): %v", c.height+1, err)
	}
	run := blockRun{height: c.height + 1}
	if run.begin, err = b.Begin(); err != nil {
		c.tb.Fatalf("Begin(%d): %v", run.height, err)
	}
	fill(func(tx []byte) Result {
		res, err := b.Apply(tx)
		if err != nil {
			c.tb.Fatalf("block %d tx %d: Apply: %v", run.height, len(run.results), err)
		}
		run.txs = append(run.txs, tx)
		run.results = append(run.results, res)
		return res
	})
	if run.end, err = b.End(c.signers, len(run.txs) > 0); err != nil {
		c.tb.Fatalf("End(%d): %v", run.height, err)
	}
	run.changes = b.Changes()
	c.commit(run.changes)
	c.height++
	c.appHash = NextAppHash(c.appHash, run.changes)
	run.appHash = c.appHash
	return run
}

// apply runs one transaction in its own block and returns its result.
func (c *testChain) apply(tx []byte) Result {
	c.tb.Helper()
	return c.block(tx).results[0]
}

// skipTo runs empty blocks until the last committed height is h.
func (c *testChain) skipTo(h uint64) {
	c.tb.Helper()
	for c.height < h {
		c.block()
	}
}

func (c *testChain) commit(changes []Change) {
	for _, ch := range changes {
		if ch.Value == nil {
			delete(c.state, string(ch.Key))
		} else {
			c.state[string(ch.Key)] = ch.Value
		}
	}
}

func (c *testChain) view() View { return View{R: c.state} }

// account is the committed account of addr; the zero Account if absent.
func (c *testChain) account(addr keys.Address) Account {
	c.tb.Helper()
	a, _, err := c.view().Account(addr)
	if err != nil {
		c.tb.Fatalf("account %s: %v", addr, err)
	}
	return a
}

func (c *testChain) exists(addr keys.Address) bool {
	c.tb.Helper()
	_, ok, err := c.view().Account(addr)
	if err != nil {
		c.tb.Fatalf("account %s: %v", addr, err)
	}
	return ok
}

// allowance is what gateway can draw from consumer's deposit for it.
func (c *testChain) allowance(consumer, gateway keys.Address) money.Amount {
	c.tb.Helper()
	d := c.deposit(consumer, gateway)
	return d.Drawable(c.height)
}

func (c *testChain) deposit(consumer, gateway keys.Address) Deposit {
	c.tb.Helper()
	d, err := c.view().Deposit(consumer, gateway)
	if err != nil {
		c.tb.Fatal(err)
	}
	return d
}

func (c *testChain) supply() Supply {
	c.tb.Helper()
	s, err := c.view().Supply()
	if err != nil {
		c.tb.Fatal(err)
	}
	return s
}

// putAccount overwrites an account in committed state, for states genesis
// cannot express (jailed, balances beyond the supply).
func (c *testChain) putAccount(addr keys.Address, a Account) {
	c.state[accountKey(addr)] = a.encode()
}

// sumTotals adds up Account.Total over every account in state.
func sumTotals(tb testing.TB, state memState) money.Amount {
	tb.Helper()
	var sum money.Amount
	for k, v := range state {
		if strings.HasPrefix(k, prefixDeposit) {
			d, err := decodeDeposit(v)
			if err == nil {
				sum, err = sum.Add(d.Total())
			}
			if err != nil {
				tb.Fatalf("deposit %q: %v", k, err)
			}
			continue
		}
		if !strings.HasPrefix(k, prefixAccount) {
			continue
		}
		a, err := decodeAccount(v)
		if err != nil {
			tb.Fatalf("account %q: %v", k, err)
		}
		t, err := a.Total()
		if err == nil {
			sum, err = sum.Add(t)
		}
		if err != nil {
			tb.Fatalf("account %q: total: %v", k, err)
		}
	}
	return sum
}

// checkSupply fails unless the accounts and deposits add up to the supply.
func (c *testChain) checkSupply(want money.Amount) {
	c.tb.Helper()
	s := c.supply()
	if s.Total != want {
		c.tb.Fatalf("height %d: supply total %d, want %d", c.height, s.Total, want)
	}
	if got := sumTotals(c.tb, c.state); got != s.Total {
		c.tb.Fatalf("height %d: accounts hold %d, supply says %d", c.height, got, s.Total)
	}
}

// stateDiff lists the keys whose values differ between two states.
func stateDiff(before, after memState) []string {
	var keys []string
	for k, v := range after {
		if old, ok := before[k]; !ok || !bytes.Equal(old, v) {
			keys = append(keys, k)
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

func snapshot(s memState) memState { return maps.Clone(s) }

// testKey is a fixed identity per name.
func testKey(tb testing.TB, name string) keys.PrivateKey {
	tb.Helper()
	seed := sha256.Sum256([]byte("idlegrid ledger test key/" + name))
	k, err := keys.FromSeed(seed[:])
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func addr(k keys.PrivateKey) keys.Address { return k.Public().Address() }

// Builders. Each signs with k; ChainID defaults to testChainID.

func signTx(k keys.PrivateKey, t Tx) []byte {
	if t.ChainID == "" {
		t.ChainID = testChainID
	}
	t.Sign(k)
	return t.Bytes()
}

func transferTx(k keys.PrivateKey, nonce uint64, to keys.Address, amount money.Amount) []byte {
	return signTx(k, Tx{Kind: KindTransfer, Nonce: nonce, To: to, Amount: amount})
}

func registerTx(k keys.PrivateKey, nonce uint64, role Role, info string) []byte {
	return signTx(k, Tx{Kind: KindRegister, Nonce: nonce, Role: role, Info: info})
}

func stakeTx(k keys.PrivateKey, nonce uint64, amount money.Amount) []byte {
	return signTx(k, Tx{Kind: KindStake, Nonce: nonce, Amount: amount})
}

func unstakeTx(k keys.PrivateKey, nonce uint64, amount money.Amount) []byte {
	return signTx(k, Tx{Kind: KindUnstake, Nonce: nonce, Amount: amount})
}

func withdrawTx(k keys.PrivateKey, nonce uint64) []byte {
	return signTx(k, Tx{Kind: KindWithdrawUnbonded, Nonce: nonce})
}

func approveTx(k keys.PrivateKey, nonce uint64, gateway keys.Address, amount money.Amount) []byte {
	return signTx(k, Tx{Kind: KindApprove, Nonce: nonce, Gateway: gateway, Amount: amount})
}

func settleTx(k keys.PrivateKey, nonce uint64, rs ...BatchReceipt) []byte {
	return signTx(k, Tx{Kind: KindSettleBatch, Nonce: nonce, Receipts: rs, Root: BatchRoot(rs)})
}

// Receipt prices: 1 base unit per prompt token and 3 per completion token,
// so a receipt for p prompt and c completion tokens costs p + 3c.
const (
	testPricePrompt     money.Amount = 1_000_000
	testPriceCompletion money.Amount = 3_000_000
)

// makeReceipt builds a receipt that gateway gw admitted and provider prov
// served for consumer; edit, if given, changes it before both sign.
func makeReceipt(tb testing.TB, gw, prov keys.PrivateKey, consumer keys.Address, id string, prompt, completion uint64, edit ...func(*receipt.Receipt)) receipt.Signed {
	tb.Helper()
	amount, err := receipt.ComputeAmount(prompt, completion, testPricePrompt, testPriceCompletion)
	if err != nil {
		tb.Fatal(err)
	}
	r := receipt.Receipt{
		Version:                receipt.Version,
		ChainID:                testChainID,
		RequestID:              id,
		Gateway:                gw.Public(),
		Provider:               prov.Public(),
		Consumer:               consumer,
		Model:                  "llama3.2:1b",
		ModelDigest:            "sha256:baf6a787fdffd633537aa2eb51cfd54cb93ff08e28040095462bb63daf552878",
		PromptTokens:           prompt,
		CompletionTokens:       completion,
		PricePromptPerMTok:     testPricePrompt,
		PriceCompletionPerMTok: testPriceCompletion,
		Amount:                 amount,
		RequestHash:            receipt.Sum([]byte("request " + id)),
		ResponseHash:           receipt.Sum([]byte("response " + id)),
		StartUnixMs:            1_717_171_717_000,
		EndUnixMs:              1_717_171_719_500,
	}
	for _, f := range edit {
		f(&r)
	}
	return receipt.Signed{Receipt: r, ProviderSignature: receipt.SignProvider(prov, &r), GatewaySignature: receipt.SignGateway(gw, &r)}
}

func batchReceipt(tb testing.TB, gw, prov keys.PrivateKey, consumer keys.Address, id string, prompt, completion uint64, edit ...func(*receipt.Receipt)) BatchReceipt {
	tb.Helper()
	s := makeReceipt(tb, gw, prov, consumer, id, prompt, completion, edit...)
	return NewBatchReceipt(&s)
}

// The standard world of the unit tests. Amounts are in base units and small,
// so expectations can be worked out by hand.
//
//	alice  consumer, 1,000,000: deposits of 100,000 for gw and gw2, the rest balance
//	bob    plain account, balance 50,000, no key at genesis
//	carol  consumer, balance 100 (too poor to pay), no deposit
//	dave   consumer, 1,000,000: a deposit of only 100 for gw, the rest balance
//	gw     gateway, balance 20,000, stake 50,000
//	gw2    gateway, balance 0, stake 50,000
//	gwlow  gateway, balance 20,000, stake 5,000 (below the 10,000 minimum)
//	prov   provider, balance 0, stake 2,000
//	prov2  provider, balance 0, stake 1,000 (exactly the minimum)
//	provlow provider, balance 0, stake 500 (below the 1,000 minimum)
//	plain  account with a key and balance 1,000 but no role
const (
	aliceBalance   money.Amount = 1_000_000
	aliceAllowance money.Amount = 100_000                         // her deposit for gw, and for gw2
	aliceFree                   = aliceBalance - 2*aliceAllowance // her balance after genesis
	bobBalance     money.Amount = 50_000
	carolBalance   money.Amount = 100
	daveBalance    money.Amount = 1_000_000
	daveAllowance  money.Amount = 100
	gwBalance      money.Amount = 20_000
	gwStake        money.Amount = 50_000
	provStake      money.Amount = 2_000
	plainBalance   money.Amount = 1_000
	worldSupply                 = aliceBalance + bobBalance + carolBalance + daveBalance +
		gwBalance + gwStake + gwStake + 20_000 + 5_000 + provStake + 1_000 + 500 + plainBalance
)

func testParams() Params {
	return Params{
		MinProviderStake: 1_000,
		MinGatewayStake:  10_000,
		MinVerifierStake: 1_000,
		UnbondingBlocks:  10,
		EscrowBlocks:     5,
		GatewayFeeBps:    500,
		ProtocolFeeBps:   100,
		MaxBatchReceipts: 8,

		// Epochs long enough that tests about other things never end one;
		// reward tests shorten them.
		SupplyCap:          1 << 40,
		EpochBlocks:        1 << 30,
		EpochEmission:      1_000_000,
		HalvingEpochs:      10,
		ProviderRewardBps:  7_000,
		VerifierRewardBps:  1_500,
		ValidatorRewardBps: 1_000,
		TreasuryRewardBps:  500,
		VestingBlocks:      100,

		VerdictQuorum:       1,
		VerifierSlashBps:    1_000,
		VerdictDelayBlocks:  5,
		ConvictFailures:     3,
		ConvictWindowBlocks: 1_000,
		SlashStakeBps:       5_000,
		JailBlocks:          100,

		RewardMaxPaidBps:    50,
		ExistentialDeposit:  100,
		DepositUnlockBlocks: 10,
		VerdictFailStakeBps: 5_000,
		PlantRevealBlocks:   50,
		PlantForfeitBps:     1_000,
	}
}

type world struct {
	*testChain
	alice, bob, carol, dave, gw, gw2, gwlow, prov, prov2, provlow, plain keys.PrivateKey
	stranger                                                             keys.PrivateKey // no account
}

func newWorld(tb testing.TB) *world {
	tb.Helper()
	w := &world{
		alice: testKey(tb, "alice"), bob: testKey(tb, "bob"), carol: testKey(tb, "carol"), dave: testKey(tb, "dave"),
		gw: testKey(tb, "gw"), gw2: testKey(tb, "gw2"), gwlow: testKey(tb, "gwlow"),
		prov: testKey(tb, "prov"), prov2: testKey(tb, "prov2"), provlow: testKey(tb, "provlow"),
		plain: testKey(tb, "plain"), stranger: testKey(tb, "stranger"),
	}
	keyed := func(k keys.PrivateKey, balance, stake money.Amount, roles ...string) GenesisAccount {
		return GenesisAccount{Address: addr(k), PubKey: k.Public(), Balance: balance, Stake: stake, Roles: roles}
	}
	g := Genesis{Params: testParams(), Accounts: []GenesisAccount{
		{Address: addr(w.alice), PubKey: w.alice.Public(), Balance: aliceBalance, Approvals: []GenesisApproval{
			{Gateway: addr(w.gw), Deposit: aliceAllowance}, {Gateway: addr(w.gw2), Deposit: aliceAllowance},
		}},
		{Address: addr(w.bob), Balance: bobBalance},
		{Address: addr(w.carol), PubKey: w.carol.Public(), Balance: carolBalance},
		{Address: addr(w.dave), PubKey: w.dave.Public(), Balance: daveBalance, Approvals: []GenesisApproval{
			{Gateway: addr(w.gw), Deposit: daveAllowance},
		}},
		keyed(w.gw, gwBalance, gwStake, "gateway"),
		keyed(w.gw2, 0, gwStake, "gateway"),
		keyed(w.gwlow, 20_000, 5_000, "gateway"),
		keyed(w.prov, 0, provStake, "provider"),
		keyed(w.prov2, 0, 1_000, "provider"),
		keyed(w.provlow, 0, 500, "provider"),
		keyed(w.plain, plainBalance, 0),
	}}
	g.Accounts[4].Info = "https://gw.example"
	w.testChain = newChain(tb, g)
	return w
}
