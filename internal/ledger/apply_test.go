package ledger

import (
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
)

// TestApplyHappyPath runs each kind of transaction (settle-batch has its own
// tests in settle_test.go) and compares every account and allowance it
// touched with values worked out by hand; nothing else may change.
func TestApplyHappyPath(t *testing.T) {
	type allowance struct {
		consumer, gateway keys.Address
		dep               Deposit // nil Unlocking and Locked 0: the record is gone
	}
	tests := []struct {
		name   string
		setup  func(w *world) // earlier blocks
		txs    func(w *world) [][]byte
		events []string // event type of each tx
		want   func(w *world) map[keys.Address]Account
		allow  func(w *world) []allowance
		keys   []string // other state keys the block changes
	}{{
		name:   "transfer to a new address",
		txs:    func(w *world) [][]byte { return [][]byte{transferTx(w.bob, 0, addr(testKey(t, "newcomer")), 300)} },
		events: []string{"transfer"},
		want: func(w *world) map[keys.Address]Account {
			return map[keys.Address]Account{
				addr(w.bob):                  {PubKey: w.bob.Public(), Nonce: 1, Balance: 49_700},
				addr(testKey(t, "newcomer")): {Balance: 300},
			}
		},
	}, {
		name: "transfers both ways in one block",
		txs: func(w *world) [][]byte {
			return [][]byte{transferTx(w.alice, 0, addr(w.bob), 1_234), transferTx(w.bob, 0, addr(w.alice), 34)}
		},
		events: []string{"transfer", "transfer"},
		want: func(w *world) map[keys.Address]Account {
			return map[keys.Address]Account{
				addr(w.alice): {PubKey: w.alice.Public(), Nonce: 1, Balance: aliceFree - 1_200},
				addr(w.bob):   {PubKey: w.bob.Public(), Nonce: 1, Balance: 51_200},
			}
		},
	}, {
		name: "transfer the whole balance",
		txs:  func(w *world) [][]byte { return [][]byte{transferTx(w.plain, 0, TreasuryAddress, 1_000)} },
		want: func(w *world) map[keys.Address]Account {
			return map[keys.Address]Account{
				addr(w.plain):   {PubKey: w.plain.Public(), Nonce: 1},
				TreasuryAddress: {Balance: 1_000},
			}
		},
		events: []string{"transfer"},
	}, {
		name: "register two roles",
		txs: func(w *world) [][]byte {
			return [][]byte{registerTx(w.plain, 0, RoleProvider, "https://plain.example"), registerTx(w.plain, 1, RoleGateway, "gw info")}
		},
		events: []string{"register", "register"},
		want: func(w *world) map[keys.Address]Account {
			return map[keys.Address]Account{addr(w.plain): {
				PubKey: w.plain.Public(), Nonce: 2, Balance: 1_000,
				Roles: RoleProvider | RoleGateway, ProviderInfo: "https://plain.example", GatewayInfo: "gw info",
			}}
		},
	}, {
		name:   "register a verifier, setting the key",
		txs:    func(w *world) [][]byte { return [][]byte{registerTx(w.bob, 0, RoleVerifier, "")} },
		events: []string{"register"},
		want: func(w *world) map[keys.Address]Account {
			return map[keys.Address]Account{addr(w.bob): {PubKey: w.bob.Public(), Nonce: 1, Balance: 50_000, Roles: RoleVerifier}}
		},
		keys: []string{keyVerifiers}, // the verifier list, for epoch rewards
	}, {
		name:   "stake",
		txs:    func(w *world) [][]byte { return [][]byte{stakeTx(w.gw, 0, 5_000)} },
		events: []string{"stake"},
		want: func(w *world) map[keys.Address]Account {
			return map[keys.Address]Account{addr(w.gw): {
				PubKey: w.gw.Public(), Nonce: 1, Balance: 15_000, Stake: 55_000, Roles: RoleGateway, GatewayInfo: "https://gw.example",
			}}
		},
	}, {
		name:   "stake everything",
		txs:    func(w *world) [][]byte { return [][]byte{stakeTx(w.plain, 0, 1_000)} },
		events: []string{"stake"},
		want: func(w *world) map[keys.Address]Account {
			return map[keys.Address]Account{addr(w.plain): {PubKey: w.plain.Public(), Nonce: 1, Stake: 1_000}}
		},
	}, {
		name:   "two unstakes in one block share a release height",
		txs:    func(w *world) [][]byte { return [][]byte{unstakeTx(w.gw, 0, 1_000), unstakeTx(w.gw, 1, 500)} },
		events: []string{"unstake", "unstake"},
		want: func(w *world) map[keys.Address]Account {
			return map[keys.Address]Account{addr(w.gw): {
				PubKey: w.gw.Public(), Nonce: 2, Balance: 20_000, Stake: 48_500,
				Unbonding: []Entry{{Amount: 1_500, Height: 11}}, Roles: RoleGateway, GatewayInfo: "https://gw.example",
			}}
		},
	}, {
		name:   "unstakes in two blocks",
		setup:  func(w *world) { w.block(unstakeTx(w.gw, 0, 1_000)) },
		txs:    func(w *world) [][]byte { return [][]byte{unstakeTx(w.gw, 1, 49_000)} },
		events: []string{"unstake"},
		want: func(w *world) map[keys.Address]Account {
			return map[keys.Address]Account{addr(w.gw): {
				PubKey: w.gw.Public(), Nonce: 2, Balance: 20_000,
				Unbonding: []Entry{{Amount: 1_000, Height: 11}, {Amount: 49_000, Height: 12}}, Roles: RoleGateway, GatewayInfo: "https://gw.example",
			}}
		},
	}, {
		name: "withdraw what matured, keep the rest",
		setup: func(w *world) {
			w.block(unstakeTx(w.gw, 0, 1_000))
			w.block(unstakeTx(w.gw, 1, 2_000))
			w.skipTo(10)
		},
		txs:    func(w *world) [][]byte { return [][]byte{withdrawTx(w.gw, 2)} }, // height 11
		events: []string{"withdraw_unbonded"},
		want: func(w *world) map[keys.Address]Account {
			return map[keys.Address]Account{addr(w.gw): {
				PubKey: w.gw.Public(), Nonce: 3, Balance: 21_000, Stake: 47_000,
				Unbonding: []Entry{{Amount: 2_000, Height: 12}}, Roles: RoleGateway, GatewayInfo: "https://gw.example",
			}}
		},
	}, {
		name:   "approve a new gateway locks a deposit",
		txs:    func(w *world) [][]byte { return [][]byte{approveTx(w.bob, 0, addr(w.gw2), 777)} },
		events: []string{"approve"},
		want: func(w *world) map[keys.Address]Account {
			return map[keys.Address]Account{addr(w.bob): {PubKey: w.bob.Public(), Nonce: 1, Balance: 50_000 - 777}}
		},
		allow: func(w *world) []allowance { return []allowance{{addr(w.bob), addr(w.gw2), Deposit{Locked: 777}}} },
	}, {
		name:   "approve more locks the difference",
		txs:    func(w *world) [][]byte { return [][]byte{approveTx(w.alice, 0, addr(w.gw), 150_000)} },
		events: []string{"approve"},
		want: func(w *world) map[keys.Address]Account {
			return map[keys.Address]Account{addr(w.alice): {PubKey: w.alice.Public(), Nonce: 1, Balance: aliceFree - 50_000}}
		},
		allow: func(w *world) []allowance { return []allowance{{addr(w.alice), addr(w.gw), Deposit{Locked: 150_000}}} },
	}, {
		name:   "approve less starts unlocking the difference",
		txs:    func(w *world) [][]byte { return [][]byte{approveTx(w.alice, 0, addr(w.gw), 500)} },
		events: []string{"approve"},
		want: func(w *world) map[keys.Address]Account {
			return map[keys.Address]Account{addr(w.alice): {PubKey: w.alice.Public(), Nonce: 1, Balance: aliceFree}}
		},
		allow: func(w *world) []allowance {
			return []allowance{{addr(w.alice), addr(w.gw), Deposit{Locked: 500, Unlocking: []Entry{{Amount: aliceAllowance - 500, Height: 11}}}}}
		},
	}, {
		name: "approve returns what finished unlocking",
		setup: func(w *world) {
			w.block(approveTx(w.alice, 0, addr(w.gw2), 0)) // unlocks at 1 + 10
			for w.height < 10 {
				w.block()
			}
		},
		txs:    func(w *world) [][]byte { return [][]byte{approveTx(w.alice, 1, addr(w.gw2), 0)} },
		events: []string{"approve"},
		want: func(w *world) map[keys.Address]Account {
			return map[keys.Address]Account{addr(w.alice): {PubKey: w.alice.Public(), Nonce: 2, Balance: aliceFree + aliceAllowance}}
		},
		allow: func(w *world) []allowance { return []allowance{{addr(w.alice), addr(w.gw2), Deposit{}}} },
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			if tt.setup != nil {
				tt.setup(w)
			}
			before := snapshot(w.state)
			txs := tt.txs(w)
			run := w.block(txs...)
			wantKeys := []string{}
			for i, res := range run.results {
				if res.Code != CodeOK {
					t.Fatalf("tx %d: code %d (%s)", i, res.Code, res.Log)
				}
				if len(res.Events) != 1 || res.Events[0].Type != tt.events[i] {
					t.Errorf("tx %d: events %+v, want one %q", i, res.Events, tt.events[i])
				}
				rec, ok, err := w.view().Tx(TxHash(txs[i]))
				if err != nil || !ok || rec != (TxRecord{Height: run.height, Code: CodeOK}) {
					t.Errorf("tx %d: record %+v %v %v", i, rec, ok, err)
				}
				wantKeys = append(wantKeys, txKey(TxHash(txs[i])))
			}
			for a, want := range tt.want(w) {
				if got := w.account(a); !reflect.DeepEqual(got, want) {
					t.Errorf("account %s:\n got %+v\nwant %+v", a, got, want)
				}
				wantKeys = append(wantKeys, accountKey(a))
			}
			if tt.allow != nil {
				for _, al := range tt.allow(w) {
					if got := w.deposit(al.consumer, al.gateway); !reflect.DeepEqual(got, al.dep) {
						t.Errorf("deposit %s → %s = %+v, want %+v", al.consumer, al.gateway, got, al.dep)
					}
					wantKeys = append(wantKeys, depositKey(al.consumer, al.gateway))
				}
			}
			wantKeys = append(wantKeys, tt.keys...)
			slices.Sort(wantKeys)
			if diff := stateDiff(before, w.state); !slices.Equal(diff, wantKeys) {
				t.Errorf("changed keys %q, want %q", diff, wantKeys)
			}
			w.checkSupply(worldSupply)
		})
	}
}

// badCase is a transaction that must fail with code. If consumes, it passed
// the form, chain, signature and nonce checks: the sender's nonce moves on
// and the tx is recorded, and nothing else changes. Otherwise nothing at all
// changes, not even the app hash.
type badCase struct {
	name     string
	setup    func(w *world)
	tx       func(w *world) []byte
	code     uint32
	consumes bool
	sender   func(w *world) keys.PrivateKey
}

func runBadCase(t *testing.T, tc badCase) {
	t.Helper()
	w := newWorld(t)
	if tc.setup != nil {
		tc.setup(w)
	}
	raw := tc.tx(w)
	before, hash := snapshot(w.state), w.appHash
	var senderBefore Account
	if tc.consumes {
		senderBefore = w.account(addr(tc.sender(w)))
	}
	res := w.apply(raw)
	if res.Code != tc.code {
		t.Fatalf("code %d (%s), want %d", res.Code, res.Log, tc.code)
	}
	if res.Log == "" {
		t.Error("failure without a log")
	}
	diff := stateDiff(before, w.state)
	if !tc.consumes {
		if len(diff) != 0 {
			t.Fatalf("state changed: %q", diff)
		}
		if string(w.appHash) != string(hash) {
			t.Fatal("app hash changed")
		}
		return
	}
	sender := addr(tc.sender(w))
	want := []string{accountKey(sender), txKey(TxHash(raw))}
	slices.Sort(want)
	if !slices.Equal(diff, want) {
		t.Fatalf("changed keys %q, want only the sender and the tx record %q", diff, want)
	}
	wantAcct := senderBefore
	wantAcct.Nonce++
	wantAcct.PubKey = tc.sender(w).Public()
	if got := w.account(sender); !reflect.DeepEqual(got, wantAcct) {
		t.Fatalf("sender:\n got %+v\nwant %+v", got, wantAcct)
	}
	rec, ok, err := w.view().Tx(TxHash(raw))
	if err != nil || !ok || rec != (TxRecord{Height: w.height, Code: tc.code}) {
		t.Fatalf("tx record %+v %v %v", rec, ok, err)
	}
}

// kindTxs builds, for each kind, a valid transaction from any signer.
func kindTxs(w *world) map[Kind]func(k keys.PrivateKey, nonce uint64, chain string) []byte {
	with := func(tx Tx) func(keys.PrivateKey, uint64, string) []byte {
		return func(k keys.PrivateKey, nonce uint64, chain string) []byte {
			tx.Nonce, tx.ChainID = nonce, chain
			if tx.Kind == KindSettleBatch {
				// the receipt names the signing gateway, so it is valid for k
				tx.Receipts = []BatchReceipt{batchReceipt(w.tb, k, w.prov, addr(w.alice), "kind-tx", 10, 10)}
				tx.Root = BatchRoot(tx.Receipts)
			}
			return signTx(k, tx)
		}
	}
	return map[Kind]func(keys.PrivateKey, uint64, string) []byte{
		KindTransfer:         with(Tx{Kind: KindTransfer, To: addr(w.bob), Amount: 10}),
		KindRegister:         with(Tx{Kind: KindRegister, Role: RoleProvider, Info: "x"}),
		KindStake:            with(Tx{Kind: KindStake, Amount: 10}),
		KindUnstake:          with(Tx{Kind: KindUnstake, Amount: 10}),
		KindWithdrawUnbonded: with(Tx{Kind: KindWithdrawUnbonded}),
		KindApprove:          with(Tx{Kind: KindApprove, Gateway: addr(w.gw2), Amount: 10}),
		KindSettleBatch:      with(Tx{Kind: KindSettleBatch}),
	}
}

var allKinds = []Kind{KindTransfer, KindRegister, KindStake, KindUnstake, KindWithdrawUnbonded, KindSettleBatch, KindApprove}

// TestApplyRejectsBeforeNonce: for every kind, a transaction with a bad
// signature, for another chain, out of order, from an unknown account or
// with trailing bytes changes nothing.
func TestApplyRejectsBeforeNonce(t *testing.T) {
	for _, kind := range allKinds {
		gw := func(w *world) keys.PrivateKey { return w.gw }
		build := func(w *world) func(keys.PrivateKey, uint64, string) []byte { return kindTxs(w)[kind] }
		cases := []badCase{{
			name: "bad signature",
			tx: func(w *world) []byte {
				b := build(w)(w.gw, 0, testChainID)
				b[len(b)-1] ^= 1
				return b
			},
			code: CodeBadSignature,
		}, {
			name: "signed by another key",
			tx: func(w *world) []byte {
				tx, err := DecodeTx(build(w)(w.gw, 0, testChainID))
				if err != nil {
					t.Fatal(err)
				}
				sender := tx.Sender
				tx.Sign(w.alice)
				tx.Sender = sender // claims gw, signed by alice
				return tx.Bytes()
			},
			code: CodeBadSignature,
		}, {
			name: "wrong chain id",
			tx:   func(w *world) []byte { return build(w)(w.gw, 0, "other-chain") },
			code: CodeWrongChain,
		}, {
			name: "future nonce",
			tx:   func(w *world) []byte { return build(w)(w.gw, 1, testChainID) },
			code: CodeBadNonce,
		}, {
			name: "far future nonce",
			tx:   func(w *world) []byte { return build(w)(w.gw, math.MaxUint64, testChainID) },
			code: CodeBadNonce,
		}, {
			name: "replayed",
			setup: func(w *world) {
				// the original's own outcome (some kinds fail here, e.g.
				// withdraw with nothing unbonding) does not matter
				w.block(build(w)(w.gw, 0, testChainID))
			},
			tx:   func(w *world) []byte { return build(w)(w.gw, 0, testChainID) },
			code: CodeBadNonce,
		}, {
			name: "unknown sender",
			tx:   func(w *world) []byte { return build(w)(w.stranger, 0, testChainID) },
			code: CodeUnknownAccount,
		}, {
			name: "trailing byte",
			tx:   func(w *world) []byte { return append(build(w)(w.gw, 0, testChainID), 0) },
			code: CodeMalformed,
		}}
		for _, tc := range cases {
			tc.sender = gw
			t.Run(kind.String()+"/"+tc.name, func(t *testing.T) { runBadCase(t, tc) })
		}
	}
}

// TestReplayKeepsRecord: replaying a transaction must not overwrite the
// record of its execution (both have the same hash).
func TestReplayKeepsRecord(t *testing.T) {
	w := newWorld(t)
	tx := transferTx(w.alice, 0, addr(w.bob), 5)
	if res := w.apply(tx); res.Code != CodeOK {
		t.Fatalf("code %d: %s", res.Code, res.Log)
	}
	for range 2 {
		if res := w.apply(tx); res.Code != CodeBadNonce {
			t.Fatalf("replay: code %d, want %d", res.Code, CodeBadNonce)
		}
	}
	rec, ok, err := w.view().Tx(TxHash(tx))
	if err != nil || !ok || rec != (TxRecord{Height: 1, Code: CodeOK}) {
		t.Fatalf("record after replays: %+v %v %v, want height 1 code OK", rec, ok, err)
	}
	if got := w.account(addr(w.bob)).Balance; got != bobBalance+5 {
		t.Fatalf("bob balance %d after replays, want %d", got, bobBalance+5)
	}
}

// TestApplyEffectFailures: transactions that pass every check up to the
// nonce but whose effect fails consume the nonce and change nothing else.
func TestApplyEffectFailures(t *testing.T) {
	alice := func(w *world) keys.PrivateKey { return w.alice }
	gw := func(w *world) keys.PrivateKey { return w.gw }
	plain := func(w *world) keys.PrivateKey { return w.plain }
	cases := []badCase{
		{name: "transfer zero", sender: alice, code: CodeInvalid,
			tx: func(w *world) []byte { return transferTx(w.alice, 0, addr(w.bob), 0) }},
		{name: "transfer to self", sender: alice, code: CodeInvalid,
			tx: func(w *world) []byte { return transferTx(w.alice, 0, addr(w.alice), 1) }},
		{name: "transfer more than the balance", sender: plain, code: CodeInsufficientFunds,
			tx: func(w *world) []byte { return transferTx(w.plain, 0, addr(w.bob), plainBalance+1) }},
		{name: "create an account below the existential deposit", sender: alice, code: CodeInvalid,
			tx: func(w *world) []byte {
				return transferTx(w.alice, 0, addr(testKey(t, "newcomer")), testParams().ExistentialDeposit-1)
			}},
		{name: "transfer the stake", sender: gw, code: CodeInsufficientFunds,
			tx: func(w *world) []byte { return transferTx(w.gw, 0, addr(w.bob), gwBalance+1) }},
		{name: "register no role", sender: plain, code: CodeInvalid,
			tx: func(w *world) []byte { return registerTx(w.plain, 0, 0, "") }},
		{name: "register two roles at once", sender: plain, code: CodeInvalid,
			tx: func(w *world) []byte { return registerTx(w.plain, 0, RoleProvider|RoleGateway, "") }},
		{name: "register unknown role", sender: plain, code: CodeInvalid,
			tx: func(w *world) []byte { return registerTx(w.plain, 0, 8, "") }},
		{name: "stake zero", sender: plain, code: CodeInvalid,
			tx: func(w *world) []byte { return stakeTx(w.plain, 0, 0) }},
		{name: "stake more than the balance", sender: plain, code: CodeInsufficientFunds,
			tx: func(w *world) []byte { return stakeTx(w.plain, 0, plainBalance+1) }},
		{name: "unstake zero", sender: gw, code: CodeInvalid,
			tx: func(w *world) []byte { return unstakeTx(w.gw, 0, 0) }},
		{name: "unstake more than staked", sender: gw, code: CodeInsufficientFunds,
			tx: func(w *world) []byte { return unstakeTx(w.gw, 0, gwStake+1) }},
		{name: "unstake without stake", sender: plain, code: CodeInsufficientFunds,
			tx: func(w *world) []byte { return unstakeTx(w.plain, 0, 1) }},
		{name: "withdraw with nothing unbonding", sender: gw, code: CodeInvalid,
			tx: func(w *world) []byte { return withdrawTx(w.gw, 0) }},
		{name: "withdraw before maturity", sender: gw, code: CodeInvalid,
			setup: func(w *world) { w.block(unstakeTx(w.gw, 0, 100)); w.skipTo(9) }, // releases at 11
			tx:    func(w *world) []byte { return withdrawTx(w.gw, 1) }},            // runs at 10
		{name: "approve self", sender: alice, code: CodeInvalid,
			tx: func(w *world) []byte { return approveTx(w.alice, 0, addr(w.alice), 5) }},
	}
	for _, tc := range cases {
		tc.consumes = true
		t.Run(tc.name, func(t *testing.T) { runBadCase(t, tc) })
	}
}

// TestApplyMalformed: bytes that do not decode as a transaction change
// nothing.
func TestApplyMalformed(t *testing.T) {
	alice := testKey(t, "alice")
	// signTx would sign these anyway: the decoder must refuse them.
	cases := map[string][]byte{
		"empty":             {},
		"garbage":           []byte("not a transaction"),
		"bad recipient":     signTx(alice, Tx{Kind: KindTransfer, To: "nobody", Amount: 1}),
		"uppercase address": signTx(alice, Tx{Kind: KindTransfer, To: keys.Address(strings.ToUpper(string(addr(alice)))), Amount: 1}),
		"long info":         signTx(alice, Tx{Kind: KindRegister, Role: RoleProvider, Info: strings.Repeat("x", maxMetadataBytes+1)}),
		"info not UTF-8":    signTx(alice, Tx{Kind: KindRegister, Role: RoleProvider, Info: "\xff"}),
		"unknown kind":      signTx(alice, Tx{Kind: 99}),
		"kind zero":         signTx(alice, Tx{Kind: 0}),
		"long chain id":     signTx(alice, Tx{ChainID: strings.Repeat("c", 65), Kind: KindStake, Amount: 1}),
		"version 2": func() []byte {
			b := stakeTx(alice, 0, 1)
			b[0] = 2
			return b
		}(),
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			runBadCase(t, badCase{code: CodeMalformed, tx: func(*world) []byte { return raw }})
		})
	}
}

// TestApplyOverflow: an addition that does not fit fails with CodeOverflow.
// Genesis cannot produce such a state (its total supply must fit in a
// uint64, and every balance is part of it), so the test writes the
// accounts directly.
func TestApplyOverflow(t *testing.T) {
	t.Run("genesis total must fit", func(t *testing.T) {
		a, b := testKey(t, "a"), testKey(t, "b")
		g := Genesis{Params: testParams(), Accounts: []GenesisAccount{
			{Address: addr(a), Balance: math.MaxUint64 - 10},
			{Address: addr(b), Balance: 11},
		}}
		g.Params.SupplyCap = math.MaxUint64
		if _, err := Init(memState{}, testChainID, g); err == nil {
			t.Fatal("Init accepted a total supply beyond MaxUint64")
		}
		// A supply of MaxUint64 takes a state genesis refuses (it leaves
		// nothing for rewards): written directly.
		c := newChain(t, Genesis{Params: testParams(), Accounts: []GenesisAccount{{Address: addr(b), Balance: 10}}})
		c.putAccount(addr(a), Account{Balance: math.MaxUint64 - 10})
		c.state[keySupply] = (&Supply{Total: math.MaxUint64, Minted: math.MaxUint64}).encode()
		// The largest possible transfer into the fullest account fits.
		if res := c.apply(transferTx(b, 0, addr(a), 10)); res.Code != CodeOK {
			t.Fatalf("code %d: %s", res.Code, res.Log)
		}
		if got := c.account(addr(a)).Balance; got != math.MaxUint64 {
			t.Fatalf("balance %d, want MaxUint64", got)
		}
		c.checkSupply(math.MaxUint64)
	})
	full := func(w *world) {
		w.putAccount(addr(w.bob), Account{Balance: math.MaxUint64 - 10})
		w.putAccount(addr(w.plain), Account{PubKey: w.plain.Public(), Balance: 100, Stake: math.MaxUint64 - 10})
	}
	cases := []badCase{
		{name: "recipient balance", setup: full, code: CodeOverflow,
			sender: func(w *world) keys.PrivateKey { return w.alice },
			tx:     func(w *world) []byte { return transferTx(w.alice, 0, addr(w.bob), 11) }},
		{name: "stake", setup: full, code: CodeOverflow,
			sender: func(w *world) keys.PrivateKey { return w.plain },
			tx:     func(w *world) []byte { return stakeTx(w.plain, 0, 11) }},
	}
	for _, tc := range cases {
		tc.consumes = true
		t.Run(tc.name, func(t *testing.T) { runBadCase(t, tc) })
	}
}

// TestJailedGateway: a jailed gateway cannot settle. Genesis cannot jail an
// account (only verdicts will), so the test writes the flag into state.
func TestJailedGateway(t *testing.T) {
	runBadCase(t, badCase{
		setup: func(w *world) {
			a := w.account(addr(w.gw))
			a.Jailed = true
			w.putAccount(addr(w.gw), a)
		},
		sender: func(w *world) keys.PrivateKey { return w.gw },
		tx: func(w *world) []byte {
			return settleTx(w.gw, 0, batchReceipt(t, w.gw, w.prov, addr(w.alice), "r1", 10, 10))
		},
		code:     CodeNotRegistered,
		consumes: true,
	})
}

// TestEmptyBlocks: a block with no transaction and nothing due, or whose
// transactions all fail before their nonce, writes nothing and keeps the
// app hash.
func TestEmptyBlocks(t *testing.T) {
	w := newWorld(t)
	hash := string(w.appHash)
	if run := w.block(); len(run.changes) != 0 || string(run.appHash) != hash {
		t.Fatalf("empty block: %d changes, app hash moved %v", len(run.changes), string(run.appHash) != hash)
	}
	bad := transferTx(w.alice, 0, addr(w.bob), 1)
	bad[len(bad)-1] ^= 1
	run := w.block(
		bad,
		transferTx(w.alice, 3, addr(w.bob), 1),
		transferTx(w.stranger, 0, addr(w.bob), 1),
		signTx(w.alice, Tx{ChainID: "other", Kind: KindTransfer, To: addr(w.bob), Amount: 1}),
		[]byte{1, 2, 3},
	)
	for i, res := range run.results {
		if res.Code == CodeOK {
			t.Errorf("tx %d succeeded", i)
		}
	}
	if len(run.changes) != 0 || string(run.appHash) != hash {
		t.Fatalf("block of failing txs: changes %q, app hash moved %v", keysOf(run.changes), string(run.appHash) != hash)
	}
	// A block with a change moves the hash; the next empty one keeps it.
	if run := w.block(transferTx(w.alice, 0, addr(w.bob), 1)); string(run.appHash) == hash {
		t.Fatal("a block with a transfer kept the app hash")
	}
	hash = string(w.appHash)
	if run := w.block(); string(run.appHash) != hash {
		t.Fatal("empty block after a transfer moved the app hash")
	}
}

func keysOf(cs []Change) []string {
	var ks []string
	for _, c := range cs {
		ks = append(ks, string(c.Key))
	}
	return ks
}

// TestDepositUnlockingIsBounded: lowering a deposit in block after block
// adds at most maxUnlocking entries; later ones join the last, which then
// releases no earlier than the latest promise to the gateway.
func TestDepositUnlockingIsBounded(t *testing.T) {
	alice, gw := testKey(t, "alice"), testKey(t, "gw")
	p := testParams()
	p.DepositUnlockBlocks = 1_000
	c := newChain(t, Genesis{Params: p, Accounts: []GenesisAccount{
		{Address: addr(alice), PubKey: alice.Public(), Balance: 1_000, Approvals: []GenesisApproval{{Gateway: addr(gw), Deposit: 1_000}}},
	}})
	for i := range maxUnlocking + 5 {
		c.block(approveTx(alice, uint64(i), addr(gw), 1_000-money.Amount(i+1)))
	}
	d := c.deposit(addr(alice), addr(gw))
	last := d.Unlocking[len(d.Unlocking)-1]
	if len(d.Unlocking) != maxUnlocking || last.Height != c.height+p.DepositUnlockBlocks || last.Amount != 6 {
		t.Errorf("%d entries, last %+v at height %d", len(d.Unlocking), last, c.height)
	}
	if d.Locked != 1_000-maxUnlocking-5 || d.Drawable(c.height) != 1_000 {
		t.Errorf("deposit %+v: the gateway can draw %d, want all 1000 until it unlocks", d, d.Drawable(c.height))
	}
	c.checkSupply(1_000)
}
