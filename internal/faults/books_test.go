package faults

import (
	"strings"
	"testing"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

func pub(t *testing.T) keys.PublicKey {
	t.Helper()
	k, err := keys.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k.Public()
}

// TestReconcile: the books balance only when every account moved exactly
// what the settled receipts say, fees rounded down per receipt.
func TestReconcile(t *testing.T) {
	params := ledger.Params{ProtocolFeeBps: 100, GatewayFeeBps: 500}
	gw, pv, con := pub(t), pub(t), pub(t).Address()
	before := snapshot{
		accounts: map[keys.Address]holdings{
			ledger.TreasuryAddress: {},
			gw.Address():           {stake: 1000},
			pv.Address():           {stake: 100},
			con:                    {balance: 500},
		},
		deposits: map[[2]keys.Address]money.Amount{{con, gw.Address()}: 10_000},
	}
	// 1,999 units: fees 19 (1%) and 99 (5%), rounded down; the provider
	// keeps 1,881. 199 units: fees 1 and 9; provider 189.
	rs := map[string]settled{
		"a":    {r: receipt.Receipt{RequestID: "a", Gateway: gw, Provider: pv, Consumer: con, Amount: 1999}},
		"b-c1": {r: receipt.Receipt{RequestID: "b-c1", Gateway: gw, Provider: pv, Consumer: con, Amount: 199}},
	}
	good := func() snapshot {
		return snapshot{
			accounts: map[keys.Address]holdings{
				ledger.TreasuryAddress: {balance: 20},
				gw.Address():           {balance: 108, stake: 1000},
				pv.Address():           {balance: 1000, escrow: 1070, stake: 100},
				con:                    {balance: 500},
			},
			deposits: map[[2]keys.Address]money.Amount{{con, gw.Address()}: 10_000 - 2198},
		}
	}
	tests := []struct {
		name   string
		change func(s *snapshot)
		rs     map[string]settled
		want   string // a substring of the problem; "" for none
	}{
		{name: "balanced", change: func(*snapshot) {}},
		{name: "provider short by one unit", change: func(s *snapshot) {
			h := s.accounts[pv.Address()]
			h.escrow--
			s.accounts[pv.Address()] = h
		}, want: string(pv.Address())},
		{name: "consumer charged twice", change: func(s *snapshot) {
			h := s.accounts[con]
			h.balance -= 199
			s.accounts[con] = h
		}, want: string(con)},
		{name: "deposit not spent", change: func(s *snapshot) {
			s.deposits[[2]keys.Address{con, gw.Address()}] += 199
		}, want: "deposit"},
		{name: "treasury fee not rounded down", change: func(s *snapshot) {
			h := s.accounts[ledger.TreasuryAddress]
			h.balance++
			s.accounts[ledger.TreasuryAddress] = h
		}, want: string(ledger.TreasuryAddress)},
		{name: "paid by the gateway's stake", rs: map[string]settled{
			"a":    rs["a"],
			"b-c1": {r: rs["b-c1"].r, stakePaid: 199},
		}, change: func(s *snapshot) {
			s.deposits[[2]keys.Address{con, gw.Address()}] += 199
			g := s.accounts[gw.Address()]
			g.stake -= 199
			s.accounts[gw.Address()] = g
		}},
		{name: "receipt of an unknown provider", rs: map[string]settled{
			"x": {r: receipt.Receipt{RequestID: "x", Gateway: gw, Provider: pub(t), Consumer: con, Amount: 1}},
		}, change: func(*snapshot) {}, want: "not one of the run's"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			after := good()
			tt.change(&after)
			settledRs := rs
			if tt.rs != nil {
				settledRs = tt.rs
			}
			problems := reconcile(params, before, after, settledRs)
			switch {
			case tt.want == "" && len(problems) > 0:
				t.Fatalf("problems on balanced books: %v", problems)
			case tt.want != "" && !strings.Contains(strings.Join(problems, "\n"), tt.want):
				t.Fatalf("problems %v; want one about %q", problems, tt.want)
			}
		})
	}
}

func TestBaseID(t *testing.T) {
	for in, want := range map[string]string{
		"chatcmpl-abc":     "chatcmpl-abc",
		"chatcmpl-abc-c1":  "chatcmpl-abc",
		"chatcmpl-abc-c12": "chatcmpl-abc",
		"chatcmpl-c1x":     "chatcmpl-c1x",
	} {
		if got := baseID(in); got != want {
			t.Errorf("baseID(%q) = %q, want %q", in, got, want)
		}
	}
}
