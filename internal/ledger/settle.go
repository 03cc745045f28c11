package ledger

import (
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// ReasonAlreadySettled is the rejection reason of a receipt whose
// request_id was settled before by the same gateway; gateways match on it to
// recognise a batch that committed although they never heard back.
const ReasonAlreadySettled = "request_id already settled"

// settleBatch settles a gateway's batch of signed receipts. The batch as a
// whole must be well-formed (root matches, size within limits, sender a
// staked gateway); then each receipt is settled or rejected on its own, and
// the events name every rejected receipt and why.
func (x *txn) settleBatch() (Result, error) {
	t := x.tx
	n := len(t.Receipts)
	if n == 0 {
		return fail(CodeBadBatch, "settle-batch without receipts"), nil
	}
	if n > int(x.params.MaxBatchReceipts) {
		return fail(CodeBadBatch, fmt.Sprintf("settle-batch of %d receipts exceeds the limit of %d", n, x.params.MaxBatchReceipts)), nil
	}
	if root := BatchRoot(t.Receipts); root != t.Root {
		return fail(CodeBadBatch, fmt.Sprintf("settle-batch root %s does not match its receipts (%s)", t.Root, root)), nil
	}
	s := &settler{txn: x, accounts: map[keys.Address]*Account{}, deposits: map[keys.Address]*Deposit{}, changed: map[string]bool{}, work: map[keys.Address]Work{}}
	gw, err := s.load(x.sender)
	if err != nil {
		return Result{}, err
	}
	if res, bad := x.checkRole(gw, RoleGateway, x.params.MinGatewayStake); bad {
		return res, nil
	}
	decoded, err := decodeBatch(x.chainID, t, x.base)
	if err != nil {
		return Result{}, err
	}
	var rejected []Event
	var accepted int
	var total money.Amount
	for i := range decoded {
		d := &decoded[i]
		reason := d.problem
		if reason == "" {
			reason, err = s.settle(d)
			if err != nil {
				return Result{}, err
			}
		}
		if reason != "" {
			rejected = append(rejected, Event{Type: "receipt_rejected", Attrs: []Attr{
				{Key: "index", Value: fmt.Sprint(i)},
				{Key: "request_id", Value: d.r.RequestID},
				{Key: "reason", Value: reason},
			}})
			continue
		}
		accepted++
		total += d.r.Amount // bounded by the money that paid it
	}
	if err := s.flush(); err != nil {
		return Result{}, err
	}
	summary := Event{Type: "settle_batch", Attrs: []Attr{
		{Key: "gateway", Value: string(x.sender), Index: true},
		{Key: "root", Value: t.Root.String(), Index: true},
		{Key: "accepted", Value: fmt.Sprint(accepted)},
		{Key: "rejected", Value: fmt.Sprint(len(rejected))},
		{Key: "amount", Value: fmt.Sprint(uint64(total))},
	}}
	return ok(append([]Event{summary}, rejected...)...), nil
}

// checkRole reports whether a lacks role r, is jailed or is under stake.
func (x *txn) checkRole(a *Account, r Role, minStake money.Amount) (Result, bool) {
	switch {
	case !a.Has(r):
		return fail(CodeNotRegistered, fmt.Sprintf("%s is not registered as a %s", x.sender, r)), true
	case a.Jailed:
		return fail(CodeNotRegistered, fmt.Sprintf("%s is jailed", x.sender)), true
	case a.Stake < minStake:
		return fail(CodeStakeTooLow, fmt.Sprintf("%s stake %d is below the %s minimum %d", x.sender, a.Stake, r, minStake)), true
	}
	return Result{}, false
}

// batchItem is one receipt of a batch after decoding and signature checks.
type batchItem struct {
	r       receipt.Receipt
	hash    receipt.Hash
	problem string // why it is rejected before touching state; "" if none
	// settledBefore: committed state already holds the request id.
	settledBefore bool
}

// decodeBatch decodes every receipt and checks what needs no state but
// the committed one: form, chain, countersigning gateway, both signatures,
// and whether committed state already holds its request id. Signatures are
// checked with batch verification, in parallel over contiguous chunks; each
// check's result is a pure function of its bytes and of committed state,
// so this is as deterministic as a loop.
func decodeBatch(chainID string, t *Tx, committed Reader) ([]batchItem, error) {
	items := make([]batchItem, len(t.Receipts))
	workers := min(runtime.GOMAXPROCS(0), (len(items)+63)/64)
	chunk := (len(items) + workers - 1) / workers
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w, lo := 0, 0; lo < len(items); w, lo = w+1, lo+chunk {
		hi := min(lo+chunk, len(items))
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = checkReceipts(chainID, t.Sender, t.Receipts[lo:hi], items[lo:hi], committed)
		}()
	}
	wg.Wait()
	return items, errors.Join(errs...)
}

// checkReceipts fills items with the decoded receipts of brs and why each
// is refused, if it is.
func checkReceipts(chainID string, gateway keys.PublicKey, brs []BatchReceipt, items []batchItem, committed Reader) error {
	msgs := make([]keys.SignedMessage, 0, 2*len(brs))
	owner := make([]int, 0, 2*len(brs))
	size := 0
	for i := range brs {
		size += receipt.SignedMessagesSize(len(brs[i].Bytes))
	}
	buf := make([]byte, 0, size)
	for i := range brs {
		br := &brs[i]
		r, err := receipt.Decode(br.Bytes)
		if err != nil {
			items[i] = batchItem{problem: err.Error()}
			continue
		}
		items[i] = batchItem{r: r, hash: receipt.Sum(br.Bytes)}
		switch {
		case r.ChainID != chainID:
			items[i].problem = fmt.Sprintf("receipt for chain %q", r.ChainID)
		case r.Gateway != gateway:
			items[i].problem = "receipt countersigned by another gateway than the sender"
		default:
			var m [2]keys.SignedMessage
			buf, m = receipt.AppendSignedMessages(buf, br.Bytes, &r, br.ProviderSignature, br.GatewaySignature)
			msgs = append(msgs, m[0], m[1])
			owner = append(owner, i, i)
		}
	}
	ok := keys.VerifyBatch(msgs)
	gatewayAddr := gateway.Address()
	for j, i := range owner {
		if !ok[j] && items[i].problem == "" {
			who := "provider"
			if j%2 == 1 {
				who = "gateway"
			}
			items[i].problem = fmt.Sprintf("%s: %s signature does not verify", receipt.ErrBadSignature, who)
		}
	}
	for i := range items {
		if items[i].problem != "" {
			continue
		}
		prev, err := committed.Get([]byte(receiptKey(gatewayAddr, items[i].r.RequestID)))
		if err != nil {
			return fmt.Errorf("ledger: read state: %w", err)
		}
		items[i].settledBefore = prev != nil
	}
	return nil
}

// settler keeps the accounts and deposits a batch touches decoded until
// the batch ends, so a batch of thousands of receipts to the same few
// parties decodes and encodes each once.
type settler struct {
	*txn
	accounts map[keys.Address]*Account
	deposits map[keys.Address]*Deposit // by consumer, for the sending gateway
	// changed holds the state keys of the accounts and deposits that a
	// settled receipt changed: only those are written, so what was only
	// read (for a rejected receipt, or an absent account) leaves no trace.
	changed map[string]bool
	due     []keys.Address        // addresses added to this block's due list for releaseAt
	work    map[keys.Address]Work // work the batch adds per provider
}

func (s *settler) load(addr keys.Address) (*Account, error) {
	if a, ok := s.accounts[addr]; ok {
		return a, nil
	}
	a, _, err := s.account(addr)
	if err != nil {
		return nil, err
	}
	s.accounts[addr] = &a
	return &a, nil
}

// deposit is what consumer locked for the sending gateway.
func (s *settler) deposit(consumer keys.Address) (*Deposit, error) {
	if d, ok := s.deposits[consumer]; ok {
		return d, nil
	}
	d, err := s.Block.deposit(consumer, s.sender)
	if err != nil {
		return nil, err
	}
	s.deposits[consumer] = &d
	return &d, nil
}

// settle applies one checked receipt, or returns why it cannot. It computes
// every new value before assigning any, so a rejected receipt leaves no
// trace.
func (s *settler) settle(it *batchItem) (string, error) {
	r := &it.r
	key := receiptKey(s.sender, r.RequestID)
	// Committed state was read while decoding; what this block has
	// written since (an earlier batch, or this one) is only staged.
	if it.settledBefore || s.staged(key) {
		return ReasonAlreadySettled, nil
	}
	providerAddr := r.Provider.Address()
	prov, err := s.load(providerAddr)
	if err != nil {
		return "", err
	}
	switch {
	case !prov.Has(RoleProvider):
		return "provider is not registered", nil
	case prov.Jailed:
		return "provider is jailed", nil
	case prov.Stake < s.params.MinProviderStake:
		return fmt.Sprintf("provider stake %d is below the minimum %d", prov.Stake, s.params.MinProviderStake), nil
	}
	if !s.params.DigestAllowed(r.Model, r.ModelDigest) {
		return fmt.Sprintf("digest %s is not allowed for model %q", r.ModelDigest, r.Model), nil
	}
	if err := r.Consumer.Validate(); err != nil {
		return err.Error(), nil
	}
	gw := s.accounts[s.sender]
	dep, err := s.deposit(r.Consumer)
	if err != nil {
		return "", err
	}
	// The consumer pays from its deposit for this gateway, and only from
	// it: money no other gateway can draw. What the deposit cannot cover
	// the gateway admitted beyond it, so its stake answers for that.
	fromDeposit := min(dep.Drawable(s.height), r.Amount)
	fromStake := r.Amount - fromDeposit
	if fromStake > gw.Stake {
		return fmt.Sprintf("consumer's deposit for this gateway cannot pay %d (drawable %d) and neither can the gateway's stake %d", r.Amount, fromDeposit, gw.Stake), nil
	}
	protocolFee, err := r.Amount.MulDiv(uint64(s.params.ProtocolFeeBps), 10_000)
	if err != nil {
		return "", err // cannot happen: bps ≤ 10000
	}
	gatewayFee, err := r.Amount.MulDiv(uint64(s.params.GatewayFeeBps), 10_000)
	if err != nil {
		return "", err
	}
	providerShare := r.Amount - protocolFee - gatewayFee // fees sum to at most the amount (Params.Validate)
	treasury, err := s.load(TreasuryAddress)
	if err != nil {
		return "", err
	}
	// Every credit below is a share of an amount just debited from an
	// account, so no sum can exceed the total supply and none overflows.
	gw.Stake -= fromStake
	if fromDeposit > 0 { // a receipt of zero leaves no record for its consumer
		dep.draw(fromDeposit, s.height)
		s.changed[depositKey(r.Consumer, s.sender)] = true
	}
	if protocolFee > 0 {
		treasury.Balance += protocolFee
		s.changed[accountKey(TreasuryAddress)] = true
	}
	gw.Balance += gatewayFee
	s.changed[accountKey(s.sender)] = true
	s.escrow(providerAddr, prov, providerShare)
	s.changed[accountKey(providerAddr)] = true
	if protocolFee > 0 { // a receipt that pays the treasury nothing earns no emission
		s.work[providerAddr] = s.work[providerAddr].plus(r.Amount, protocolFee)
	}
	rec := Settlement{Height: s.height, TxHash: s.hash, Receipt: it.hash, Amount: r.Amount, Consumer: r.Consumer, Provider: r.Provider, PaidByGateway: fromStake > 0, StakePaid: fromStake}
	s.set(key, rec.encode())
	return "", nil
}

// settlement returns how gateway's receipt requestID was settled, reading
// what this block has staged as well as committed state.
func (b *Block) settlement(gateway keys.Address, requestID string) (Settlement, bool, error) {
	raw, err := b.get(receiptKey(gateway, requestID))
	if err != nil || raw == nil {
		return Settlement{}, false, err
	}
	st, err := decodeSettlement(raw)
	if err != nil {
		return Settlement{}, false, fmt.Errorf("ledger: settlement %s/%s: %w", gateway, requestID, err)
	}
	return st, true, nil
}

// escrow holds a provider's share until EscrowBlocks have passed; with no
// holding period it is paid out at once.
func (s *settler) escrow(addr keys.Address, a *Account, amount money.Amount) {
	if amount == 0 {
		return
	}
	if s.params.EscrowBlocks == 0 {
		a.Balance += amount
		return
	}
	release := s.height + s.params.EscrowBlocks
	if n := len(a.Escrow); n > 0 && a.Escrow[n-1].Height == release {
		a.Escrow[n-1].Amount += amount
		return
	}
	a.Escrow = append(a.Escrow, Entry{Amount: amount, Height: release})
	s.due = append(s.due, addr)
}

// flush writes every changed account and deposit, and the due list.
func (s *settler) flush() error {
	for addr, a := range s.accounts {
		if s.changed[accountKey(addr)] {
			s.putAccount(addr, a)
		}
	}
	for consumer, d := range s.deposits {
		if s.changed[depositKey(consumer, s.sender)] {
			s.putDeposit(consumer, s.sender, d)
		}
	}
	if err := s.addWork(s.work); err != nil {
		return err
	}
	if len(s.due) == 0 {
		return nil
	}
	key := dueKey(s.height + s.params.EscrowBlocks)
	raw, err := s.get(key)
	if err != nil {
		return err
	}
	d := dec{b: raw}
	var due []keys.Address
	if raw != nil {
		due = d.addresses()
		if err := d.end(); err != nil {
			return fmt.Errorf("ledger: due list: %w", err)
		}
	}
	e := enc{}
	e.addresses(append(due, s.due...))
	s.set(key, e.b)
	return nil
}
