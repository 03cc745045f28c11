package ledger

import (
	"errors"
	"fmt"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// Result codes. They are part of the chain's interface (clients branch on
// them): never renumber.
const (
	CodeOK                uint32 = 0
	CodeMalformed         uint32 = 1
	CodeWrongChain        uint32 = 2
	CodeBadSignature      uint32 = 3
	CodeBadNonce          uint32 = 4
	CodeUnknownAccount    uint32 = 5
	CodeInsufficientFunds uint32 = 6
	CodeOverflow          uint32 = 7
	CodeInvalid           uint32 = 8
	CodeNotRegistered     uint32 = 9
	CodeStakeTooLow       uint32 = 10
	CodeBadBatch          uint32 = 11
	// CodeTooManyPending: the sender has MaxPendingTxs (or
	// MaxPendingBytes) in the mempool already; retry after a block.
	CodeTooManyPending uint32 = 20
)

func fail(code uint32, log string) Result { return Result{Code: code, Log: log} }

// txn is one transaction being executed inside a block.
type txn struct {
	*Block
	tx     *Tx
	sender keys.Address
	hash   receipt.Hash
}

func (x *txn) run() (Result, error) {
	switch x.tx.Kind {
	case KindTransfer:
		return x.transfer()
	case KindRegister:
		return x.register()
	case KindStake:
		return x.stake()
	case KindUnstake:
		return x.unstake()
	case KindWithdrawUnbonded:
		return x.withdrawUnbonded()
	case KindApprove:
		return x.approve()
	case KindSettleBatch:
		return x.settleBatch()
	case KindClaim:
		return x.claim()
	case KindParams:
		return x.changeParams()
	case KindVerdict:
		return x.verdict()
	case KindPlant:
		return x.plant()
	case KindReveal:
		return x.reveal()
	case KindUnjail:
		return x.unjail()
	}
	return fail(CodeMalformed, fmt.Sprintf("unknown transaction kind %d", x.tx.Kind)), nil
}

// moneyFail maps an arithmetic error to a result.
func moneyFail(what string, err error) Result {
	if errors.Is(err, money.ErrOverflow) {
		return fail(CodeOverflow, what+": "+err.Error())
	}
	return fail(CodeInsufficientFunds, what+": "+err.Error())
}

func (x *txn) transfer() (Result, error) {
	t := x.tx
	if t.Amount == 0 {
		return fail(CodeInvalid, "transfer of zero"), nil
	}
	if t.To == x.sender {
		return fail(CodeInvalid, "transfer to the sender itself"), nil
	}
	from, _, err := x.account(x.sender)
	if err != nil {
		return Result{}, err
	}
	to, exists, err := x.account(t.To)
	if err != nil {
		return Result{}, err
	}
	if !exists && t.Amount < x.params.ExistentialDeposit {
		return fail(CodeInvalid, fmt.Sprintf("transfer of %d would create account %s: a new account needs at least the existential deposit %d", t.Amount, t.To, x.params.ExistentialDeposit)), nil
	}
	if from.Balance, err = from.Balance.Sub(t.Amount); err != nil {
		return moneyFail(fmt.Sprintf("balance %d, transfer %d", from.Balance, t.Amount), err), nil
	}
	if to.Balance, err = to.Balance.Add(t.Amount); err != nil {
		return moneyFail("recipient balance", err), nil
	}
	x.putAccount(x.sender, &from)
	x.putAccount(t.To, &to)
	return ok(Event{Type: "transfer", Attrs: []Attr{
		{Key: "from", Value: string(x.sender), Index: true},
		{Key: "to", Value: string(t.To), Index: true},
		{Key: "amount", Value: fmt.Sprint(uint64(t.Amount))},
	}}), nil
}

func ok(events ...Event) Result { return Result{Code: CodeOK, Events: events} }

func (x *txn) register() (Result, error) {
	t := x.tx
	if t.Role == 0 || t.Role&^allRoles != 0 || t.Role&(t.Role-1) != 0 {
		return fail(CodeInvalid, fmt.Sprintf("register: role %d is not one of provider, gateway, verifier", t.Role)), nil
	}
	a, _, err := x.account(x.sender)
	if err != nil {
		return Result{}, err
	}
	a.Roles |= t.Role
	a.setInfo(t.Role, t.Info)
	x.putAccount(x.sender, &a)
	if t.Role == RoleVerifier {
		if err := x.addVerifier(x.sender); err != nil {
			return Result{}, err
		}
	}
	return ok(Event{Type: "register", Attrs: []Attr{
		{Key: "account", Value: string(x.sender), Index: true},
		{Key: "role", Value: t.Role.String(), Index: true},
	}}), nil
}

func (x *txn) stake() (Result, error) {
	t := x.tx
	if t.Amount == 0 {
		return fail(CodeInvalid, "stake of zero"), nil
	}
	a, _, err := x.account(x.sender)
	if err != nil {
		return Result{}, err
	}
	if a.Balance, err = a.Balance.Sub(t.Amount); err != nil {
		return moneyFail(fmt.Sprintf("balance %d, stake %d", a.Balance, t.Amount), err), nil
	}
	if a.Stake, err = a.Stake.Add(t.Amount); err != nil {
		return moneyFail("stake", err), nil
	}
	x.putAccount(x.sender, &a)
	return ok(Event{Type: "stake", Attrs: []Attr{
		{Key: "account", Value: string(x.sender), Index: true},
		{Key: "amount", Value: fmt.Sprint(uint64(t.Amount))},
	}}), nil
}

func (x *txn) unstake() (Result, error) {
	t := x.tx
	if t.Amount == 0 {
		return fail(CodeInvalid, "unstake of zero"), nil
	}
	a, _, err := x.account(x.sender)
	if err != nil {
		return Result{}, err
	}
	if a.Stake, err = a.Stake.Sub(t.Amount); err != nil {
		return moneyFail(fmt.Sprintf("stake %d, unstake %d", a.Stake, t.Amount), err), nil
	}
	release := x.height + x.params.UnbondingBlocks
	if n := len(a.Unbonding); n > 0 && a.Unbonding[n-1].Height == release {
		a.Unbonding[n-1].Amount += t.Amount // both parts came out of the stake: no overflow
	} else {
		a.Unbonding = append(a.Unbonding, Entry{Amount: t.Amount, Height: release})
	}
	x.putAccount(x.sender, &a)
	return ok(Event{Type: "unstake", Attrs: []Attr{
		{Key: "account", Value: string(x.sender), Index: true},
		{Key: "amount", Value: fmt.Sprint(uint64(t.Amount))},
		{Key: "release_height", Value: fmt.Sprint(release)},
	}}), nil
}

func (x *txn) withdrawUnbonded() (Result, error) {
	a, _, err := x.account(x.sender)
	if err != nil {
		return Result{}, err
	}
	if reason, err := x.withdrawBlocked(); err != nil || reason != "" {
		if err != nil {
			return Result{}, err
		}
		return fail(CodeInvalid, "withdraw-unbonded: "+reason), nil
	}
	var matured money.Amount
	kept := a.Unbonding[:0]
	for _, e := range a.Unbonding {
		if e.Height <= x.height {
			matured += e.Amount // came out of the stake: no overflow
		} else {
			kept = append(kept, e)
		}
	}
	if matured == 0 {
		return fail(CodeInvalid, "nothing has finished unbonding"), nil
	}
	a.Unbonding = kept
	if a.Balance, err = a.Balance.Add(matured); err != nil {
		return moneyFail("balance", err), nil
	}
	x.putAccount(x.sender, &a)
	return ok(Event{Type: "withdraw_unbonded", Attrs: []Attr{
		{Key: "account", Value: string(x.sender), Index: true},
		{Key: "amount", Value: fmt.Sprint(uint64(matured))},
	}}), nil
}
