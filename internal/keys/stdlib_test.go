package keys

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"math/big"
	"testing"
)

// TestSignMatchesStdlib: Sign makes the very bytes crypto/ed25519 makes.
func TestSignMatchesStdlib(t *testing.T) {
	for i := range 200 {
		seed := bytes.Repeat([]byte{byte(i), byte(i >> 3)}, 16)
		k, err := FromSeed(seed)
		if err != nil {
			t.Fatal(err)
		}
		msg := bytes.Repeat([]byte{byte(i)}, i*7)
		want := ed25519.Sign(ed25519.NewKeyFromSeed(seed), msg)
		if got := k.Sign(msg); !bytes.Equal(got[:], want) {
			t.Fatalf("key %d: signature differs from crypto/ed25519", i)
		}
	}
}

// groupOrder is ℓ, the order of the ed25519 base point.
var groupOrder, _ = new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)

// TestVerifyMatchesStdlib: Verify accepts exactly what crypto/ed25519
// accepts, except weak keys: valid signatures, every single-bit change of
// one, S + ℓ (not canonical), small-order R, and keys with the sign bit
// flipped or y ≥ p (non-canonical encodings).
func TestVerifyMatchesStdlib(t *testing.T) {
	k, _ := FromSeed(bytes.Repeat([]byte{9}, 32))
	pub := k.Public()
	msg := []byte("a receipt")
	sig := k.Sign(msg)
	type tc struct {
		name string
		pub  PublicKey
		msg  []byte
		sig  Signature
	}
	cases := []tc{{"valid", pub, msg, sig}}
	for bit := range 8 * SignatureSize {
		s := sig
		s[bit/8] ^= 1 << (bit % 8)
		cases = append(cases, tc{fmt.Sprintf("signature bit %d", bit), pub, msg, s})
	}
	for bit := range 8 * PublicKeySize {
		p := pub
		p[bit/8] ^= 1 << (bit % 8)
		cases = append(cases, tc{fmt.Sprintf("key bit %d", bit), p, msg, sig})
	}
	// S + ℓ: the same scalar, not in canonical form.
	le := func(b []byte) *big.Int {
		r := make([]byte, len(b))
		for i := range b {
			r[len(b)-1-i] = b[i]
		}
		return new(big.Int).SetBytes(r)
	}
	sPlus := new(big.Int).Add(le(sig[32:]), groupOrder).Bytes()
	s := sig
	clear(s[32:])
	for i := range sPlus {
		s[32+i] = sPlus[len(sPlus)-1-i]
	}
	cases = append(cases, tc{"S + l", pub, msg, s})
	for i, r := range smallOrderKeys {
		s := sig
		copy(s[:32], r[:])
		cases = append(cases, tc{fmt.Sprintf("small-order R %d", i), pub, msg, s})
	}
	// y = p + 1 and p + 2 (encodings of small y values, non-canonical).
	for _, y := range []byte{0xee, 0xef} {
		var p PublicKey
		p[0] = y
		for i := 1; i < 31; i++ {
			p[i] = 0xff
		}
		p[31] = 0x7f
		cases = append(cases, tc{fmt.Sprintf("key y = %#x…", y), p, msg, sig})
	}
	accepted := 0
	for _, c := range cases {
		want := !c.pub.Weak() && ed25519.Verify(ed25519.PublicKey(c.pub[:]), c.msg, c.sig[:])
		if got := c.pub.Verify(c.msg, c.sig); got != want {
			t.Errorf("%s: Verify = %v, crypto/ed25519 says %v", c.name, got, want)
		}
		if want {
			accepted++
		}
	}
	if accepted == 0 {
		t.Fatal("no case verified: the comparison proves nothing")
	}
}

// FuzzVerifyMatchesStdlib: on any key, message and signature, Verify and
// crypto/ed25519 agree (weak keys aside).
func FuzzVerifyMatchesStdlib(f *testing.F) {
	k, _ := FromSeed(bytes.Repeat([]byte{3}, 32))
	msg := []byte("seed")
	sig := k.Sign(msg)
	pub := k.Public()
	f.Add(pub[:], msg, sig[:])
	f.Fuzz(func(t *testing.T, p, msg, s []byte) {
		if len(p) != PublicKeySize || len(s) != SignatureSize {
			return
		}
		key, sig := PublicKey(p), Signature(s)
		want := !key.Weak() && ed25519.Verify(ed25519.PublicKey(p), msg, s)
		if got := key.Verify(msg, sig); got != want {
			t.Fatalf("Verify = %v, crypto/ed25519 says %v", got, want)
		}
	})
}

func BenchmarkSign(b *testing.B) {
	k, _ := FromSeed(bytes.Repeat([]byte{1}, 32))
	msg := bytes.Repeat([]byte{7}, 300)
	b.Run("keys", func(b *testing.B) {
		for b.Loop() {
			k.Sign(msg)
		}
	})
	b.Run("crypto-ed25519", func(b *testing.B) {
		std := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
		for b.Loop() {
			ed25519.Sign(std, msg)
		}
	})
}
