package ledger

import (
	"fmt"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
)

// Deposit is money a consumer locked for one gateway, in the spirit of a
// payment channel: that gateway's receipts for the consumer are paid from
// it, and nothing else can spend it — not the consumer, not another
// gateway. So a gateway that admits requests against its deposit, minus
// what it has already admitted, is never outspent by other gateways.
//
// Locked is what the gateway may admit requests against. Money taken out
// (approve with a lower amount) first becomes Unlocking: still drawable by
// the gateway, for what it admitted before, until the entry's height; from
// then on it is the consumer's again, and returns to its balance with its
// next approve for this gateway.
type Deposit struct {
	Locked    money.Amount `json:"locked"`
	Unlocking []Entry      `json:"unlocking,omitempty"`
}

// Drawable is what the gateway's receipts can still be paid from at
// height: the locked part and what is unlocking after height.
func (d *Deposit) Drawable(height uint64) money.Amount {
	t := d.Locked
	for _, e := range d.Unlocking {
		if e.Height > height {
			t += e.Amount // all parts came out of one balance: no overflow
		}
	}
	return t
}

// Total is everything in the deposit, drawable or returning.
func (d *Deposit) Total() money.Amount {
	t := d.Locked
	for _, e := range d.Unlocking {
		t += e.Amount
	}
	return t
}

// draw takes amount from what is drawable at height, the part that
// unlocks soonest first (it is the consumer's sooner), then the locked
// part. The caller checked that Drawable covers it.
func (d *Deposit) draw(amount money.Amount, height uint64) {
	kept := d.Unlocking[:0]
	for _, e := range d.Unlocking {
		if e.Height > height && amount > 0 {
			take := min(e.Amount, amount)
			e.Amount -= take
			amount -= take
		}
		if e.Amount > 0 {
			kept = append(kept, e)
		}
	}
	d.Unlocking = kept
	d.Locked -= amount
}

// returned removes the entries that finished unlocking by height and
// returns their sum: the consumer's money again.
func (d *Deposit) returned(height uint64) money.Amount {
	var back money.Amount
	kept := d.Unlocking[:0]
	for _, e := range d.Unlocking {
		if e.Height <= height {
			back += e.Amount
		} else {
			kept = append(kept, e)
		}
	}
	d.Unlocking = kept
	return back
}

// maxUnlocking bounds a deposit's unlocking entries, so that lowering a
// deposit block after block cannot grow its record without end.
const maxUnlocking = 32

func (d *Deposit) encode() []byte {
	e := enc{}
	e.u8(1) // record version
	e.amount(d.Locked)
	e.entries(d.Unlocking)
	return e.b
}

// decodeDeposit reads a deposit record; an absent one is empty.
func decodeDeposit(raw []byte) (Deposit, error) {
	if raw == nil {
		return Deposit{}, nil
	}
	d := dec{b: raw}
	if v := d.u8(); v != 1 && d.err == nil {
		d.fail("deposit record version %d", v)
	}
	dep := Deposit{Locked: d.amount(), Unlocking: d.entries()}
	return dep, d.end()
}

func (b *Block) deposit(consumer, gateway keys.Address) (Deposit, error) {
	raw, err := b.get(depositKey(consumer, gateway))
	if err != nil {
		return Deposit{}, err
	}
	d, err := decodeDeposit(raw)
	if err != nil {
		return Deposit{}, fmt.Errorf("ledger: deposit %s/%s: %w", consumer, gateway, err)
	}
	return d, nil
}

// putDeposit writes d, or deletes the record when d holds nothing.
func (b *Block) putDeposit(consumer, gateway keys.Address, d *Deposit) {
	if d.Locked == 0 && len(d.Unlocking) == 0 {
		b.delete(depositKey(consumer, gateway))
		return
	}
	b.set(depositKey(consumer, gateway), d.encode())
}

// approve sets the sender's locked deposit for a gateway to the amount:
// raising it moves the difference from the balance into the deposit;
// lowering it starts unlocking the difference, which the gateway can still
// draw for DepositUnlockBlocks. What finished unlocking returns to the
// balance first.
func (x *txn) approve() (Result, error) {
	t := x.tx
	if t.Gateway == x.sender {
		return fail(CodeInvalid, "approve: an account cannot approve itself"), nil
	}
	a, _, err := x.account(x.sender)
	if err != nil {
		return Result{}, err
	}
	d, err := x.deposit(x.sender, t.Gateway)
	if err != nil {
		return Result{}, err
	}
	back := d.returned(x.height)
	if a.Balance, err = a.Balance.Add(back); err != nil {
		return moneyFail("balance", err), nil
	}
	attrs := []Attr{
		{Key: "consumer", Value: string(x.sender), Index: true},
		{Key: "gateway", Value: string(t.Gateway), Index: true},
		{Key: "deposit", Value: fmt.Sprint(uint64(t.Amount))},
	}
	switch {
	case t.Amount > d.Locked:
		more := t.Amount - d.Locked
		if a.Balance, err = a.Balance.Sub(more); err != nil {
			return moneyFail(fmt.Sprintf("approve: balance %d, deposit %d needs %d more", a.Balance, t.Amount, more), err), nil
		}
		attrs = append(attrs, Attr{Key: "locked", Value: fmt.Sprint(uint64(more))})
	case t.Amount < d.Locked:
		less := d.Locked - t.Amount
		release := x.height + x.params.DepositUnlockBlocks
		n := len(d.Unlocking)
		switch {
		case n > 0 && (d.Unlocking[n-1].Height == release || n >= maxUnlocking):
			// Same height, or the list is full: join the last entry, which
			// then releases at the later of the two heights (never earlier
			// than the gateway was promised).
			d.Unlocking[n-1].Amount += less // both came out of the deposit: no overflow
			d.Unlocking[n-1].Height = max(d.Unlocking[n-1].Height, release)
		default:
			d.Unlocking = append(d.Unlocking, Entry{Amount: less, Height: release})
		}
		attrs = append(attrs, Attr{Key: "unlocking", Value: fmt.Sprint(uint64(less))}, Attr{Key: "release_height", Value: fmt.Sprint(release)})
	}
	d.Locked = t.Amount
	if back > 0 {
		attrs = append(attrs, Attr{Key: "returned", Value: fmt.Sprint(uint64(back))})
	}
	x.putAccount(x.sender, &a)
	x.putDeposit(x.sender, t.Gateway, &d)
	return ok(Event{Type: "approve", Attrs: attrs}), nil
}
