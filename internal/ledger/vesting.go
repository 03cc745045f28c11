package ledger

import (
	"fmt"

	"github.com/idlegrid/idlegrid/internal/money"
)

// Vest is one linear vesting schedule: Amount vests evenly over the heights
// after Start up to End; Released of it was already paid to the balance.
type Vest struct {
	Amount   money.Amount `json:"amount"`
	Released money.Amount `json:"released"`
	Start    uint64       `json:"start_height"`
	End      uint64       `json:"end_height"`
}

// VestedAt is how much of v has vested at height h, rounded down.
func (v Vest) VestedAt(h uint64) money.Amount {
	switch {
	case h >= v.End:
		return v.Amount
	case h <= v.Start:
		return 0
	}
	a, _ := v.Amount.MulDiv(h-v.Start, v.End-v.Start) // a fraction below one of Amount: fits
	return a
}

// Claimable is what of a's vesting schedules has vested at height h and
// was not paid out yet.
func (a *Account) Claimable(h uint64) money.Amount {
	var sum money.Amount
	for _, v := range a.Vesting {
		sum += v.VestedAt(h) - v.Released // parts of the supply: no overflow
	}
	return sum
}

// Unvested is what of a's vesting schedules has not vested at height h: the
// part a verdict can still slash.
func (a *Account) Unvested(h uint64) money.Amount {
	var sum money.Amount
	for _, v := range a.Vesting {
		sum += v.Amount - v.VestedAt(h)
	}
	return sum
}

// releaseVested moves what has vested at height h to the balance and drops
// schedules paid in full; it returns the amount moved.
func (a *Account) releaseVested(h uint64) money.Amount {
	var moved money.Amount
	kept := a.Vesting[:0]
	for _, v := range a.Vesting {
		now := v.VestedAt(h)
		moved += now - v.Released
		v.Released = now
		if v.Released < v.Amount {
			kept = append(kept, v)
		}
	}
	a.Vesting = kept
	a.Balance += moved // part of the account's own total: no overflow
	return moved
}

// claim pays the sender what has vested of its schedules.
func (x *txn) claim() (Result, error) {
	a, _, err := x.account(x.sender)
	if err != nil {
		return Result{}, err
	}
	moved := a.releaseVested(x.height)
	if moved == 0 {
		return fail(CodeInvalid, fmt.Sprintf("nothing has vested to claim (%d still vesting)", a.Unvested(x.height))), nil
	}
	x.putAccount(x.sender, &a)
	return ok(Event{Type: "claim", Attrs: []Attr{
		{Key: "account", Value: string(x.sender), Index: true},
		{Key: "amount", Value: fmt.Sprint(uint64(moved))},
	}}), nil
}
