// Package keys holds idlegrid's ed25519 identities: public keys, signatures,
// account addresses and key files. Every role (gateway, provider, verifier,
// consumer account) is identified by one of these keys; the encodings here are
// part of the wire format and must stay byte-for-byte stable.
package keys

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	voi "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

// PublicKeySize and SignatureSize are the ed25519 sizes in bytes.
const (
	PublicKeySize = ed25519.PublicKeySize
	SignatureSize = ed25519.SignatureSize
)

// AddressPrefix starts every account address, so that an address is never
// mistaken for a raw public key.
const AddressPrefix = "idg"

// PublicKey is an ed25519 public key. Its text form is 64 lowercase hex digits.
type PublicKey [PublicKeySize]byte

// Signature is an ed25519 signature. Its text form is 128 lowercase hex digits.
type Signature [SignatureSize]byte

// Address is an account address: AddressPrefix followed by the hex of the
// first 20 bytes of sha256(public key).
type Address string

// PrivateKey is an ed25519 private key. It never has a text form: it is only
// written to key files (see file.go).
type PrivateKey struct {
	key ed25519.PrivateKey
}

// Generate returns a new random private key.
func Generate() (PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return PrivateKey{}, fmt.Errorf("generate ed25519 key: %w", err)
	}
	return PrivateKey{key: priv}, nil
}

// FromSeed derives the private key for a 32-byte seed. Tests and dev
// accounts use it to get stable identities.
func FromSeed(seed []byte) (PrivateKey, error) {
	if len(seed) != ed25519.SeedSize {
		return PrivateKey{}, fmt.Errorf("ed25519 seed must be %d bytes, got %d", ed25519.SeedSize, len(seed))
	}
	return PrivateKey{key: ed25519.NewKeyFromSeed(seed)}, nil
}

// IsZero reports whether k holds no key.
func (k PrivateKey) IsZero() bool { return len(k.key) == 0 }

// Public returns the public half of k.
func (k PrivateKey) Public() PublicKey {
	var p PublicKey
	copy(p[:], k.key[32:])
	return p
}

// Sign signs msg. Ed25519 signatures are deterministic: curve25519-voi
// makes exactly the bytes crypto/ed25519 makes, in about 60 % of the time
// (TestSignMatchesStdlib, BenchmarkSign); a provider signs a checkpoint on
// every chunk it streams.
func (k PrivateKey) Sign(msg []byte) Signature {
	var s Signature
	copy(s[:], voi.Sign(voi.PrivateKey(k.key), msg))
	return s
}

// Seed returns the 32-byte seed of k (what key files store).
func (k PrivateKey) Seed() []byte { return k.key.Seed() }

// String never prints the key material, so a key that ends up in a log line
// or an error does not leak.
func (k PrivateKey) String() string { return "PrivateKey(" + k.Public().String() + ")" }

// Verify reports whether sig is a valid signature of msg by p. A weak key
// never verifies anything. Otherwise it accepts exactly what crypto/ed25519
// accepts (curve25519-voi's standard-library preset: cofactorless, any
// encoding of A that decodes), in about 60 % of the time
// (TestVerifyMatchesStdlib).
func (p PublicKey) Verify(msg []byte, sig Signature) bool {
	return !p.Weak() && voi.VerifyWithOptions(voi.PublicKey(p[:]), msg, sig[:], stdlibVerify)
}

var stdlibVerify = &voi.Options{Verify: voi.VerifyOptionsStdLib}

// smallOrderKeys are the encodings, sign bit cleared, of the eight ed25519
// points of small order (libsodium's blocklist; the all-zero key is one).
// ed25519.Verify accepts them as public keys, and for such a key anyone can
// forge signatures without a private key: for the identity point (01 00…00)
// the signature R = identity, S = 0 verifies for every message. So Verify
// refuses them, and so does everything that validates a key. Never modified.
var smallOrderKeys = [...]PublicKey{
	{},     // 0 (order 4)
	{0x01}, // 1 (order 1, the identity)
	{0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05}, // order 8
	{0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a}, // order 8
	{0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, // p-1 (order 2)
	{0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, // p, non-canonical 0 (order 4)
	{0xee, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, // p+1, non-canonical 1 (order 1)
}

// Weak reports whether p is unset or a small-order point (see
// smallOrderKeys): a key for which signatures can be forged. An honestly
// generated key never is.
func (p PublicKey) Weak() bool {
	k := p
	k[31] &= 0x7f
	for _, w := range smallOrderKeys {
		if k == w {
			return true
		}
	}
	return false
}

// IsZero reports whether p is all zero bytes (an unset key).
func (p PublicKey) IsZero() bool { return p == PublicKey{} }

// Address returns the account address of p.
func (p PublicKey) Address() Address {
	h := sha256.Sum256(p[:])
	return Address(AddressPrefix + hex.EncodeToString(h[:20]))
}

func (p PublicKey) String() string { return hex.EncodeToString(p[:]) }

// MarshalText encodes p as hex.
func (p PublicKey) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText decodes 64 hex digits.
func (p *PublicKey) UnmarshalText(b []byte) error { return decodeFixedHex(p[:], b, "public key") }

// ParsePublicKey decodes the hex text form of a public key.
func ParsePublicKey(s string) (PublicKey, error) {
	var p PublicKey
	err := p.UnmarshalText([]byte(s))
	return p, err
}

func (s Signature) String() string { return hex.EncodeToString(s[:]) }

// IsZero reports whether s is all zero bytes (an unset signature).
func (s Signature) IsZero() bool { return s == Signature{} }

// MarshalText encodes s as hex.
func (s Signature) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText decodes 128 hex digits.
func (s *Signature) UnmarshalText(b []byte) error { return decodeFixedHex(s[:], b, "signature") }

// Validate checks the form of an address (not that the account exists).
func (a Address) Validate() error {
	s := string(a)
	if len(s) != len(AddressPrefix)+40 || s[:len(AddressPrefix)] != AddressPrefix {
		return fmt.Errorf("address %q: want %q followed by 40 hex digits", truncate(s), AddressPrefix)
	}
	for _, c := range s[len(AddressPrefix):] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return fmt.Errorf("address %q: want lowercase hex digits after %q", truncate(s), AddressPrefix)
		}
	}
	return nil
}

func decodeFixedHex(dst, src []byte, what string) error {
	if len(src) != 2*len(dst) {
		return fmt.Errorf("%s: want %d hex digits, got %d characters", what, 2*len(dst), len(src))
	}
	if _, err := hex.Decode(dst, src); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
