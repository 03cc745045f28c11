package attack

import (
	"crypto/sha256"
	"testing"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
)

// memState is committed ledger state in memory.
type memState map[string][]byte

func (m memState) Get(k []byte) ([]byte, error) { return m[string(k)], nil }

// memChain is one ledger node in memory: the real state machine
// (ledger.Init, ledger.ExecuteBlock), blocks executed and committed one by
// one as a validator would, without consensus. The ledger attacks run
// against it through the ledger's exported API only.
type memChain struct {
	tb      testing.TB
	chainID string
	state   memState
	height  uint64
	appHash []byte
	nonce   map[keys.Address]uint64
}

func newMemChain(tb testing.TB, chainID string, g ledger.Genesis) *memChain {
	tb.Helper()
	c := &memChain{tb: tb, chainID: chainID, state: memState{}, nonce: map[keys.Address]uint64{}}
	b, err := ledger.Init(c.state, chainID, g)
	if err != nil {
		tb.Fatalf("genesis: %v", err)
	}
	c.commit(b.Changes())
	return c
}

func (c *memChain) commit(changes []ledger.Change) {
	for _, ch := range changes {
		if ch.Value == nil {
			delete(c.state, string(ch.Key))
		} else {
			c.state[string(ch.Key)] = ch.Value
		}
	}
	c.appHash = ledger.NextAppHash(c.appHash, changes)
}

// execute runs txs as the next block and commits it.
func (c *memChain) execute(txs ...[]byte) ledger.Executed {
	c.tb.Helper()
	out, err := ledger.ExecuteBlock(c.state, c.height+1, c.appHash, txs, nil)
	if err != nil {
		c.tb.Fatalf("block %d: %v", c.height+1, err)
	}
	c.commit(out.Changes)
	c.height++
	return out
}

// tx signs t from k with k's next nonce.
func (c *memChain) tx(k keys.PrivateKey, t ledger.Tx) []byte {
	t.ChainID = c.chainID
	a := k.Public().Address()
	t.Nonce = c.nonce[a]
	c.nonce[a]++
	t.Sign(k)
	return t.Bytes()
}

func (c *memChain) view() ledger.View { return ledger.View{R: c.state} }

// attackKey is a fixed key per name.
func attackKey(tb testing.TB, name string) keys.PrivateKey {
	tb.Helper()
	seed := sha256.Sum256([]byte("idlegrid attack key/" + name))
	k, err := keys.FromSeed(seed[:])
	if err != nil {
		tb.Fatal(err)
	}
	return k
}
