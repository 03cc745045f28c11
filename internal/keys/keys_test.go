package keys

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSignVerify(t *testing.T) {
	k, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("hello")
	sig := k.Sign(msg)
	if !k.Public().Verify(msg, sig) {
		t.Fatal("valid signature rejected")
	}
	if k.Public().Verify([]byte("hellp"), sig) {
		t.Fatal("signature accepted for another message")
	}
	other, _ := Generate()
	if other.Public().Verify(msg, sig) {
		t.Fatal("signature accepted for another key")
	}
}

func TestTextForms(t *testing.T) {
	k, _ := FromSeed(bytes.Repeat([]byte{7}, 32))
	b, err := json.Marshal(struct {
		P PublicKey
		S Signature
	}{k.Public(), k.Sign([]byte("x"))})
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		P PublicKey
		S Signature
	}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.P != k.Public() || !back.P.Verify([]byte("x"), back.S) {
		t.Fatal("round trip changed key or signature")
	}
	if strings.Contains(k.String(), hexOf(k.Seed())) {
		t.Fatal("String leaks the seed")
	}
	addr := k.Public().Address()
	if err := addr.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "idg", "xyz" + strings.Repeat("0", 40), "idg" + strings.Repeat("G", 40), "idg" + strings.Repeat("0", 41)} {
		if Address(bad).Validate() == nil {
			t.Errorf("address %q accepted", bad)
		}
	}
	for _, bad := range []string{"", "zz", strings.Repeat("g", 64), strings.Repeat("0", 63)} {
		if _, err := ParsePublicKey(bad); err == nil {
			t.Errorf("public key %q accepted", bad)
		}
	}
}

func hexOf(b []byte) string {
	const digits = "0123456789abcdef"
	var s strings.Builder
	for _, c := range b {
		s.WriteByte(digits[c>>4])
		s.WriteByte(digits[c&15])
	}
	return s.String()
}

func TestKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "provider.key")
	k, created, err := LoadOrCreate(path)
	if err != nil || !created {
		t.Fatalf("LoadOrCreate = %v, %v", created, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %#o, want 0600", st.Mode().Perm())
	}
	k2, created, err := LoadOrCreate(path)
	if err != nil || created || k2.Public() != k.Public() {
		t.Fatalf("reload: created=%v err=%v same=%v", created, err, k2.Public() == k.Public())
	}
	if err := Save(path, k); err == nil {
		t.Fatal("Save overwrote an existing key file")
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); !errors.Is(err, ErrInsecureKeyFile) {
		t.Fatalf("world-readable key loaded: %v", err)
	}
}

func TestKeyFileCorrupt(t *testing.T) {
	dir := t.TempDir()
	other, _ := Generate()
	cases := map[string]string{
		"garbage":    "not json",
		"type":       `{"type":"rsa","seed":"00"}`,
		"seed":       `{"type":"ed25519","seed":"zz"}`,
		"short":      `{"type":"ed25519","seed":"0011"}`,
		"mismatch":   `{"type":"ed25519","seed":"` + strings.Repeat("01", 32) + `","public_key":"` + other.Public().String() + `"}`,
		"nopubfield": `{"type":"ed25519","seed":"` + strings.Repeat("01", 32) + `"}`,
	}
	for name, body := range cases {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(p); err == nil {
			t.Errorf("%s: corrupt key file loaded", name)
		}
	}
}

func TestWeakKeys(t *testing.T) {
	for _, w := range smallOrderKeys {
		if !w.Weak() {
			t.Errorf("%s not weak", w)
		}
		high := w
		high[31] |= 0x80
		if !high.Weak() {
			t.Errorf("%s (sign bit set) not weak", high)
		}
	}
	// The identity point with R = identity, S = 0 "signs" every message
	// for ed25519.Verify; our Verify refuses it.
	var sig Signature
	sig[0] = 1
	if smallOrderKeys[1].Verify([]byte("anything"), sig) {
		t.Fatal("forged signature accepted for the identity key")
	}
	k, _ := Generate()
	if k.Public().Weak() {
		t.Fatal("a generated key is weak")
	}
}
