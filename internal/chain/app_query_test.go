package chain

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	dbm "github.com/cometbft/cometbft-db"
	abci "github.com/cometbft/cometbft/abci/types"

	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
)

// TestQueryCodes: each query path answers found values, and bad arguments,
// missing entries and unknown paths with their result codes and a reason.
func TestQueryCodes(t *testing.T) {
	app, err := NewApp(dbm.NewMemDB(), nil)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := keys.Generate()
	addr := k.Public().Address()
	g := ledger.Genesis{Params: ledger.DefaultParams(), Accounts: []ledger.GenesisAccount{{Address: addr, PubKey: k.Public(), Balance: 5 * money.Unit}}}
	state, err := json.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := app.InitChain(context.Background(), &abci.InitChainRequest{ChainId: "q", AppStateBytes: state, InitialHeight: 1}); err != nil {
		t.Fatal(err)
	}
	other, _ := keys.Generate()
	for _, tt := range []struct {
		path, data string
		code       uint32
		says       string
	}{
		{chainrpc.PathAccount, string(addr), 0, `"balance"`},
		{chainrpc.PathAccount, "nope", chainrpc.QueryCodeBadRequest, "address"},
		{chainrpc.PathAccount, string(other.Public().Address()), chainrpc.QueryCodeNotFound, "account"},
		{chainrpc.PathParams, "", 0, `"min_provider_stake"`},
		{chainrpc.PathSupply, "", 0, ""},
		{chainrpc.PathEpoch, "", 0, `"end_height"`},
		{chainrpc.PathEpoch, "x", chainrpc.QueryCodeBadRequest, "want a number"},
		{chainrpc.PathEpoch, "7", chainrpc.QueryCodeNotFound, "finished epoch"},
		{chainrpc.PathPayouts, "1", chainrpc.QueryCodeNotFound, "finished epoch"},
		{chainrpc.PathPayout, "1/" + string(addr), chainrpc.QueryCodeNotFound, "no payout"},
		{chainrpc.PathPayout, "one", chainrpc.QueryCodeBadRequest, "EPOCH/ADDRESS"},
		{chainrpc.PathReceipt, "bad", chainrpc.QueryCodeBadRequest, "GATEWAY/REQUEST_ID"},
		{chainrpc.PathReceipt, string(addr) + "/r1", chainrpc.QueryCodeNotFound, "settled receipt"},
		{chainrpc.PathTx, "zz", chainrpc.QueryCodeBadRequest, "tx hash"},
		{chainrpc.PathProvider, string(addr), chainrpc.QueryCodeNotFound, "provider"},
		{chainrpc.PathCase, strings.Repeat("ab", 32), chainrpc.QueryCodeNotFound, "case"},
		{chainrpc.PathCases, "", 0, "[]"},
		{chainrpc.PathDeposit, string(addr) + "/" + string(other.Public().Address()), 0, `"drawable"`},
		{chainrpc.PathGovernance, "", 0, `"chain_id":"q"`},
		{"/nothing", "", chainrpc.QueryCodeBadRequest, "unknown query path"},
	} {
		resp, err := app.Query(context.Background(), &abci.QueryRequest{Path: tt.path, Data: []byte(tt.data)})
		if err != nil {
			t.Fatal(err)
		}
		got := resp.Log
		if resp.Code == 0 {
			got = string(resp.Value)
		}
		if resp.Code != tt.code || !strings.Contains(got, tt.says) {
			t.Errorf("%s %q: code %d %s, want code %d with %q", tt.path, tt.data, resp.Code, got, tt.code, tt.says)
		}
	}
}
