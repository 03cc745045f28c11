package ledger

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzParseGenesis: a genesis file comes from whoever started the network.
// ParseGenesis never panics; what it accepts starts a chain (Init
// succeeds) and reads back the same when written again.
func FuzzParseGenesis(f *testing.F) {
	g := fuzzGenesis(f)
	b, err := json.Marshal(g)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"accounts":[{"address":"idg0000000000000000000000000000000000000001","balance":5}]}`))
	f.Add([]byte(`{"params":{"supply_cap":1},"accounts":[{"address":"idg0000000000000000000000000000000000000001","balance":2}]}`))
	f.Add([]byte(`{"accounts":[],"validators":[{}]}`))
	f.Add([]byte(`{"params":{"protocol_fee_bps":0,"reward_max_paid_bps":0,"existential_deposit":1},"accounts":[]}`))
	// Deposits come out of the balance: two for one gateway add up, and
	// more than the balance is refused.
	f.Add([]byte(`{"accounts":[{"address":"idg0000000000000000000000000000000000000001","balance":5,"approvals":[{"gateway":"idg0000000000000000000000000000000000000002","deposit":2},{"gateway":"idg0000000000000000000000000000000000000002","deposit":3}]}]}`))
	f.Add([]byte(`{"accounts":[{"address":"idg0000000000000000000000000000000000000001","balance":5,"approvals":[{"gateway":"idg0000000000000000000000000000000000000002","deposit":6}]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := ParseGenesis(b)
		if err != nil {
			return
		}
		if _, err := Init(memState{}, testChainID, g); err != nil {
			t.Fatalf("accepted genesis does not start a chain: %v\n%s", err, b)
		}
		out, err := json.Marshal(g)
		if err != nil {
			t.Fatalf("accepted genesis cannot be written: %v", err)
		}
		back, err := ParseGenesis(out)
		if err != nil {
			t.Fatalf("written genesis no longer parses: %v\n%s", err, out)
		}
		if again, _ := json.Marshal(back); !bytes.Equal(again, out) {
			t.Fatalf("genesis changed when written and read again:\n%s\n%s", out, again)
		}
	})
}
