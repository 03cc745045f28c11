package ledger

import (
	"fmt"
	"slices"
	"strings"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// Block executes one block's transactions against committed state. Writes
// are staged in two layers: the current transaction's, which a failing
// transaction discards, and the block's, which the host persists in one
// batch after the block (Changes). Nothing here reads a clock or iterates a
// map in an order that matters, so every node computes the same changes.
type Block struct {
	base    Reader
	chainID string
	height  uint64
	params  Params
	writes  map[string]change // the block's staged writes
	tx      map[string]change // the current transaction's staged writes
}

type change struct {
	value   []byte
	deleted bool
}

// Change is one staged write: Value nil means the key is deleted.
type Change struct {
	Key   []byte
	Value []byte
}

// Event is what a transaction or block reports, for clients and indexers.
type Event struct {
	Type  string
	Attrs []Attr
}

// Attr is one key/value of an event; Index asks the host to index it.
type Attr struct {
	Key, Value string
	Index      bool
}

// Result is the outcome of one transaction.
type Result struct {
	// Code is CodeOK or the reason the transaction failed.
	Code   uint32
	Log    string
	Events []Event
}

// NewBlock starts block height on top of committed state.
func NewBlock(base Reader, height uint64) (*Block, error) {
	b := &Block{base: base, height: height, writes: map[string]change{}}
	id, err := base.Get([]byte(keyChainID))
	if err != nil {
		return nil, fmt.Errorf("ledger: read chain id: %w", err)
	}
	if len(id) == 0 {
		return nil, fmt.Errorf("ledger: state has no chain id (genesis not applied)")
	}
	b.chainID = string(id)
	raw, err := base.Get([]byte(keyParams))
	if err != nil {
		return nil, fmt.Errorf("ledger: read params: %w", err)
	}
	if b.params, err = decodeParams(raw); err != nil {
		return nil, fmt.Errorf("ledger: params: %w", err)
	}
	return b, nil
}

// Height is the block's height.
func (b *Block) Height() uint64 { return b.height }

// Begin runs what happens at the start of every block before its
// transactions: escrowed earnings that mature at this height join their
// owners' balances, and verification cases that mature count for or
// against their providers.
func (b *Block) Begin() ([]Event, error) {
	events, err := b.releaseEscrow()
	if err != nil {
		return nil, err
	}
	matured, err := b.matureCases()
	if err != nil {
		return nil, err
	}
	b.commitTx()
	return append(events, matured...), nil
}

func (b *Block) releaseEscrow() ([]Event, error) {
	key := dueKey(b.height)
	raw, err := b.get(key)
	if err != nil || raw == nil {
		return nil, err
	}
	d := dec{b: raw}
	due := d.addresses()
	if err := d.end(); err != nil {
		return nil, fmt.Errorf("ledger: due list at %d: %w", b.height, err)
	}
	var events []Event
	for _, addr := range due {
		a, ok, err := b.account(addr)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		var released money.Amount
		kept := a.Escrow[:0]
		for _, e := range a.Escrow {
			if e.Height <= b.height {
				released += e.Amount // escrow entries came out of the supply: no overflow
			} else {
				kept = append(kept, e)
			}
		}
		if released == 0 {
			continue
		}
		a.Escrow = kept
		if a.Balance, err = a.Balance.Add(released); err != nil {
			return nil, fmt.Errorf("ledger: release escrow of %s: %w", addr, err)
		}
		b.putAccount(addr, &a)
		events = append(events, Event{Type: "escrow_released", Attrs: []Attr{
			{Key: "account", Value: string(addr), Index: true},
			{Key: "amount", Value: fmt.Sprint(uint64(released))},
		}})
	}
	b.delete(key)
	return events, nil
}

// Apply executes one transaction. A transaction that is malformed, for
// another chain, badly signed or out of order changes nothing. One that
// passes those checks consumes its nonce even if its effect fails (so the
// sender's later transactions stay valid). The error is only for storage
// failures, which must stop the node rather than diverge.
func (b *Block) Apply(raw []byte) (Result, error) {
	hash := TxHash(raw)
	res, spent, err := b.apply(raw, hash)
	if err != nil {
		b.dropTx()
		return Result{}, err
	}
	// Only a transaction that spent its nonce is recorded: one rejected
	// before changes nothing, and a replay (same bytes, same hash) must not
	// overwrite the record of the original.
	if spent {
		rec := TxRecord{Height: b.height, Code: res.Code}
		b.set(txKey(hash), rec.encode())
	}
	b.commitTx()
	return res, nil
}

// apply executes raw, whose TxHash is hash; spent reports whether it got
// as far as spending the sender's nonce.
func (b *Block) apply(raw []byte, hash receipt.Hash) (res Result, spent bool, err error) {
	t, err := DecodeTx(raw)
	if err != nil {
		return fail(CodeMalformed, err.Error()), false, nil
	}
	if t.ChainID != b.chainID {
		return fail(CodeWrongChain, fmt.Sprintf("transaction for chain %q, this is %q", t.ChainID, b.chainID)), false, nil
	}
	if !t.verifyDecoded(raw) {
		return fail(CodeBadSignature, "signature does not verify for the sender key"), false, nil
	}
	sender := t.Sender.Address()
	acct, exists, err := b.account(sender)
	if err != nil {
		return Result{}, false, err
	}
	if !exists {
		// An address comes into existence by receiving money; a key that
		// never did cannot fill the chain with transactions.
		return fail(CodeUnknownAccount, fmt.Sprintf("account %s does not exist", sender)), false, nil
	}
	if t.Nonce != acct.Nonce {
		return fail(CodeBadNonce, fmt.Sprintf("nonce %d, account %s expects %d", t.Nonce, sender, acct.Nonce)), false, nil
	}
	acct.Nonce++
	acct.PubKey = t.Sender
	b.putAccount(sender, &acct)
	b.commitTx() // the nonce is spent whatever the effect does

	x := &txn{Block: b, tx: &t, sender: sender, hash: hash}
	res, err = x.run()
	if err != nil {
		return Result{}, true, err
	}
	if res.Code != CodeOK {
		b.dropTx()
	}
	return res, true, nil
}

// Changes returns the block's writes sorted by key: what the host persists
// and hashes.
func (b *Block) Changes() []Change {
	out := make([]Change, 0, len(b.writes))
	for k, c := range b.writes {
		ch := Change{Key: []byte(k)}
		if !c.deleted {
			ch.Value = c.value
			if ch.Value == nil {
				ch.Value = []byte{}
			}
		}
		out = append(out, ch)
	}
	slices.SortFunc(out, func(x, y Change) int { return strings.Compare(string(x.Key), string(y.Key)) })
	return out
}

func (b *Block) get(key string) ([]byte, error) {
	if c, ok := b.tx[key]; ok {
		return c.live()
	}
	if c, ok := b.writes[key]; ok {
		return c.live()
	}
	v, err := b.base.Get([]byte(key))
	if err != nil {
		return nil, fmt.Errorf("ledger: read state: %w", err)
	}
	return v, nil
}

// staged reports whether key has a live value written in this block (by
// the current transaction or an earlier one), without reading committed
// state.
func (b *Block) staged(key string) bool {
	c, ok := b.tx[key]
	if !ok {
		c, ok = b.writes[key]
	}
	return ok && !c.deleted
}

func (c change) live() ([]byte, error) {
	if c.deleted {
		return nil, nil
	}
	return c.value, nil
}

func (b *Block) set(key string, v []byte) {
	if b.tx == nil {
		b.tx = map[string]change{}
	}
	b.tx[key] = change{value: v}
}

func (b *Block) delete(key string) {
	if b.tx == nil {
		b.tx = map[string]change{}
	}
	b.tx[key] = change{deleted: true}
}

func (b *Block) commitTx() {
	for k, c := range b.tx {
		b.writes[k] = c
	}
	clear(b.tx)
}

func (b *Block) dropTx() { clear(b.tx) }

// account reads an account; a missing one is the zero account.
func (b *Block) account(addr keys.Address) (Account, bool, error) {
	raw, err := b.get(accountKey(addr))
	if err != nil || raw == nil {
		return Account{}, false, err
	}
	a, err := decodeAccount(raw)
	if err != nil {
		return Account{}, false, fmt.Errorf("ledger: account %s: %w", addr, err)
	}
	return a, true, nil
}

func (b *Block) putAccount(addr keys.Address, a *Account) { b.set(accountKey(addr), a.encode()) }

// Executed is one block's outcome.
type Executed struct {
	// Results are the transactions' results, in block order.
	Results []Result
	// Events happened at the block's start (escrow releases) and end
	// (epoch payouts).
	Events []Event
	// Changes are the sorted writes to persist; AppHash chains them onto
	// the previous app hash.
	Changes []Change
	AppHash []byte
}

// ExecuteBlock runs block height with txs on committed state whose app hash
// is prevHash; signers are the CometBFT addresses of the validators whose
// signatures the block's last commit carries. It is the one definition of
// what a block does: the chain application and the auditor both call it,
// so they cannot disagree.
func ExecuteBlock(base Reader, height uint64, prevHash []byte, txs [][]byte, signers [][]byte) (Executed, error) {
	b, err := NewBlock(base, height)
	if err != nil {
		return Executed{}, err
	}
	var out Executed
	if out.Events, err = b.Begin(); err != nil {
		return Executed{}, err
	}
	out.Results = make([]Result, len(txs))
	for i, tx := range txs {
		if out.Results[i], err = b.Apply(tx); err != nil {
			return Executed{}, fmt.Errorf("block %d tx %d: %w", height, i, err)
		}
	}
	end, err := b.End(signers, len(txs) > 0)
	if err != nil {
		return Executed{}, fmt.Errorf("block %d end: %w", height, err)
	}
	out.Events = append(out.Events, end...)
	out.Changes = b.Changes()
	out.AppHash = NextAppHash(prevHash, out.Changes)
	return out, nil
}
