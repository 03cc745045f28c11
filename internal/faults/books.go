package faults

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// holdings is what an account holds that settlement moves.
type holdings struct {
	balance, stake, escrow money.Amount
}

// snapshot is the ledger's view of every account a run's receipts touch,
// and of each consumer's deposit per gateway.
type snapshot struct {
	accounts map[keys.Address]holdings
	deposits map[[2]keys.Address]money.Amount // {consumer, gateway}: locked and unlocking
}

// takeSnapshot reads the accounts and deposits of n's identities and the
// treasury.
func takeSnapshot(ctx context.Context, l chainrpc.StateReader, n *network) (snapshot, error) {
	s := snapshot{accounts: map[keys.Address]holdings{}, deposits: map[[2]keys.Address]money.Amount{}}
	addrs := append([]keys.Address{ledger.TreasuryAddress}, n.consumers...)
	for _, k := range append(append([]keys.PublicKey{}, n.gwKeys...), n.provKeys...) {
		addrs = append(addrs, k.Address())
	}
	for _, a := range addrs {
		info, err := l.Account(ctx, a)
		if errors.Is(err, chainrpc.ErrNotFound) {
			s.accounts[a] = holdings{}
			continue
		}
		if err != nil {
			return s, fmt.Errorf("account %s: %w", a, err)
		}
		h := holdings{balance: info.Balance, stake: info.Stake}
		for _, e := range info.Escrow {
			h.escrow += e.Amount
		}
		s.accounts[a] = h
	}
	for _, c := range n.consumers {
		for _, g := range n.gwKeys {
			d, err := l.Deposit(ctx, c, g.Address())
			if err != nil {
				return s, fmt.Errorf("deposit of %s for %s: %w", c, g.Address(), err)
			}
			s.deposits[[2]keys.Address{c, g.Address()}] = d.Total()
		}
	}
	return s, nil
}

// settled is a receipt the ledger settled, with how it was paid.
type settled struct {
	r         receipt.Receipt
	stakePaid money.Amount // what the gateway's stake paid of it
}

// settledReceipts reads every settle-batch transaction in the chain's
// blocks and asks the ledger which of their receipts it settled. A receipt
// can be in several batches (a gateway sends it again after a restart);
// the ledger must hold exactly one of them per request id. An id that is
// in a block but settled under none of its receipts is a problem: a
// receipt a gateway stored and sent was lost.
func settledReceipts(ctx context.Context, rpc string, l chainrpc.StateReader) (map[string]settled, int64, []string, error) {
	src, err := chainrpc.NewBlockReader(rpc)
	if err != nil {
		return nil, 0, nil, err
	}
	height, _, err := src.Latest(ctx)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("latest height: %w", err)
	}
	candidates := map[string]map[receipt.Hash]receipt.Receipt{}
	gatewayOf := map[string]keys.Address{} // settlements are kept per gateway
	var order []string
	for h := int64(1); h <= height; h++ {
		blk, err := src.Block(ctx, h)
		if err != nil {
			return nil, 0, nil, fmt.Errorf("block %d: %w", h, err)
		}
		for _, raw := range blk.Data.Txs {
			tx, err := ledger.DecodeTx(raw)
			if err != nil || tx.Kind != ledger.KindSettleBatch {
				continue
			}
			for _, br := range tx.Receipts {
				r, err := receipt.Decode(br.Bytes)
				if err != nil {
					continue
				}
				if candidates[r.RequestID] == nil {
					candidates[r.RequestID] = map[receipt.Hash]receipt.Receipt{}
					order = append(order, r.RequestID)
					gatewayOf[r.RequestID] = tx.Sender.Address()
				}
				candidates[r.RequestID][receipt.Sum(br.Bytes)] = r
			}
		}
	}
	out := map[string]settled{}
	var problems []string
	for _, id := range order {
		st, err := l.Settlement(ctx, gatewayOf[id], id)
		if errors.Is(err, chainrpc.ErrNotFound) {
			problems = append(problems, fmt.Sprintf("receipt %s was sent for settlement but never settled", id))
			continue
		}
		if err != nil {
			return nil, 0, nil, fmt.Errorf("settlement of %s: %w", id, err)
		}
		r, ok := candidates[id][st.Receipt]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("receipt %s settled as %s, which no settle-batch in the blocks carries", id, st.Receipt))
		case st.Amount != r.Amount || st.Consumer != r.Consumer || st.Provider != r.Provider:
			problems = append(problems, fmt.Sprintf("receipt %s: settlement %+v disagrees with its receipt", id, st))
		default:
			out[id] = settled{r: r, stakePaid: st.StakePaid}
		}
	}
	return out, height, problems, nil
}

// continuation matches the suffix of a continuation receipt's request id.
var continuation = regexp.MustCompile(`-c[0-9]+$`)

// baseID is the consumer's request id of a receipt's request id.
func baseID(id string) string { return continuation.ReplaceAllString(id, "") }

// reconcile checks that the ledger moved exactly what the settled receipts
// say: each consumer's deposit per gateway dropped by what it paid (its
// balance not at all), the treasury gained the protocol fees, each gateway
// its fees (and its stake paid what deposits could not), each provider the rest in
// balance plus escrow. Fees are rounded down per receipt, as settlement
// does.
func reconcile(params ledger.Params, before, after snapshot, rs map[string]settled) []string {
	want := map[keys.Address]holdings{}
	for a, h := range before.accounts {
		want[a] = h
	}
	wantDep := map[[2]keys.Address]money.Amount{}
	for k, v := range before.deposits {
		wantDep[k] = v
	}
	var problems []string
	for id, s := range rs {
		r := s.r
		gw, pv := r.Gateway.Address(), r.Provider.Address()
		if _, ok := want[pv]; !ok {
			problems = append(problems, fmt.Sprintf("receipt %s pays provider %s, not one of the run's", id, pv))
			continue
		}
		if _, ok := want[gw]; !ok {
			problems = append(problems, fmt.Sprintf("receipt %s countersigned by gateway %s, not one of the run's", id, gw))
			continue
		}
		protocolFee, _ := r.Amount.MulDiv(uint64(params.ProtocolFeeBps), 10_000)
		gatewayFee, _ := r.Amount.MulDiv(uint64(params.GatewayFeeBps), 10_000)
		h := want[gw]
		h.stake -= s.stakePaid
		want[gw] = h
		wantDep[[2]keys.Address{r.Consumer, gw}] -= r.Amount - s.stakePaid
		t := want[ledger.TreasuryAddress]
		t.balance += protocolFee
		want[ledger.TreasuryAddress] = t
		g := want[gw]
		g.balance += gatewayFee
		want[gw] = g
		p := want[pv]
		p.escrow += r.Amount - protocolFee - gatewayFee // balance and escrow are compared as a sum
		want[pv] = p
	}
	for a, w := range want {
		got := after.accounts[a]
		if got.balance+got.escrow != w.balance+w.escrow || got.stake != w.stake {
			problems = append(problems, fmt.Sprintf("account %s holds balance+escrow %s and stake %s; the settled receipts make it %s and %s",
				a, got.balance+got.escrow, got.stake, w.balance+w.escrow, w.stake))
		}
	}
	for k, w := range wantDep {
		if got := after.deposits[k]; got != w {
			problems = append(problems, fmt.Sprintf("deposit of %s for gateway %s is %s; the settled receipts make it %s", k[0], k[1], got, w))
		}
	}
	return problems
}
