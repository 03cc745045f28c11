package chainrpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// ErrNotFound is wrapped when a query names an account, receipt or
// transaction the ledger does not have.
var ErrNotFound = errors.New("not found on the ledger")

// StateReader reads the ledger's state through a Client with typed results.
type StateReader struct{ Client Client }

func (l StateReader) query(ctx context.Context, path, arg string, v any) error {
	raw, err := l.Client.Query(ctx, path, []byte(arg))
	var qe *QueryError
	if errors.As(err, &qe) && qe.Code == QueryCodeNotFound {
		return fmt.Errorf("%s %q: %w", path, arg, ErrNotFound)
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("query %s: decode answer: %w", path, err)
	}
	return nil
}

// Account returns an account; ErrNotFound if it never received anything.
func (l StateReader) Account(ctx context.Context, addr keys.Address) (AccountInfo, error) {
	var a AccountInfo
	return a, l.query(ctx, PathAccount, string(addr), &a)
}

// Settlement says how and when gateway's receipt requestID was settled.
func (l StateReader) Settlement(ctx context.Context, gateway keys.Address, requestID string) (ledger.Settlement, error) {
	var s ledger.Settlement
	return s, l.query(ctx, PathReceipt, ReceiptRef(gateway, requestID), &s)
}

// Tx says where a transaction ran and with which code.
func (l StateReader) Tx(ctx context.Context, hash receipt.Hash) (ledger.TxRecord, error) {
	var t ledger.TxRecord
	return t, l.query(ctx, PathTx, hash.String(), &t)
}

// Deposit is what consumer locked for gateway; an empty one when none.
func (l StateReader) Deposit(ctx context.Context, consumer, gateway keys.Address) (DepositInfo, error) {
	var d DepositInfo
	return d, l.query(ctx, PathDeposit, string(consumer)+"/"+string(gateway), &d)
}

// Params are the chain's parameters.
func (l StateReader) Params(ctx context.Context) (ledger.Params, error) {
	var p ledger.Params
	return p, l.query(ctx, PathParams, "", &p)
}

// Supply is the chain's money supply.
func (l StateReader) Supply(ctx context.Context) (ledger.Supply, error) {
	var s ledger.Supply
	return s, l.query(ctx, PathSupply, "", &s)
}

// EpochState is the running epoch.
func (l StateReader) EpochState(ctx context.Context) (EpochInfo, error) {
	var e EpochInfo
	return e, l.query(ctx, PathEpoch, "", &e)
}

// Epoch is a finished epoch's record; ErrNotFound if it has not ended.
func (l StateReader) Epoch(ctx context.Context, n uint64) (ledger.EpochRecord, error) {
	var r ledger.EpochRecord
	return r, l.query(ctx, PathEpoch, strconv.FormatUint(n, 10), &r)
}

// Payouts are a finished epoch's payouts, sorted by account.
func (l StateReader) Payouts(ctx context.Context, n uint64) ([]ledger.Payout, error) {
	var ps []ledger.Payout
	return ps, l.query(ctx, PathPayouts, strconv.FormatUint(n, 10), &ps)
}

// PayoutProof is the node's proof of an account's payout in an epoch;
// ErrNotFound when the account was not paid in it. Check it with
// PayoutProof.Verify against a root you trust.
func (l StateReader) PayoutProof(ctx context.Context, epoch uint64, addr keys.Address) (ledger.PayoutProof, error) {
	var p ledger.PayoutProof
	return p, l.query(ctx, PathPayout, strconv.FormatUint(epoch, 10)+"/"+string(addr), &p)
}

// Provider is a provider's verification record and reputation.
func (l StateReader) Provider(ctx context.Context, addr keys.Address) (ProviderInfo, error) {
	var p ProviderInfo
	return p, l.query(ctx, PathProvider, string(addr), &p)
}

// Case is what verifiers said about a piece of evidence.
func (l StateReader) Case(ctx context.Context, evidence receipt.Hash) (ledger.Case, error) {
	var c ledger.Case
	return c, l.query(ctx, PathCase, evidence.String(), &c)
}

// PassedWith is how many cases the provider passed serving digest, as its
// record on the ledger counts them (ProviderRecord.Passed): what a
// gateway's probation per (provider, digest) counts.
func (l StateReader) PassedWith(ctx context.Context, addr keys.Address, digest string) (uint64, error) {
	p, err := l.Provider(ctx, addr)
	if err != nil {
		return 0, err
	}
	return p.Passed.Passes(digest), nil
}

// OpenCases lists the cases still collecting verdicts, with the texts of
// canary cases.
func (l StateReader) OpenCases(ctx context.Context) ([]OpenCase, error) {
	var cs []OpenCase
	return cs, l.query(ctx, PathCases, "", &cs)
}

// Governance is who approves parameter changes, and the version they sign.
func (l StateReader) Governance(ctx context.Context) (GovernanceInfo, error) {
	var g GovernanceInfo
	return g, l.query(ctx, PathGovernance, "", &g)
}

// Signer sends transactions from one key, numbering them: it keeps the next
// nonce so several transactions can be in flight at once, and re-reads it
// from the ledger whenever a transaction is refused for its nonce (another
// program sent from the same key, or a transaction was lost).
type Signer struct {
	ledger  StateReader
	key     keys.PrivateKey
	chainID string

	mu    sync.Mutex // serialises numbering and broadcasting, so nonces reach the mempool in order
	nonce uint64
	known bool

	// also are other validators' clients: each transaction is handed to
	// them too, so whichever proposes next has it without waiting for
	// mempool gossip.
	also []Client
}

// BroadcastAlso makes the signer hand every transaction to these nodes too,
// best effort, besides the one it waits on.
func (s *Signer) BroadcastAlso(cs ...Client) { s.also = append(s.also, cs...) }

// NewSigner returns a Signer for key on chainID.
func NewSigner(c Client, key keys.PrivateKey, chainID string) *Signer {
	return &Signer{ledger: StateReader{c}, key: key, chainID: chainID}
}

// Address is the signer's account.
func (s *Signer) Address() keys.Address { return s.key.Public().Address() }

// Params are the chain's current parameters.
func (s *Signer) Params(ctx context.Context) (ledger.Params, error) { return s.ledger.Params(ctx) }

// Provider is a provider's verification record and reputation.
func (s *Signer) Provider(ctx context.Context, addr keys.Address) (ProviderInfo, error) {
	return s.ledger.Provider(ctx, addr)
}

// Height is the latest block height of the node.
func (s *Signer) Height(ctx context.Context) (int64, error) {
	st, err := s.ledger.Client.Status(ctx)
	return st.Height, err
}

// Send numbers, signs and broadcasts tx (its ChainID, Sender, Nonce and
// Signature are set here), then waits for it to commit. A failed
// transaction is returned as a result with its code, not as an error; the
// error is for transactions that never ran.
func (s *Signer) Send(ctx context.Context, tx ledger.Tx) (*TxResult, error) {
	hash, err := s.broadcast(ctx, tx)
	if err != nil {
		return nil, err
	}
	res, err := s.ledger.Client.WaitTx(ctx, hash)
	if err != nil {
		return nil, err
	}
	if res.Code == ledger.CodeBadNonce {
		s.forget()
	}
	return res, nil
}

func (s *Signer) broadcast(ctx context.Context, tx ledger.Tx) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	waited := 0
	for attempt := 0; ; attempt++ {
		if !s.known {
			a, err := s.ledger.Account(ctx, s.Address())
			if err != nil {
				return nil, fmt.Errorf("read nonce of %s: %w", s.Address(), err)
			}
			s.nonce, s.known = a.Nonce, true
		}
		tx.ChainID, tx.Nonce = s.chainID, s.nonce
		tx.Sign(s.key)
		hash, err := s.broadcastRetrying(ctx, tx.Bytes())
		var te *TxError
		if errors.As(err, &te) && te.Code == ledger.CodeBadNonce && attempt < nonceAttempts {
			// Another sender with this key, or a node whose committed
			// state lags its mempool (a transaction of ours that another
			// node committed is still pending here): read the nonce again,
			// giving the node a moment to commit.
			s.known = false
			if attempt > 0 {
				if err := sleep(ctx, jitter(time.Duration(attempt)*100*time.Millisecond)); err != nil {
					return nil, err
				}
			}
			continue
		}
		if errors.As(err, &te) && te.Code == ledger.CodeTooManyPending && waited < pendingAttempts {
			// This key has ledger.MaxPendingTxs waiting for a block: the
			// next block makes room.
			waited++
			attempt--
			if err := sleep(ctx, jitter(pendingWait)); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		s.nonce++
		for _, c := range s.also {
			go c.Broadcast(context.WithoutCancel(ctx), tx.Bytes())
		}
		return hash, nil
	}
}

// nonceAttempts bounds how often a transaction refused for its nonce is
// renumbered and sent again.
const nonceAttempts = 10

// A transaction refused because its key has too many waiting for a block
// is tried again every pendingWait (jittered), up to pendingAttempts
// times: about a minute of blocks.
const (
	pendingWait     = 500 * time.Millisecond
	pendingAttempts = 120
)

// broadcastRetrying broadcasts, retrying while the node is unavailable
// (ErrUnavailable) until ctx ends; a rejection is returned at once.
func (s *Signer) broadcastRetrying(ctx context.Context, tx []byte) ([]byte, error) {
	delay := retryMin
	for {
		hash, err := s.ledger.Client.Broadcast(ctx, tx)
		if err == nil || !errors.Is(err, ErrUnavailable) {
			return hash, err
		}
		if serr := sleep(ctx, jitter(delay)); serr != nil {
			return nil, fmt.Errorf("broadcast: %w (last error: %w)", serr, err)
		}
		delay = min(2*delay, retryMax)
	}
}

func (s *Signer) forget() {
	s.mu.Lock()
	s.known = false
	s.mu.Unlock()
}

// BatchOutcome is what became of each receipt of a settle-batch.
type BatchOutcome struct {
	// Height is the block that executed the batch.
	Height int64
	// Settled maps request ids to the height at which they were settled:
	// this batch's, or an earlier one's for a receipt that an earlier,
	// unacknowledged batch already settled.
	Settled map[string]int64
	// Rejected maps request ids to the ledger's reason.
	Rejected map[string]string
}

// SettleBatch submits receipts as one settle-batch transaction from the
// signer (a registered gateway) and reports each receipt's outcome. A
// receipt the ledger calls already settled is looked up: if the ledger holds
// this very receipt, it counts as settled at its height (an earlier batch
// committed but its answer was lost), so retrying never charges twice and
// never loses a receipt.
func (s *Signer) SettleBatch(ctx context.Context, rs []receipt.Signed) (BatchOutcome, error) {
	tx := ledger.Tx{Kind: ledger.KindSettleBatch, Receipts: make([]ledger.BatchReceipt, len(rs))}
	for i := range rs {
		tx.Receipts[i] = ledger.NewBatchReceipt(&rs[i])
	}
	tx.Root = ledger.BatchRoot(tx.Receipts)
	res, err := s.Send(ctx, tx)
	if err != nil {
		return BatchOutcome{}, err
	}
	if err := res.Err(); err != nil {
		return BatchOutcome{}, err
	}
	out := BatchOutcome{Height: res.Height, Settled: map[string]int64{}, Rejected: map[string]string{}}
	rejected := map[int]string{}
	for _, ev := range res.Events {
		if ev.Type != "receipt_rejected" {
			continue
		}
		var idx = -1
		var reason string
		for _, a := range ev.Attributes {
			switch a.Key {
			case "index":
				if n, err := strconv.Atoi(a.Value); err == nil && n >= 0 && n < len(rs) {
					idx = n
				}
			case "reason":
				reason = a.Value
			}
		}
		if idx < 0 {
			return BatchOutcome{}, fmt.Errorf("settle-batch at height %d: rejection event without a valid index", res.Height)
		}
		rejected[idx] = reason
	}
	for i := range rs {
		id := rs[i].Receipt.RequestID
		reason, bad := rejected[i]
		if !bad {
			out.Settled[id] = res.Height
			continue
		}
		if reason == ledger.ReasonAlreadySettled {
			st, err := s.ledger.Settlement(ctx, s.Address(), id)
			if err != nil {
				return BatchOutcome{}, fmt.Errorf("receipt %s: look up earlier settlement: %w", id, err)
			}
			if st.Receipt == rs[i].Receipt.Hash() {
				out.Settled[id] = int64(st.Height)
				continue
			}
			reason = "request_id already settled with a different receipt"
		}
		out.Rejected[id] = reason
	}
	return out, nil
}

// Funds is what a gateway may charge a consumer: the deposit the consumer
// locked for this gateway, which no other gateway can spend. The balance is
// shown for information only; the ledger never draws a receipt from it.
type Funds struct {
	Balance money.Amount `json:"balance"`
	// Deposit is the locked part: what the gateway admits requests against.
	Deposit money.Amount `json:"deposit"`
	// Unlocking is what the consumer took out of the deposit: it still
	// pays receipts this gateway admitted before, until it returns to the
	// consumer, but admits nothing new.
	Unlocking money.Amount `json:"unlocking"`
}

// Spendable is what the gateway may admit new requests against: the
// locked deposit.
func (f Funds) Spendable() money.Amount { return f.Deposit }

// ConsumerFunds reads a consumer's deposit for this signer's gateway and
// its balance. An account that does not exist has no funds.
func (s *Signer) ConsumerFunds(ctx context.Context, consumer keys.Address) (Funds, error) {
	d, err := s.ledger.Deposit(ctx, consumer, s.Address())
	if err != nil {
		return Funds{}, err
	}
	f := Funds{Deposit: d.Locked, Unlocking: d.Drawable - d.Locked}
	a, err := s.ledger.Account(ctx, consumer)
	switch {
	case errors.Is(err, ErrNotFound):
		return f, nil
	case err != nil:
		return Funds{}, err
	}
	f.Balance = a.Balance
	return f, nil
}
