package ledger

import (
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// Payout is one account's reward in one epoch.
type Payout struct {
	Epoch   uint64       `json:"epoch"`
	Account keys.Address `json:"account"`
	Amount  money.Amount `json:"amount"`
}

// payoutLeafTag makes a payout leaf unlike any other signed or hashed bytes.
const payoutLeafTag = "idlegrid/payout/v1\n"

// Leaf is the payout's canonical bytes, a leaf of its epoch's Merkle tree:
// tag, epoch, length-prefixed account, amount.
func (p Payout) Leaf() []byte {
	e := enc{b: []byte(payoutLeafTag)}
	e.u64(p.Epoch)
	e.address(p.Account)
	e.amount(p.Amount)
	return e.b
}

// PayoutRoot is the RFC 6962 Merkle root over the payouts' leaves in the
// order given (the ledger sorts them by account).
func PayoutRoot(ps []Payout) receipt.Hash { return receipt.MerkleRoot(payoutLeafHashes(ps)) }

func payoutLeafHashes(ps []Payout) []receipt.Hash {
	leaves := make([]receipt.Hash, len(ps))
	for i, p := range ps {
		leaves[i] = receipt.LeafHash(p.Leaf())
	}
	return leaves
}

func encodePayouts(ps []Payout) []byte {
	e := enc{}
	e.u32(uint32(len(ps)))
	for _, p := range ps {
		e.address(p.Account)
		e.amount(p.Amount)
	}
	return e.b
}

func decodePayouts(epoch uint64, b []byte) ([]Payout, error) {
	d := dec{b: b}
	n := d.length(len(b)/12, "payout list")
	ps := make([]Payout, 0, n)
	for range n {
		ps = append(ps, Payout{Epoch: epoch, Account: d.address(), Amount: d.amount()})
	}
	return ps, d.end()
}

// Payouts returns a finished epoch's payouts, sorted by account.
func (v View) Payouts(epoch uint64) ([]Payout, error) {
	raw, err := v.R.Get([]byte(payoutsKey(epoch)))
	if err != nil || raw == nil {
		return nil, err
	}
	return decodePayouts(epoch, raw)
}
