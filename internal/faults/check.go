package faults

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"time"

	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/gateway/api/apitypes"
	"github.com/idlegrid/idlegrid/internal/gateway/client"
	"github.com/idlegrid/idlegrid/internal/money"
)

// gatewayAccount reads one consumer's account at one gateway.
func gatewayAccount(ctx context.Context, base, apiKey string) (apitypes.Account, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return client.New(base, apiKey).Account(ctx)
}

// drain waits until no gateway holds a receipt it has not settled.
func drain(ctx context.Context, cfg Config, n *network) []string {
	deadline := time.Now().Add(cfg.DrainTimeout)
	for {
		var waiting []string
		for g, base := range n.gwURLs {
			for c, key := range n.apiKeys[g] {
				v, err := gatewayAccount(ctx, base, key)
				switch {
				case err != nil:
					waiting = append(waiting, fmt.Sprintf("gateway%d consumer%d: %v", g, c, err))
				case v.Receipts.Pending > 0:
					waiting = append(waiting, fmt.Sprintf("gateway%d consumer%d: %d receipts pending", g, c, v.Receipts.Pending))
				}
			}
		}
		if len(waiting) == 0 {
			return nil
		}
		if time.Now().After(deadline) || sleep(ctx, 500*time.Millisecond) != nil {
			return []string{fmt.Sprintf("settlement not drained within %v: %s", cfg.DrainTimeout, strings.Join(waiting, "; "))}
		}
	}
}

// checkBooks matches what the clients saw with what the ledger settled and
// reconciles the accounts; it fills res.
func checkBooks(ctx context.Context, n *network, l chainrpc.StateReader, before snapshot, outcomes []outcome, res *Result) error {
	rs, _, problems, err := settledReceipts(ctx, n.rpcs[0], l)
	if err != nil {
		return err
	}
	res.Problems = append(res.Problems, problems...)
	params, err := l.Params(ctx)
	if err != nil {
		return fmt.Errorf("params: %w", err)
	}
	after, err := takeSnapshot(ctx, l, n)
	if err != nil {
		return err
	}
	res.Problems = append(res.Problems, reconcile(params, before, after, rs)...)

	// Receipts by the consumer's request id.
	byBase := map[string][]string{}
	type pair struct{ gateway, consumer int }
	gwIndex := map[string]int{}
	for i, k := range n.gwKeys {
		gwIndex[k.String()] = i
	}
	conIndex := map[string]int{}
	for i, a := range n.consumers {
		conIndex[string(a)] = i
	}
	spend := map[pair]money.Amount{}
	count := map[pair]int64{}
	for id, s := range rs {
		byBase[baseID(id)] = append(byBase[baseID(id)], id)
		if id != baseID(id) {
			res.Continued++
		}
		res.Receipts++
		res.Paid += s.r.Amount
		pf, _ := s.r.Amount.MulDiv(uint64(params.ProtocolFeeBps), 10_000)
		gf, _ := s.r.Amount.MulDiv(uint64(params.GatewayFeeBps), 10_000)
		res.Fees += pf + gf
		p := pair{gwIndex[s.r.Gateway.String()], conIndex[string(s.r.Consumer)]}
		spend[p] += s.r.Amount
		count[p]++
	}
	// An answer may be billed in segments (a killed provider's checkpoint
	// under the request's id, the continuation's under "-cN"), each settled
	// once by the ledger; what must not happen is a token billed twice,
	// checked below against what the client received.
	for _, ids := range byBase {
		if len(ids) > 1 {
			res.Segmented++
		}
	}
	res.Sent = len(outcomes)
	seen := map[string]bool{}
	noID := map[pair]int{} // failed requests whose id the client never learned
	for _, o := range outcomes {
		p := pair{o.gateway, o.consumer}
		if !o.completed {
			res.Failed++
			k := failureKind(o)
			res.FailedBy[k]++
			if _, ok := res.FailedExample[k]; !ok {
				res.FailedExample[k] = truncate(o.failure, 240)
			}
			if o.id == "" {
				noID[p]++
				continue
			}
		} else {
			res.Completed++
		}
		if seen[o.id] {
			res.Problems = append(res.Problems, fmt.Sprintf("request id %s given to two requests", o.id))
		}
		seen[o.id] = true
		ids := byBase[o.id]
		var billed uint64
		for _, id := range ids {
			r := rs[id].r
			if r.Consumer != n.consumers[o.consumer] || r.Gateway != n.gwKeys[o.gateway] {
				res.Problems = append(res.Problems, fmt.Sprintf("receipt %s charges consumer %s via gateway %s; the request came from consumer%d via gateway%d", id, r.Consumer, r.Gateway.Address(), o.consumer, o.gateway))
			}
			billed += r.CompletionTokens
		}
		if o.completed {
			res.TokensDelivered += o.tokens
			res.TokensBilled += billed
			if billed > o.tokens {
				res.Problems = append(res.Problems, fmt.Sprintf("request %s billed %d completion tokens in %v; the answer had %d", o.id, billed, ids, o.tokens))
			}
		}
		switch {
		case !o.completed && len(ids) > 0:
			res.BilledFailed++
		case o.completed && len(ids) == 0 && o.finish == "length":
			res.UnbilledLength++
		case o.completed && len(ids) == 0:
			res.Problems = append(res.Problems, fmt.Sprintf("request %s completed (%s, %d tokens) but no receipt of it settled", o.id, o.finish, o.tokens))
		}
	}
	// Receipts of requests whose id the client never saw: each must belong
	// to a request that failed without a response, same consumer and
	// gateway.
	orphans := map[pair]int{}
	for base, ids := range byBase {
		if seen[base] {
			continue
		}
		r := rs[ids[0]].r
		p := pair{gwIndex[r.Gateway.String()], conIndex[string(r.Consumer)]}
		orphans[p]++
		res.BilledFailed++
	}
	for p, k := range orphans {
		if k > noID[p] {
			res.Problems = append(res.Problems, fmt.Sprintf("%d receipts of consumer%d via gateway%d belong to no request the client sent (%d failed without a response)", k, p.consumer, p.gateway, noID[p]))
		}
	}
	// Each gateway's own books agree with the ledger.
	for g, base := range n.gwURLs {
		for c, key := range n.apiKeys[g] {
			v, err := gatewayAccount(ctx, base, key)
			p := pair{g, c}
			switch {
			case err != nil:
				res.Problems = append(res.Problems, fmt.Sprintf("gateway%d consumer%d: %v", g, c, err))
			case v.Receipts.Rejected > 0:
				res.Problems = append(res.Problems, fmt.Sprintf("gateway%d consumer%d: %d receipts rejected by the ledger", g, c, v.Receipts.Rejected))
			case v.Settled != spend[p] || v.Receipts.Settled != count[p]:
				res.Problems = append(res.Problems, fmt.Sprintf("gateway%d consumer%d: the gateway counts %d receipts settled for %s, the ledger %d for %s", g, c, v.Receipts.Settled, v.Settled, count[p], spend[p]))
			}
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// failureKind names a failure for the report's counts.
func failureKind(o outcome) string {
	switch {
	case o.status == 0:
		return "no response"
	case o.status != http.StatusOK:
		return fmt.Sprintf("HTTP %d", o.status)
	case strings.HasPrefix(o.failure, "error event"):
		return "error event mid-stream"
	}
	return "cut off"
}

// checkChain compares the validators' app hashes at one height and runs
// `idlegrid audit` against each of them.
func checkChain(ctx context.Context, n *network, res *Result) []string {
	var problems []string
	srcs := make([]*chainrpc.BlockReader, len(n.rpcs))
	height := int64(-1)
	for i, u := range n.rpcs {
		src, err := chainrpc.NewBlockReader(u)
		if err != nil {
			return []string{err.Error()}
		}
		srcs[i] = src
		h, _, err := src.Latest(ctx)
		if err != nil {
			return []string{fmt.Sprintf("validator%d: %v", i, err)}
		}
		if height < 0 || h < height {
			height = h
		}
	}
	var first []byte
	for i, src := range srcs {
		blk, err := src.Block(ctx, height)
		if err != nil {
			problems = append(problems, fmt.Sprintf("validator%d: block %d: %v", i, height, err))
			continue
		}
		switch {
		case first == nil:
			first = blk.Header.AppHash
		case !bytes.Equal(first, blk.Header.AppHash):
			problems = append(problems, fmt.Sprintf("validator%d has app hash %X at height %d, validator0 %X", i, blk.Header.AppHash, height, first))
		}
	}
	res.Height, res.AppHash = height, fmt.Sprintf("%X", first)
	for i, u := range n.rpcs {
		actx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		out, err := exec.CommandContext(actx, n.bin, "audit", "--chain-rpc", u).CombinedOutput()
		cancel()
		if err != nil || !strings.Contains(string(out), "every app hash matches") {
			problems = append(problems, fmt.Sprintf("idlegrid audit --chain-rpc %s (validator%d): %v: %s", u, i, err, strings.TrimSpace(string(out))))
		}
	}
	return problems
}
