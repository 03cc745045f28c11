package receipt

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/idlegrid/idlegrid/internal/keys"
)

// Domain-separation tags: a signature made for one role or purpose can never
// be replayed as another.
const (
	providerTag = "idlegrid/receipt/provider/v1\n"
	gatewayTag  = "idlegrid/receipt/gateway/v1\n"
)

// ErrBadSignature is wrapped when a signature does not verify.
var ErrBadSignature = errors.New("bad receipt signature")

func signedBytes(tag string, r *Receipt) []byte {
	return append([]byte(tag), r.Bytes()...)
}

// SignProvider is the provider's signature over r.
func SignProvider(k keys.PrivateKey, r *Receipt) keys.Signature {
	return k.Sign(signedBytes(providerTag, r))
}

// SignGateway is the gateway's countersignature over r.
func SignGateway(k keys.PrivateKey, r *Receipt) keys.Signature {
	return k.Sign(signedBytes(gatewayTag, r))
}

// VerifyProvider checks the provider's signature against r.Provider.
func VerifyProvider(r *Receipt, sig keys.Signature) error {
	if !r.Provider.Verify(signedBytes(providerTag, r), sig) {
		return fmt.Errorf("%w: provider %s", ErrBadSignature, r.Provider)
	}
	return nil
}

// VerifyGateway checks the gateway's signature against r.Gateway.
func VerifyGateway(r *Receipt, sig keys.Signature) error {
	if !r.Gateway.Verify(signedBytes(gatewayTag, r), sig) {
		return fmt.Errorf("%w: gateway %s", ErrBadSignature, r.Gateway)
	}
	return nil
}

// Verify checks the receipt's fields and both signatures.
func (s *Signed) Verify() error {
	if err := s.Receipt.Validate(); err != nil {
		return err
	}
	if err := VerifyProvider(&s.Receipt, s.ProviderSignature); err != nil {
		return err
	}
	return VerifyGateway(&s.Receipt, s.GatewaySignature)
}

// ParseSigned decodes the JSON form of a signed receipt (as served by
// /v1/receipts and written by `idlegrid receipts`).
// It does not verify signatures: call Verify.
func ParseSigned(b []byte) (Signed, error) {
	var s Signed
	if err := json.Unmarshal(b, &s); err != nil {
		return Signed{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if err := s.Receipt.Validate(); err != nil {
		return Signed{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return s, nil
}

// AppendSignedMessages appends the provider's and the gateway's signed
// messages for r, decoded from b, as keys.VerifyBatch takes them: Decode
// accepts only canonical bytes, so b is r's encoding and is not rebuilt.
// The two messages are appended to buf, which is returned grown, so that
// a caller checking many receipts can hold all their messages in one
// allocation (SignedMessagesSize each).
func AppendSignedMessages(buf, b []byte, r *Receipt, providerSig, gatewaySig keys.Signature) ([]byte, [2]keys.SignedMessage) {
	start := len(buf)
	buf = append(append(buf, providerTag...), b...)
	mid := len(buf)
	buf = append(append(buf, gatewayTag...), b...)
	return buf, [2]keys.SignedMessage{
		{Key: r.Provider, Message: buf[start:mid:mid], Signature: providerSig},
		{Key: r.Gateway, Message: buf[mid:len(buf):len(buf)], Signature: gatewaySig},
	}
}

// SignedMessagesSize is how many bytes AppendSignedMessages appends for a
// receipt of n bytes.
func SignedMessagesSize(n int) int { return len(providerTag) + len(gatewayTag) + 2*n }
