// Package receipt binds one served request to money: the canonical receipt
// encoding, its hash, and the provider's signature and the gateway's
// countersignature over it. Gateway, provider, ledger and auditors must agree
// on these bytes exactly, so the encoding is fixed-order binary with
// length-prefixed strings and no optional parts.
package receipt

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
)

// Version is the receipt format version written by this code.
const Version = 1

// Limits on string fields, in bytes; the decoder rejects longer ones so a
// hostile receipt cannot make a verifier allocate much.
const (
	MaxChainID   = 64
	MaxRequestID = 128
	MaxConsumer  = 128
	MaxModel     = 256
	MaxDigest    = 128
)

// Hash is a sha256 digest; its text form is 64 hex digits.
type Hash [32]byte

func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// MarshalText encodes h as hex.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText decodes 64 hex digits.
func (h *Hash) UnmarshalText(b []byte) error {
	if len(b) != 64 {
		return fmt.Errorf("hash: want 64 hex digits, got %d characters", len(b))
	}
	_, err := hex.Decode(h[:], b)
	return err
}

// Sum returns the sha256 of b.
func Sum(b []byte) Hash { return sha256.Sum256(b) }

// Receipt is what one served request cost and who served it.
type Receipt struct {
	// Version of the receipt format (Version).
	Version uint8 `json:"version"`
	// ChainID names the ledger this receipt settles on.
	ChainID string `json:"chain_id"`
	// RequestID is unique per request; a receipt settles at most once.
	RequestID string `json:"request_id"`
	// Gateway is the key of the gateway that admitted the request.
	Gateway keys.PublicKey `json:"gateway"`
	// Provider is the key of the provider that served it.
	Provider keys.PublicKey `json:"provider"`
	// Consumer is the ledger account that pays.
	Consumer keys.Address `json:"consumer"`
	// Model is the model name the consumer asked for.
	Model string `json:"model"`
	// ModelDigest is the digest of the weights the provider attests it ran.
	ModelDigest string `json:"model_digest"`
	// PromptTokens and CompletionTokens are the metered token counts.
	PromptTokens     uint64 `json:"prompt_tokens"`
	CompletionTokens uint64 `json:"completion_tokens"`
	// PricePromptPerMTok and PriceCompletionPerMTok are the unit prices in
	// base units per million tokens.
	PricePromptPerMTok     money.Amount `json:"price_prompt_per_mtok"`
	PriceCompletionPerMTok money.Amount `json:"price_completion_per_mtok"`
	// Amount is the total charged: Cost(prompt) + Cost(completion).
	Amount money.Amount `json:"amount"`
	// RequestHash is the sha256 of the consumer's request body.
	RequestHash Hash `json:"request_hash"`
	// ResponseHash is the sha256 of the generated text as delivered.
	ResponseHash Hash `json:"response_hash"`
	// StartUnixMs and EndUnixMs bound the service in Unix milliseconds.
	StartUnixMs int64 `json:"start_unix_ms"`
	EndUnixMs   int64 `json:"end_unix_ms"`
}

// Signed is a receipt with the provider's signature and the gateway's
// countersignature. It is what the gateway stores and settles.
type Signed struct {
	Receipt           Receipt        `json:"receipt"`
	ProviderSignature keys.Signature `json:"provider_signature"`
	GatewaySignature  keys.Signature `json:"gateway_signature"`
}

// ComputeAmount is the amount for the given counts and prices.
func ComputeAmount(promptTokens, completionTokens uint64, pricePrompt, priceCompletion money.Amount) (money.Amount, error) {
	p, err := money.Cost(promptTokens, pricePrompt)
	if err != nil {
		return 0, err
	}
	c, err := money.Cost(completionTokens, priceCompletion)
	if err != nil {
		return 0, err
	}
	return p.Add(c)
}

// Validate checks everything that can be checked without the ledger.
func (r *Receipt) Validate() error {
	if r.Version != Version {
		return fmt.Errorf("receipt version %d: want %d", r.Version, Version)
	}
	for _, f := range []struct {
		name string
		v    string
		max  int
	}{
		{"chain_id", r.ChainID, MaxChainID},
		{"request_id", r.RequestID, MaxRequestID},
		{"consumer", string(r.Consumer), MaxConsumer},
		{"model", r.Model, MaxModel},
		{"model_digest", r.ModelDigest, MaxDigest},
	} {
		if f.v == "" || len(f.v) > f.max || !utf8.ValidString(f.v) {
			return fmt.Errorf("receipt %s: want 1 to %d bytes of UTF-8", f.name, f.max)
		}
	}
	if r.Gateway.Weak() || r.Provider.Weak() {
		return errors.New("receipt: gateway and provider keys must be set and not of small order")
	}
	want, err := ComputeAmount(r.PromptTokens, r.CompletionTokens, r.PricePromptPerMTok, r.PriceCompletionPerMTok)
	if err != nil {
		return fmt.Errorf("receipt amount: %w", err)
	}
	if r.Amount != want {
		return fmt.Errorf("receipt amount %d: tokens × prices give %d", r.Amount, want)
	}
	if r.EndUnixMs < r.StartUnixMs {
		return errors.New("receipt ends before it starts")
	}
	return nil
}

// Bytes is the canonical encoding of r: what is hashed and signed.
func (r *Receipt) Bytes() []byte {
	b := make([]byte, 0, 256+len(r.ChainID)+len(r.RequestID)+len(r.Consumer)+len(r.Model)+len(r.ModelDigest))
	b = append(b, r.Version)
	b = appendString(b, r.ChainID)
	b = appendString(b, r.RequestID)
	b = append(b, r.Gateway[:]...)
	b = append(b, r.Provider[:]...)
	b = appendString(b, string(r.Consumer))
	b = appendString(b, r.Model)
	b = appendString(b, r.ModelDigest)
	for _, v := range []uint64{r.PromptTokens, r.CompletionTokens, uint64(r.PricePromptPerMTok), uint64(r.PriceCompletionPerMTok), uint64(r.Amount)} {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	b = append(b, r.RequestHash[:]...)
	b = append(b, r.ResponseHash[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(r.StartUnixMs))
	b = binary.BigEndian.AppendUint64(b, uint64(r.EndUnixMs))
	return b
}

// Hash is the sha256 of the canonical bytes.
func (r *Receipt) Hash() Hash { return sha256.Sum256(r.Bytes()) }

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("malformed receipt")

// Decode parses canonical bytes. It accepts exactly what Bytes produces for a
// receipt that passes Validate, so Decode(b) succeeding implies
// Bytes(Decode(b)) == b.
func Decode(b []byte) (Receipt, error) {
	d := decoder{b: b}
	var r Receipt
	r.Version = d.byte()
	r.ChainID = d.string(MaxChainID)
	r.RequestID = d.string(MaxRequestID)
	d.fixed(r.Gateway[:])
	d.fixed(r.Provider[:])
	r.Consumer = keys.Address(d.string(MaxConsumer))
	r.Model = d.string(MaxModel)
	r.ModelDigest = d.string(MaxDigest)
	r.PromptTokens = d.uint64()
	r.CompletionTokens = d.uint64()
	r.PricePromptPerMTok = money.Amount(d.uint64())
	r.PriceCompletionPerMTok = money.Amount(d.uint64())
	r.Amount = money.Amount(d.uint64())
	d.fixed(r.RequestHash[:])
	d.fixed(r.ResponseHash[:])
	r.StartUnixMs = int64(d.uint64())
	r.EndUnixMs = int64(d.uint64())
	if d.err != nil {
		return Receipt{}, d.err
	}
	if len(d.b) != 0 {
		return Receipt{}, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(d.b))
	}
	if err := r.Validate(); err != nil {
		return Receipt{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return r, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || len(d.b) < n {
		d.err = fmt.Errorf("%w: truncated", ErrMalformed)
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() uint8 {
	if v := d.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (d *decoder) uint64() uint64 {
	if v := d.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (d *decoder) fixed(dst []byte) { copy(dst, d.take(len(dst))) }

func (d *decoder) string(max int) string {
	n := d.take(4)
	if n == nil {
		return ""
	}
	l := binary.BigEndian.Uint32(n)
	if l > uint32(max) {
		d.err = fmt.Errorf("%w: string of %d bytes exceeds %d", ErrMalformed, l, max)
		return ""
	}
	return string(d.take(int(l)))
}
