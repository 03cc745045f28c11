package chain

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	dbm "github.com/cometbft/cometbft-db"
	abci "github.com/cometbft/cometbft/abci/types"

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
		{PathAccount, string(addr), 0, `"balance"`},
		{PathAccount, "nope", QueryCodeBadRequest, "address"},
		{PathAccount, string(other.Public().Address()), QueryCodeNotFound, "account"},
		{PathParams, "", 0, `"min_provider_stake"`},
		{PathSupply, "", 0, ""},
		{PathEpoch, "", 0, `"end_height"`},
		{PathEpoch, "x", QueryCodeBadRequest, "want a number"},
		{PathEpoch, "7", QueryCodeNotFound, "finished epoch"},
		{PathPayouts, "1", QueryCodeNotFound, "finished epoch"},
		{PathPayout, "1/" + string(addr), QueryCodeNotFound, "no payout"},
		{PathPayout, "one", QueryCodeBadRequest, "EPOCH/ADDRESS"},
		{PathReceipt, "bad", QueryCodeBadRequest, "GATEWAY/REQUEST_ID"},
		{PathReceipt, string(addr) + "/r1", QueryCodeNotFound, "settled receipt"},
		{PathTx, "zz", QueryCodeBadRequest, "tx hash"},
		{PathProvider, string(addr), QueryCodeNotFound, "provider"},
		{PathCase, strings.Repeat("ab", 32), QueryCodeNotFound, "case"},
		{PathCases, "", 0, "[]"},
		{PathDeposit, string(addr) + "/" + string(other.Public().Address()), 0, `"drawable"`},
		{PathGovernance, "", 0, `"chain_id":"q"`},
		{"/nothing", "", QueryCodeBadRequest, "unknown query path"},
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
