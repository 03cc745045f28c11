package scheduler

import (
	"fmt"
	"strings"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
)

// Sort is a consumer's explicit ranking of providers, replacing the
// default score.
type Sort string

// Sorts a request may ask for.
const (
	// SortDefault balances price, speed, load and affinity.
	SortDefault Sort = ""
	// SortPrice takes the cheapest provider for the request.
	SortPrice Sort = "price"
	// SortThroughput takes the provider with the highest recent tokens/s.
	SortThroughput Sort = "throughput"
	// SortLatency takes the provider with the lowest recent time to first
	// token.
	SortLatency Sort = "latency"
)

// ParseSort reads a sort name; "" is SortDefault.
func ParseSort(s string) (Sort, error) {
	switch Sort(s) {
	case SortDefault, SortPrice, SortThroughput, SortLatency:
		return Sort(s), nil
	}
	return "", fmt.Errorf("%q is not one of price, throughput, latency", s)
}

// Preferences are a request's routing preferences, in the spirit of
// OpenRouter's "provider" object. The zero value means no preference.
type Preferences struct {
	// Order lists providers to try first, in this order: the first listed
	// provider that can take the request gets it.
	Order []ProviderRef
	// NoFallbacks (allow_fallbacks: false) restricts the request to the
	// providers in Order; without Order it has no effect.
	NoFallbacks bool
	// MaxPrompt and MaxCompletion cap the consumer price per million
	// tokens (the provider's floor plus the gateway's fee); nil: no cap.
	MaxPrompt, MaxCompletion *money.Amount
	// Sort replaces the default score.
	Sort Sort
	// RequireDigest, when set, is a lowercase hex digest or digest prefix
	// (ParseDigest) the provider's model must have.
	RequireDigest string
	// Ignore lists providers never to use.
	Ignore []ProviderRef
}

// ProviderRef names a provider in preferences: its public key (64 hex
// digits), a prefix of it of at least MinKeyPrefix digits, or its account
// address ("idg" and 40 hex digits).
type ProviderRef struct {
	text string // lowercase
}

// MinKeyPrefix is the shortest key prefix accepted as a ProviderRef: short
// enough to type, long enough that two providers hardly ever share it.
const MinKeyPrefix = 8

// ParseProviderRef reads a provider reference; letter case is ignored.
func ParseProviderRef(s string) (ProviderRef, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if strings.HasPrefix(t, keys.AddressPrefix) {
		if err := keys.Address(t).Validate(); err != nil {
			return ProviderRef{}, err
		}
		return ProviderRef{text: t}, nil
	}
	if len(t) < MinKeyPrefix || len(t) > 2*keys.PublicKeySize || !isHex(t) {
		return ProviderRef{}, fmt.Errorf("%q is not a provider key (%d hex digits), a key prefix of at least %d hex digits, or an account address (%s…)",
			truncate(s), 2*keys.PublicKeySize, MinKeyPrefix, keys.AddressPrefix)
	}
	return ProviderRef{text: t}, nil
}

// String is the reference as parsed (lowercase).
func (r ProviderRef) String() string { return r.text }

// Matches reports whether r names the provider with key k.
func (r ProviderRef) Matches(k keys.PublicKey) bool {
	if strings.HasPrefix(r.text, keys.AddressPrefix) {
		return string(k.Address()) == r.text
	}
	return r.text != "" && strings.HasPrefix(k.String(), r.text)
}

// MinDigestPrefix is the shortest digest prefix ParseDigest accepts: the 12
// digits `ollama list` prints.
const MinDigestPrefix = 12

// ParseDigest reads a model digest or digest prefix, with or without
// Ollama's "sha256:" prefix, and returns it as lowercase hex.
func ParseDigest(s string) (string, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimPrefix(t, "sha256:")
	if len(t) < MinDigestPrefix || len(t) > 64 || !isHex(t) {
		return "", fmt.Errorf("%q is not a model digest: want 64 hex digits (optionally after \"sha256:\") or a prefix of at least %d", truncate(s), MinDigestPrefix)
	}
	return t, nil
}

// digestMatches reports whether a provider's digest starts with the
// required one (both compared without "sha256:", ignoring case).
func digestMatches(required, offered string) bool {
	o := strings.ToLower(strings.TrimPrefix(offered, "sha256:"))
	return strings.HasPrefix(o, required)
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// truncate keeps error messages short when a consumer sends a huge value.
func truncate(s string) string {
	if len(s) <= 80 {
		return s
	}
	return strings.ToValidUTF8(s[:80], "") + "…"
}

func matchesAny(refs []ProviderRef, k keys.PublicKey) bool {
	return listed(refs, k) >= 0
}

// listed is the index of the first ref naming k, or -1.
func listed(refs []ProviderRef, k keys.PublicKey) int {
	for i, r := range refs {
		if r.Matches(k) {
			return i
		}
	}
	return -1
}

// IsZero reports whether p asks for nothing: the default routing.
func (p Preferences) IsZero() bool {
	return len(p.Order) == 0 && !p.NoFallbacks && p.MaxPrompt == nil && p.MaxCompletion == nil &&
		p.Sort == SortDefault && p.RequireDigest == "" && len(p.Ignore) == 0
}
