package ledger

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestInitWritesGenesis(t *testing.T) {
	w := newWorld(t)
	v := w.view()
	if id, err := v.ChainID(); err != nil || id != testChainID {
		t.Errorf("chain id %q %v", id, err)
	}
	if p, err := v.Params(); err != nil || !reflect.DeepEqual(p, testParams()) {
		t.Errorf("params %+v %v", p, err)
	}
	if s := w.supply(); s != (Supply{Total: worldSupply, Minted: worldSupply}) {
		t.Errorf("supply %+v, want total = minted = %d", s, worldSupply)
	}
	w.checkSupply(worldSupply)
	checkAccount(t, w.testChain, addr(w.gw), Account{PubKey: w.gw.Public(), Balance: gwBalance, Stake: gwStake, Roles: RoleGateway, GatewayInfo: "https://gw.example"})
	checkAccount(t, w.testChain, addr(w.bob), Account{Balance: bobBalance})
	if got := w.allowance(addr(w.alice), addr(w.gw)); got != aliceAllowance {
		t.Errorf("genesis allowance %d", got)
	}
	if len(w.appHash) != 32 {
		t.Errorf("genesis app hash %x", w.appHash)
	}
	// Genesis order does not matter.
	g := fuzzGenesis(t)
	a := newChain(t, g)
	g.Accounts[0], g.Accounts[3] = g.Accounts[3], g.Accounts[0]
	if b := newChain(t, g); !reflect.DeepEqual(a.state, b.state) || string(a.appHash) != string(b.appHash) {
		t.Error("genesis state depends on the order of accounts")
	}
}

func TestGenesisValidate(t *testing.T) {
	k, other := testKey(t, "k"), testKey(t, "other")
	ok := func() Genesis {
		return Genesis{Params: testParams(), Accounts: []GenesisAccount{
			{Address: addr(k), PubKey: k.Public(), Balance: 5, Stake: 5, Roles: []string{"provider"}},
		}}
	}
	tests := []struct {
		name string
		edit func(g *Genesis)
		want string
	}{
		{"fees over 100%", func(g *Genesis) { g.Params.GatewayFeeBps, g.Params.ProtocolFeeBps = 9_000, 1_001 }, "exceed"},
		{"no batch size", func(g *Genesis) { g.Params.MaxBatchReceipts = 0 }, "max_batch_receipts"},
		{"reward cap at the protocol fee", func(g *Genesis) { g.Params.RewardMaxPaidBps = g.Params.ProtocolFeeBps }, "reward_max_paid_bps"},
		{"reward cap with no protocol fee", func(g *Genesis) { g.Params.ProtocolFeeBps, g.Params.RewardMaxPaidBps = 0, 1 }, "reward_max_paid_bps"},
		{"bad address", func(g *Genesis) { g.Accounts[0].Address = "idg123" }, "address"},
		{"listed twice", func(g *Genesis) { g.Accounts = append(g.Accounts, g.Accounts[0]) }, "twice"},
		{"key of another address", func(g *Genesis) { g.Accounts[0].PubKey = other.Public() }, "belongs to"},
		{"role without key", func(g *Genesis) { g.Accounts[0].PubKey = [32]byte{} }, "pub_key"},
		{"unknown role", func(g *Genesis) { g.Accounts[0].Roles = []string{"validator"} }, "validator"},
		{"long info", func(g *Genesis) { g.Accounts[0].Info = strings.Repeat("i", maxMetadataBytes+1) }, "info"},
		{"bad approval", func(g *Genesis) {
			g.Accounts[0].Approvals = []GenesisApproval{{Gateway: "nobody", Deposit: 1}}
		}, "approval"},
	}
	if g := ok(); g.Validate() != nil {
		t.Fatalf("valid genesis: %v", g.Validate())
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := ok()
			tt.edit(&g)
			err := g.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate: %v, want an error about %q", err, tt.want)
			}
			if _, err := Init(memState{}, testChainID, g); err == nil {
				t.Fatal("Init accepted it")
			}
		})
	}
	for _, id := range []string{"", strings.Repeat("c", 65)} {
		if _, err := Init(memState{}, id, ok()); err == nil {
			t.Errorf("Init accepted chain id %q", id)
		}
	}
}

func TestParseGenesis(t *testing.T) {
	k := testKey(t, "k")
	g := Genesis{Params: DefaultParams(), Accounts: []GenesisAccount{
		{Address: addr(k), PubKey: k.Public(), Balance: 10, Stake: 3, Roles: []string{"gateway"}, Info: "i",
			Approvals: []GenesisApproval{{Gateway: addr(testKey(t, "gw")), Deposit: 9}}},
		{Address: addr(testKey(t, "plain")), Balance: 1},
	}}
	b, err := json.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseGenesis(b)
	if err != nil || !reflect.DeepEqual(got, g) {
		t.Fatalf("ParseGenesis: %+v %v", got, err)
	}
	typo := strings.Replace(string(b), `"unbonding_blocks"`, `"unbonding_block"`, 1)
	if _, err := ParseGenesis([]byte(typo)); err == nil {
		t.Fatal("ParseGenesis accepted an unknown field")
	}
}
