package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// The receipts the gateway countersigns: one check of what a provider
// signed, for final, checkpoint and embedding receipts alike, and the
// record that stores and charges each before the consumer sees the end of
// its answer.

// maxReceiptSkew is how far in the future a provider's receipt may end:
// clocks differ, but not by minutes.
const maxReceiptSkew = 5 * time.Minute

// checkProviderReceipt is the one check of a receipt r a provider signed
// with sig for job: the usage it claims fits the request and the bytes
// relayed (checkUsage), it ends no later than now plus maxReceiptSkew, its
// fields are valid, and the provider's signature verifies.
func checkProviderReceipt(job *protocol.Job, r *receipt.Receipt, sig keys.Signature, usage protocol.Usage, relayed int, now time.Time) error {
	if err := checkUsage(&job.Request, usage, relayed); err != nil {
		return err
	}
	if r.EndUnixMs > now.Add(maxReceiptSkew).UnixMilli() {
		return errors.New("receipt end time is in the future")
	}
	if err := r.Validate(); err != nil {
		return err
	}
	return receipt.VerifyProvider(r, sig)
}

// record countersigns r, stores it and charges it to the request's
// reservation. The tokens were delivered: the receipt is recorded even if
// the consumer has just gone away.
func (g *Gateway) record(ctx context.Context, r receipt.Receipt, providerSig keys.Signature, hold *reservation) (receipt.Signed, error) {
	signed := receipt.Signed{Receipt: r, ProviderSignature: providerSig, GatewaySignature: receipt.SignGateway(g.cfg.Key, &r)}
	if err := g.cfg.Store.SaveReceipt(context.WithoutCancel(ctx), signed); err != nil {
		return signed, err
	}
	if hold != nil {
		hold.charged(r.Amount)
		g.settle.stored()
	}
	return signed, nil
}

// checkpointReceipt is the partial receipt seg's latest checkpoint signs,
// or why it cannot be billed.
func checkpointReceipt(job *protocol.Job, provider keys.PublicKey, last *checkpoint, now time.Time) (receipt.Receipt, error) {
	cp := last.cp
	r, err := job.Terms.CheckpointReceipt(provider, cp, last.text)
	if err != nil {
		return receipt.Receipt{}, err
	}
	if cp.CompletionTokens > uint64(last.tokens) {
		return r, fmt.Errorf("the checkpoint claims %d completion tokens, %d were relayed up to it", cp.CompletionTokens, last.tokens)
	}
	// The same check as a final receipt's: the prompt tokens (version 3)
	// cannot exceed what the prompt can hold.
	usage := protocol.Usage{PromptTokens: cp.PromptTokens, CompletionTokens: cp.CompletionTokens}
	return r, checkProviderReceipt(job, &r, cp.Signature, usage, last.relayed, now)
}

// recordCheckpoint stores the receipt of a job that ended mid-answer from
// its latest checkpoint, countersigned, and charges it to the consumer (it
// settles on the ledger with the other stored receipts); a job without a
// valid checkpoint leaves what it delivered unbilled.
func (g *Gateway) recordCheckpoint(ctx context.Context, job *protocol.Job, provider keys.PublicKey, hold *reservation, seg *segment, log *slog.Logger) {
	if seg.chunks == 0 {
		return
	}
	if seg.last.cp == nil {
		log.Info("job ended mid-answer without a checkpoint; its tokens are not billed", "unbilled_tokens", seg.tokens)
		return
	}
	r, err := checkpointReceipt(job, provider, &seg.last, time.Now())
	if err != nil {
		log.Warn("checkpoint rejected; the job's tokens are not billed", "err", err, "unbilled_tokens", seg.tokens)
		return
	}
	if _, err := g.record(ctx, r, seg.last.cp.Signature, hold); err != nil {
		log.Error("could not store the partial receipt", "err", err)
		return
	}
	log.Info("partial receipt stored from the provider's last checkpoint", "completion_tokens", r.CompletionTokens,
		"unbilled_tokens", seg.tokens-int(r.CompletionTokens), "amount", r.Amount.String())
}
