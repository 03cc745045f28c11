package receipt

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/idlegrid/idlegrid/internal/keys"
)

func signedReceipt(tb testing.TB) Signed {
	tb.Helper()
	p := parties(tb)
	r := validReceipt(tb)
	return Signed{Receipt: r, ProviderSignature: SignProvider(p.provider, &r), GatewaySignature: SignGateway(p.gateway, &r)}
}

func signedJSON(tb testing.TB) []byte {
	tb.Helper()
	s := signedReceipt(tb)
	b, err := json.Marshal(&s)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestSignedVerify(t *testing.T) {
	p := parties(t)
	good := signedReceipt(t)
	if err := good.Verify(); err != nil {
		t.Fatalf("valid signed receipt: %v", err)
	}
	other := seedKey(t, 42)
	tests := []struct {
		name   string
		modify func(*Signed)
		sigErr bool // want ErrBadSignature (otherwise a validation error)
	}{
		{"provider key swapped", func(s *Signed) { s.Receipt.Provider = other.Public() }, true},
		{"provider key swapped and re-signed by the impostor", func(s *Signed) {
			// The impostor can sign as provider, but the gateway never
			// countersigned a receipt naming it.
			s.Receipt.Provider = other.Public()
			s.ProviderSignature = SignProvider(other, &s.Receipt)
		}, true},
		{"gateway key swapped", func(s *Signed) { s.Receipt.Gateway = other.Public() }, true},
		{"signatures swapped", func(s *Signed) {
			s.ProviderSignature, s.GatewaySignature = s.GatewaySignature, s.ProviderSignature
		}, true},
		{"provider signed with the gateway's key", func(s *Signed) {
			s.ProviderSignature = SignProvider(p.gateway, &s.Receipt)
		}, true},
		{"gateway signature missing", func(s *Signed) { s.GatewaySignature = keys.Signature{} }, true},
		{"provider signature bit flipped", func(s *Signed) { s.ProviderSignature[10] ^= 4 }, true},
		{"gateway signature bit flipped", func(s *Signed) { s.GatewaySignature[63] ^= 0x80 }, true},
		{"tokens inflated with amount kept consistent", func(s *Signed) {
			s.Receipt.CompletionTokens *= 2
			s.Receipt.Amount = mustAmount(t, &s.Receipt)
		}, true},
		{"invalid receipt", func(s *Signed) { s.Receipt.Amount++ }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := good
			tt.modify(&s)
			err := s.Verify()
			if err == nil {
				t.Fatal("Verify accepted a tampered receipt")
			}
			if errors.Is(err, ErrBadSignature) != tt.sigErr {
				t.Errorf("Verify: %v (want ErrBadSignature: %v)", err, tt.sigErr)
			}
		})
	}
}

func TestParseSigned(t *testing.T) {
	good := signedReceipt(t)
	s, err := ParseSigned(signedJSON(t))
	if err != nil {
		t.Fatalf("ParseSigned: %v", err)
	}
	if !reflect.DeepEqual(s, good) {
		t.Fatalf("JSON round trip changed the receipt:\n got %+v\nwant %+v", s, good)
	}
	if err := s.Verify(); err != nil {
		t.Fatalf("parsed receipt does not verify: %v", err)
	}
}

// jsonWith returns the signed receipt's JSON with one field (of the receipt,
// or of the envelope when top is set) replaced by raw JSON.
func jsonWith(tb testing.TB, top bool, field, raw string) []byte {
	tb.Helper()
	var env map[string]json.RawMessage
	if err := json.Unmarshal(signedJSON(tb), &env); err != nil {
		tb.Fatal(err)
	}
	if top {
		env[field] = json.RawMessage(raw)
	} else {
		var r map[string]json.RawMessage
		if err := json.Unmarshal(env["receipt"], &r); err != nil {
			tb.Fatal(err)
		}
		if _, ok := r[field]; !ok {
			tb.Fatalf("receipt JSON has no field %q", field)
		}
		r[field] = json.RawMessage(raw)
		b, err := json.Marshal(r)
		if err != nil {
			tb.Fatal(err)
		}
		env["receipt"] = b
	}
	b, err := json.Marshal(env)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestParseSignedRejects(t *testing.T) {
	good := signedJSON(t)
	hex64 := strings.Repeat("ab", 32)
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"not JSON", []byte("receipt")},
		{"truncated", good[:len(good)/2]},
		{"trailing garbage", append(bytes.Clone(good), '}')},
		{"two values", append(bytes.Clone(good), good...)},
		{"array", []byte(`[]`)},
		{"null", []byte(`null`)},
		{"empty object", []byte(`{}`)},
		{"gateway key 62 hex", jsonWith(t, false, "gateway", `"`+hex64[:62]+`"`)},
		{"provider key 66 hex", jsonWith(t, false, "provider", `"`+hex64+`ab"`)},
		{"provider key not hex", jsonWith(t, false, "provider", `"`+strings.Repeat("zz", 32)+`"`)},
		{"gateway key as number", jsonWith(t, false, "gateway", `12`)},
		{"request hash 63 hex", jsonWith(t, false, "request_hash", `"`+hex64[:63]+`"`)},
		{"response hash empty", jsonWith(t, false, "response_hash", `""`)},
		{"provider signature 126 hex", jsonWith(t, true, "provider_signature", `"`+strings.Repeat("ab", 63)+`"`)},
		{"gateway signature 130 hex", jsonWith(t, true, "gateway_signature", `"`+strings.Repeat("ab", 65)+`"`)},
		{"signature as base64", jsonWith(t, true, "gateway_signature", `"`+strings.Repeat("QUFB", 22)+`"`)},
		{"amount off by one", jsonWith(t, false, "amount", `313`)},
		{"amount negative", jsonWith(t, false, "amount", `-1`)},
		{"amount fractional", jsonWith(t, false, "amount", `312.5`)},
		{"amount exponent", jsonWith(t, false, "amount", `3.12e2`)},
		{"amount as string", jsonWith(t, false, "amount", `"312"`)},
		{"amount above uint64", jsonWith(t, false, "amount", `18446744073709551616`)},
		{"price above uint64", jsonWith(t, false, "price_prompt_per_mtok", `18446744073709551616`)},
		{"price makes amount overflow", jsonWith(t, false, "price_prompt_per_mtok", `18446744073709551615`)},
		{"version 2", jsonWith(t, false, "version", `2`)},
		{"version 257", jsonWith(t, false, "version", `257`)},
		{"empty model", jsonWith(t, false, "model", `""`)},
		{"zero provider key", jsonWith(t, false, "provider", `"`+strings.Repeat("00", 32)+`"`)},
		{"start time as string", jsonWith(t, false, "start_unix_ms", `"1717171717000"`)},
		{"ends before it starts", jsonWith(t, false, "end_unix_ms", `0`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseSigned(tt.in); !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseSigned: %v, want ErrMalformed", err)
			}
		})
	}
}

// The golden receipt pins the canonical encoding, the hash and the signing
// tags. A receipt signed by a provider today must verify on every gateway,
// ledger node and auditor, including ones built from older and newer code, and
// receipts already settled are identified by these hashes. So if this test
// fails, the encoding changed: that is a protocol break, not a test to update.
// Change testdata/golden.txt only together with a new receipt Version (and a
// plan for receipts of the old one).
func TestGolden(t *testing.T) {
	want := readGolden(t, filepath.Join("testdata", "golden.txt"))
	p := parties(t)
	r := goldenReceipt(t)
	got := map[string]string{
		"bytes":              hex.EncodeToString(r.Bytes()),
		"hash":               r.Hash().String(),
		"provider_signature": SignProvider(p.provider, &r).String(),
		"gateway_signature":  SignGateway(p.gateway, &r).String(),
	}
	for _, k := range []string{"bytes", "hash", "provider_signature", "gateway_signature"} {
		if want[k] == "" {
			t.Errorf("testdata/golden.txt has no %q line (got %s)", k, got[k])
			continue
		}
		if got[k] != want[k] {
			t.Errorf("golden %s changed (a protocol break):\n got %s\nwant %s", k, got[k], want[k])
		}
	}
	// The checked-in bytes decode to the golden receipt, independently of
	// Bytes, so a change made consistently to Bytes and Decode still fails.
	b, err := hex.DecodeString(want["bytes"])
	if err != nil {
		t.Fatal(err)
	}
	dec, err := Decode(b)
	if err != nil {
		t.Fatalf("golden bytes do not decode: %v", err)
	}
	if !reflect.DeepEqual(dec, r) {
		t.Errorf("golden bytes decode to\n%+v\nwant\n%+v", dec, r)
	}
	if Sum(b).String() != want["hash"] {
		t.Error("golden hash is not the sha256 of the golden bytes")
	}
}

// readGolden reads "name value" lines; '#' starts a comment line.
func readGolden(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, " ")
		if !ok {
			t.Fatalf("%s: bad line %q", path, line)
		}
		m[k] = strings.TrimSpace(v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestSmallOrderKeysRejected: for small-order public keys signatures can be
// forged without a private key (keys.PublicKey.Weak). Validate, and so
// Decode, ParseSigned and Signed.Verify, must refuse receipts naming them,
// whichever role they claim.
func TestSmallOrderKeysRejected(t *testing.T) {
	identity := keys.PublicKey{0x01}
	pMinus1 := keys.PublicKey{0xec}
	for i := 1; i < 31; i++ {
		pMinus1[i] = 0xff
	}
	pMinus1[31] = 0x7f
	for _, k := range []keys.PublicKey{{}, identity, pMinus1} {
		if !k.Weak() {
			t.Fatalf("%s is not reported weak", k)
		}
		for _, role := range []string{"provider", "gateway"} {
			r := validReceipt(t)
			if role == "provider" {
				r.Provider = k
			} else {
				r.Gateway = k
			}
			if err := r.Validate(); err == nil {
				t.Errorf("receipt with small-order %s key %s accepted", role, k)
			}
		}
	}
	// The attack this prevents: a gateway alone fabricating a "provider
	// signed" receipt for any usage it likes with R = identity, S = 0.
	var forged keys.Signature
	forged[0] = 1
	r := validReceipt(t)
	r.Provider = identity
	r.CompletionTokens = 1_000_000
	r.Amount = mustAmount(t, &r)
	s := Signed{Receipt: r, ProviderSignature: forged, GatewaySignature: SignGateway(parties(t).gateway, &r)}
	if err := s.Verify(); err == nil {
		t.Fatal("Signed.Verify accepted a receipt whose provider signature was forged")
	}
}

// AppendSignedMessages must give VerifyBatch exactly the messages the
// provider and the gateway signed, and earlier messages must survive later
// appends.
func TestAppendSignedMessages(t *testing.T) {
	s := signedReceipt(t)
	b := s.Receipt.Bytes()
	want := [2]keys.SignedMessage{
		{Key: s.Receipt.Provider, Message: signedBytes(providerTag, &s.Receipt), Signature: s.ProviderSignature},
		{Key: s.Receipt.Gateway, Message: signedBytes(gatewayTag, &s.Receipt), Signature: s.GatewaySignature},
	}
	var buf []byte
	var got [][2]keys.SignedMessage
	for range 3 { // a nil buf grows while earlier messages are held
		var m [2]keys.SignedMessage
		buf, m = AppendSignedMessages(buf, b, &s.Receipt, s.ProviderSignature, s.GatewaySignature)
		got = append(got, m)
	}
	if len(buf) != 3*SignedMessagesSize(len(b)) {
		t.Errorf("appended %d bytes, SignedMessagesSize says %d", len(buf), 3*SignedMessagesSize(len(b)))
	}
	for _, m := range got {
		if !reflect.DeepEqual(m, want) {
			t.Fatalf("AppendSignedMessages = %+v, want %+v", m, want)
		}
	}
	if ok := keys.VerifyBatch([]keys.SignedMessage{got[0][0], got[0][1], got[2][0], got[2][1]}); !ok[0] || !ok[1] || !ok[2] || !ok[3] {
		t.Errorf("VerifyBatch = %v, want all true", ok)
	}
}
