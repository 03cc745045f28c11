package ledger

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// Bounds on what one sender may have waiting in the mempool: the chain
// charges no fee per transaction, so without them one funded account could
// fill the mempool (and blocks) with a long run of consecutive nonces. A
// gateway keeps a few settle-batches in flight (2 by default), far below.
const (
	MaxPendingTxs   = 64
	MaxPendingBytes = 32 << 20 // four of the largest settle-batches
)

// Checker admits transactions to the mempool: the cheap checks (form,
// chain, signature, nonce, funds, the sender's role for settle-batch, the
// sender's pending bounds) against committed state plus the transactions
// it has already admitted since. Receipt signatures are left to block
// execution. A host makes a new Checker after every commit and re-checks
// what is still pending.
type Checker struct {
	view    View
	chainID string
	params  Params
	nonce   map[keys.Address]uint64       // next nonce after admitted txs
	spent   map[keys.Address]money.Amount // balance committed by admitted txs
	bytes   map[keys.Address]int          // size of admitted txs
}

// NewChecker reads chain id and params from committed state.
func NewChecker(base Reader) (*Checker, error) {
	b, err := NewBlock(base, 0)
	if err != nil {
		return nil, err
	}
	return &Checker{view: View{base}, chainID: b.chainID, params: b.params,
		nonce: map[keys.Address]uint64{}, spent: map[keys.Address]money.Amount{}, bytes: map[keys.Address]int{}}, nil
}

// Check decides whether raw may enter the mempool, and if so counts its
// nonce and spending against the sender.
func (c *Checker) Check(raw []byte) (Result, error) { return c.check(raw, false) }

// Recheck checks again a transaction this host admitted before, after a
// commit: its bytes have not changed, so its signature and batch root are
// not verified again, only what the commit may have changed (nonce, funds,
// the sender's role and stake).
func (c *Checker) Recheck(raw []byte) (Result, error) { return c.check(raw, true) }

func (c *Checker) check(raw []byte, again bool) (Result, error) {
	t, err := DecodeTx(raw)
	if err != nil {
		return fail(CodeMalformed, err.Error()), nil
	}
	if t.ChainID != c.chainID {
		return fail(CodeWrongChain, fmt.Sprintf("transaction for chain %q, this is %q", t.ChainID, c.chainID)), nil
	}
	sender := t.Sender.Address()
	a, exists, err := c.view.Account(sender)
	if err != nil {
		return Result{}, err
	}
	if !exists {
		return fail(CodeUnknownAccount, fmt.Sprintf("account %s does not exist", sender)), nil
	}
	want, pending := c.nonce[sender]
	if !pending {
		want = a.Nonce
	}
	if t.Nonce != want {
		return fail(CodeBadNonce, fmt.Sprintf("nonce %d, account %s expects %d", t.Nonce, sender, want)), nil
	}
	if n, size := want-a.Nonce, c.bytes[sender]; n >= MaxPendingTxs || size+len(raw) > MaxPendingBytes {
		return fail(CodeTooManyPending, fmt.Sprintf("account %s has %d transactions (%d bytes) waiting for a block; at most %d (%d bytes) per sender: retry after the next block",
			sender, n, size, MaxPendingTxs, MaxPendingBytes)), nil
	}
	if !again && !t.verifyDecoded(raw) {
		return fail(CodeBadSignature, "signature does not verify for the sender key"), nil
	}
	var spend money.Amount
	switch t.Kind {
	case KindTransfer, KindStake:
		spend = t.Amount
		if t.Amount == 0 {
			return fail(CodeInvalid, t.Kind.String()+" of zero"), nil
		}
		if t.Kind == KindTransfer && t.To == sender {
			return fail(CodeInvalid, "transfer to the sender itself"), nil
		}
		if t.Kind == KindTransfer && t.Amount < c.params.ExistentialDeposit {
			if _, exists, err := c.view.Account(t.To); err != nil {
				return Result{}, err
			} else if !exists {
				return fail(CodeInvalid, fmt.Sprintf("transfer of %d would create account %s: a new account needs at least the existential deposit %d", t.Amount, t.To, c.params.ExistentialDeposit)), nil
			}
		}
	case KindUnstake:
		if t.Amount == 0 {
			return fail(CodeInvalid, "unstake of zero"), nil
		}
		if t.Amount > a.Stake {
			return fail(CodeInsufficientFunds, fmt.Sprintf("unstake %d, stake %d", t.Amount, a.Stake)), nil
		}
	case KindApprove:
		if t.Gateway == sender {
			return fail(CodeInvalid, "approve: an account cannot approve itself"), nil
		}
		// Raising a deposit locks balance: count it like a transfer (what
		// returns to the balance on the way is left out, erring toward
		// refusing).
		d, err := c.view.Deposit(sender, t.Gateway)
		if err != nil {
			return Result{}, err
		}
		spend = t.Amount - min(t.Amount, d.Locked)
	case KindSettleBatch:
		if res, bad := c.checkBatch(&t, &a, again); bad {
			return res, nil
		}
	}
	if spend > 0 {
		used := c.spent[sender]
		free, err := a.Balance.Sub(used)
		if err != nil || free < spend {
			return fail(CodeInsufficientFunds, fmt.Sprintf("balance %d (%d pending), %s %d", a.Balance, used, t.Kind, spend)), nil
		}
		c.spent[sender] = used + spend
	}
	c.nonce[sender] = want + 1
	c.bytes[sender] += len(raw)
	return ok(), nil
}

func (c *Checker) checkBatch(t *Tx, gw *Account, again bool) (Result, bool) {
	n := len(t.Receipts)
	switch {
	case n == 0:
		return fail(CodeBadBatch, "settle-batch without receipts"), true
	case n > int(c.params.MaxBatchReceipts):
		return fail(CodeBadBatch, fmt.Sprintf("settle-batch of %d receipts exceeds the limit of %d", n, c.params.MaxBatchReceipts)), true
	case !again && BatchRoot(t.Receipts) != t.Root:
		return fail(CodeBadBatch, "settle-batch root does not match its receipts"), true
	}
	x := txn{tx: t, sender: t.Sender.Address()}
	return x.checkRole(gw, RoleGateway, c.params.MinGatewayStake)
}

// NextAppHash chains the application hash over one block's changes:
// sha256(tag ‖ previous ‖ each change as length-prefixed key, a deleted
// flag and length-prefixed value, in key order). With no change the hash
// stays the same, so the app hash moves exactly when state does.
func NextAppHash(prev []byte, changes []Change) []byte {
	if len(changes) == 0 {
		return prev
	}
	h := sha256.New()
	h.Write([]byte("idlegrid/apphash/v1\n"))
	h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(prev))))
	h.Write(prev)
	var buf []byte
	for _, c := range changes {
		buf = binary.BigEndian.AppendUint32(buf[:0], uint32(len(c.Key)))
		buf = append(buf, c.Key...)
		if c.Value == nil {
			buf = append(buf, 1)
		} else {
			buf = append(buf, 0)
			buf = binary.BigEndian.AppendUint32(buf, uint32(len(c.Value)))
		}
		h.Write(buf)
		h.Write(c.Value)
	}
	return h.Sum(nil)
}

// View reads committed state for queries.
type View struct{ R Reader }

// Account returns the account at addr; ok is false if it does not exist.
func (v View) Account(addr keys.Address) (Account, bool, error) {
	raw, err := v.R.Get([]byte(accountKey(addr)))
	if err != nil || raw == nil {
		return Account{}, false, err
	}
	a, err := decodeAccount(raw)
	return a, err == nil, err
}

// Settlement returns how gateway's receipt with requestID was settled.
func (v View) Settlement(gateway keys.Address, requestID string) (Settlement, bool, error) {
	raw, err := v.R.Get([]byte(receiptKey(gateway, requestID)))
	if err != nil || raw == nil {
		return Settlement{}, false, err
	}
	s, err := decodeSettlement(raw)
	return s, err == nil, err
}

// Tx returns where and how the transaction with hash was executed.
func (v View) Tx(hash receipt.Hash) (TxRecord, bool, error) {
	raw, err := v.R.Get([]byte(txKey(hash)))
	if err != nil || raw == nil {
		return TxRecord{}, false, err
	}
	t, err := decodeTxRecord(raw)
	return t, err == nil, err
}

// Deposit is what consumer locked for gateway.
func (v View) Deposit(consumer, gateway keys.Address) (Deposit, error) {
	raw, err := v.R.Get([]byte(depositKey(consumer, gateway)))
	if err != nil {
		return Deposit{}, err
	}
	return decodeDeposit(raw)
}

// Params are the chain's parameters.
func (v View) Params() (Params, error) {
	raw, err := v.R.Get([]byte(keyParams))
	if err != nil {
		return Params{}, err
	}
	return decodeParams(raw)
}

// Supply is the chain's total money and how much was minted and burned.
func (v View) Supply() (Supply, error) {
	raw, err := v.R.Get([]byte(keySupply))
	if err != nil {
		return Supply{}, err
	}
	return decodeSupply(raw)
}

// ChainID is the chain id written at genesis.
func (v View) ChainID() (string, error) {
	raw, err := v.R.Get([]byte(keyChainID))
	return string(raw), err
}
