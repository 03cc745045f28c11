package gateway

import (
	"errors"

	"github.com/idlegrid/idlegrid/internal/gateway/samplefeed"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/receipt"
	"github.com/idlegrid/idlegrid/internal/scheduler"
)

// What the planter of known samples (internal/verifier/planter) needs of
// the gateway whose feed it plants into: the connected providers' offers,
// the gateway's identity and countersignature for a planted receipt, and
// the feed's insertion, where a plant looks like any sampled response.

// Offer is one connected provider's model at its consumer prices (its
// floors plus the gateway's fee, as receipts bill them).
type Offer struct {
	Provider                     keys.PublicKey
	Model                        protocol.Model
	PricePrompt, PriceCompletion money.Amount
}

// Offers lists the connected providers' models, by model name, each
// model's providers in the hub's order.
func (g *Gateway) Offers() []Offer {
	var out []Offer
	for _, e := range g.catalog() {
		for _, o := range e.offers {
			out = append(out, Offer{Provider: o.key, Model: o.model,
				PricePrompt:     scheduler.ConsumerPrice(o.model.PricePromptPerMTok, g.cfg.FeeBps),
				PriceCompletion: scheduler.ConsumerPrice(o.model.PriceCompletionPerMTok, g.cfg.FeeBps)})
		}
	}
	return out
}

// ChainID names the ledger the gateway's receipts settle on.
func (g *Gateway) ChainID() string { return g.cfg.ChainID }

// Key is the gateway's public key, which countersigns its receipts.
func (g *Gateway) Key() keys.PublicKey { return g.cfg.Key.Public() }

// Countersign signs r as the gateway.
func (g *Gateway) Countersign(r *receipt.Receipt) keys.Signature {
	return receipt.SignGateway(g.cfg.Key, r)
}

// SharesSampleText reports whether the sample feed shares the texts of
// its samples, without which verifiers cannot judge them.
func (g *Gateway) SharesSampleText() bool { return g.samples != nil && g.samples.text }

// AddSample puts s into the sample feed and returns its sequence number.
func (g *Gateway) AddSample(s samplefeed.Sample) (uint64, error) {
	if g.samples == nil {
		return 0, errors.New("gateway: no sample feed (sample share 0)")
	}
	return g.samples.add(s), nil
}

// NewRequestID returns a request id of the gateway's form: prefix and 26
// random base32 characters.
func NewRequestID(prefix string) string { return requestID(prefix) }
