package receipt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
)

// seedKey derives a fixed key: every test identity is reproducible, and the
// golden test depends on it.
func seedKey(tb testing.TB, b byte) keys.PrivateKey {
	tb.Helper()
	k, err := keys.FromSeed(bytes.Repeat([]byte{b}, 32))
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// testParties are the keys every test signs with.
type testParties struct {
	provider, gateway, consumer keys.PrivateKey
}

func parties(tb testing.TB) testParties {
	return testParties{provider: seedKey(tb, 1), gateway: seedKey(tb, 2), consumer: seedKey(tb, 3)}
}

// validReceipt is a realistic receipt that passes Validate.
func validReceipt(tb testing.TB) Receipt { return goldenReceipt(tb) }

// goldenReceipt is the receipt pinned by testdata/golden.txt: changing any
// value here fails TestGolden (see there).
func goldenReceipt(tb testing.TB) Receipt {
	tb.Helper()
	p := parties(tb)
	r := Receipt{
		Version:                Version,
		ChainID:                "idlegrid-dev-1",
		RequestID:              "req-01HZX3K9Q7",
		Gateway:                p.gateway.Public(),
		Provider:               p.provider.Public(),
		Consumer:               p.consumer.Public().Address(),
		Model:                  "llama3.2:1b",
		ModelDigest:            "sha256:baf6a787fdffd633537aa2eb51cfd54cb93ff08e28040095462bb63daf552878",
		PromptTokens:           27,
		CompletionTokens:       512,
		PricePromptPerMTok:     200_000,
		PriceCompletionPerMTok: 600_000,
		RequestHash:            Sum([]byte(`{"model":"llama3.2:1b","messages":[{"role":"user","content":"hi"}]}`)),
		ResponseHash:           Sum([]byte("Hello! How can I help?")),
		StartUnixMs:            1_717_171_717_000,
		EndUnixMs:              1_717_171_719_345,
	}
	r.Amount = mustAmount(tb, &r)
	return r
}

func mustAmount(tb testing.TB, r *Receipt) money.Amount {
	tb.Helper()
	a, err := ComputeAmount(r.PromptTokens, r.CompletionTokens, r.PricePromptPerMTok, r.PriceCompletionPerMTok)
	if err != nil {
		tb.Fatalf("ComputeAmount: %v", err)
	}
	return a
}

func TestBytesDecodeRoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Receipt)
	}{
		{"typical", func(*Receipt) {}},
		{"one-byte strings and zero counts", func(r *Receipt) {
			r.ChainID, r.RequestID, r.Consumer, r.Model, r.ModelDigest = "c", "r", "x", "m", "d"
			r.PromptTokens, r.CompletionTokens, r.PricePromptPerMTok, r.PriceCompletionPerMTok = 0, 0, 0, 0
			r.RequestHash, r.ResponseHash = Hash{}, Hash{}
		}},
		{"maximum-length strings", func(r *Receipt) {
			r.ChainID = strings.Repeat("c", MaxChainID)
			r.RequestID = strings.Repeat("r", MaxRequestID)
			r.Consumer = keys.Address(strings.Repeat("a", MaxConsumer))
			r.Model = strings.Repeat("m", MaxModel)
			r.ModelDigest = strings.Repeat("d", MaxDigest)
		}},
		{"multibyte UTF-8 at the limit", func(r *Receipt) {
			r.Model = strings.Repeat("é", MaxModel/2) // 2 bytes each: exactly MaxModel bytes
			r.RequestID = "zapytanie-żółć-🦙"
		}},
		{"max uint64 prompt price, amount just fits", func(r *Receipt) {
			r.PromptTokens, r.CompletionTokens = 1_000_000, 0
			r.PricePromptPerMTok, r.PriceCompletionPerMTok = math.MaxUint64, math.MaxUint64
		}},
		{"max uint64 completion price, one token", func(r *Receipt) {
			r.PromptTokens, r.CompletionTokens = 0, 1
			r.PricePromptPerMTok, r.PriceCompletionPerMTok = 0, math.MaxUint64
		}},
		{"max uint64 token counts at price zero", func(r *Receipt) {
			r.PromptTokens, r.CompletionTokens = math.MaxUint64, math.MaxUint64
			r.PricePromptPerMTok, r.PriceCompletionPerMTok = 0, 0
		}},
		{"negative start and end", func(r *Receipt) {
			r.StartUnixMs, r.EndUnixMs = math.MinInt64, -1
		}},
		{"zero-length service at the extremes", func(r *Receipt) {
			r.StartUnixMs, r.EndUnixMs = math.MaxInt64, math.MaxInt64
		}},
		{"hashes all ones", func(r *Receipt) {
			for i := range r.RequestHash {
				r.RequestHash[i], r.ResponseHash[i] = 0xff, 0xff
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validReceipt(t)
			tt.modify(&r)
			r.Amount = mustAmount(t, &r)
			if err := r.Validate(); err != nil {
				t.Fatalf("test receipt is invalid: %v", err)
			}
			b := r.Bytes()
			got, err := Decode(b)
			if err != nil {
				t.Fatalf("Decode(Bytes(r)): %v", err)
			}
			if !reflect.DeepEqual(got, r) {
				t.Fatalf("round trip changed the receipt:\n got %+v\nwant %+v", got, r)
			}
			if again := got.Bytes(); !bytes.Equal(again, b) {
				t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, b)
			}
			if got.Hash() != r.Hash() || r.Hash() != Sum(b) {
				t.Fatal("Hash is not the sha256 of the canonical bytes")
			}
		})
	}
}

// mutateField changes field i of r to a different value of the same type, so
// that TestEveryFieldIsBound covers new fields without being edited.
func mutateField(tb testing.TB, r *Receipt, i int) {
	tb.Helper()
	f := reflect.ValueOf(r).Elem().Field(i)
	switch f.Kind() {
	case reflect.String:
		f.SetString(f.String() + "x")
	case reflect.Uint8, reflect.Uint64:
		f.SetUint(f.Uint() + 1)
	case reflect.Int64:
		f.SetInt(f.Int() + 1)
	case reflect.Array:
		e := f.Index(0)
		e.SetUint(e.Uint() ^ 1)
	default:
		tb.Fatalf("field %s has kind %s: teach mutateField about it", reflect.TypeFor[Receipt]().Field(i).Name, f.Kind())
	}
}

// TestEveryFieldIsBound checks that the hash and both signatures cover every
// field: changing any one of them changes Hash and breaks both signatures.
// It iterates over the struct by reflection, so a field added to Receipt but
// forgotten in Bytes fails here.
func TestEveryFieldIsBound(t *testing.T) {
	p := parties(t)
	base := validReceipt(t)
	provSig, gwSig := SignProvider(p.provider, &base), SignGateway(p.gateway, &base)
	typ := reflect.TypeFor[Receipt]()
	for i := range typ.NumField() {
		name := typ.Field(i).Name
		t.Run(name, func(t *testing.T) {
			r := base
			mutateField(t, &r, i)
			if reflect.DeepEqual(r, base) {
				t.Fatal("mutation did not change the field")
			}
			if r.Hash() == base.Hash() {
				t.Errorf("changing %s does not change Hash", name)
			}
			if bytes.Equal(r.Bytes(), base.Bytes()) {
				t.Errorf("changing %s does not change Bytes", name)
			}
			// Key fields are checked against their own (changed) key, which
			// fails for another reason; the signature must fail either way.
			if err := VerifyProvider(&r, provSig); !errors.Is(err, ErrBadSignature) {
				t.Errorf("provider signature still verifies after changing %s: %v", name, err)
			}
			if err := VerifyGateway(&r, gwSig); !errors.Is(err, ErrBadSignature) {
				t.Errorf("gateway signature still verifies after changing %s: %v", name, err)
			}
		})
	}
}

// TestDomainSeparation: one key acting as both provider and gateway must not
// be able to turn its provider signature into a countersignature, or back.
func TestDomainSeparation(t *testing.T) {
	k := seedKey(t, 9)
	r := validReceipt(t)
	r.Provider, r.Gateway = k.Public(), k.Public()
	provSig, gwSig := SignProvider(k, &r), SignGateway(k, &r)
	if provSig == gwSig {
		t.Fatal("provider and gateway signatures over the same receipt are equal")
	}
	if err := VerifyProvider(&r, provSig); err != nil {
		t.Fatalf("provider signature: %v", err)
	}
	if err := VerifyGateway(&r, gwSig); err != nil {
		t.Fatalf("gateway signature: %v", err)
	}
	if err := VerifyGateway(&r, provSig); !errors.Is(err, ErrBadSignature) {
		t.Errorf("provider signature accepted as gateway signature: %v", err)
	}
	if err := VerifyProvider(&r, gwSig); !errors.Is(err, ErrBadSignature) {
		t.Errorf("gateway signature accepted as provider signature: %v", err)
	}
	// A bare signature over the canonical bytes (no tag) is neither.
	raw := k.Sign(r.Bytes())
	if VerifyProvider(&r, raw) == nil || VerifyGateway(&r, raw) == nil {
		t.Error("an untagged signature over the canonical bytes verifies")
	}
}

func TestValidateRejects(t *testing.T) {
	invalidUTF8 := string([]byte{0xff, 0xfe})
	tests := []struct {
		name   string
		modify func(*Receipt)
		want   string // substring of the error
	}{
		{"version 0", func(r *Receipt) { r.Version = 0 }, "version"},
		{"version 2", func(r *Receipt) { r.Version = Version + 1 }, "version"},
		{"empty chain id", func(r *Receipt) { r.ChainID = "" }, "chain_id"},
		{"long chain id", func(r *Receipt) { r.ChainID = strings.Repeat("c", MaxChainID+1) }, "chain_id"},
		{"invalid UTF-8 chain id", func(r *Receipt) { r.ChainID = invalidUTF8 }, "chain_id"},
		{"empty request id", func(r *Receipt) { r.RequestID = "" }, "request_id"},
		{"long request id", func(r *Receipt) { r.RequestID = strings.Repeat("r", MaxRequestID+1) }, "request_id"},
		{"invalid UTF-8 request id", func(r *Receipt) { r.RequestID = "req" + invalidUTF8 }, "request_id"},
		{"empty consumer", func(r *Receipt) { r.Consumer = "" }, "consumer"},
		{"long consumer", func(r *Receipt) { r.Consumer = keys.Address(strings.Repeat("a", MaxConsumer+1)) }, "consumer"},
		{"invalid UTF-8 consumer", func(r *Receipt) { r.Consumer = keys.Address(invalidUTF8) }, "consumer"},
		{"empty model", func(r *Receipt) { r.Model = "" }, "model"},
		{"long model", func(r *Receipt) { r.Model = strings.Repeat("m", MaxModel+1) }, "model"},
		{"long multibyte model", func(r *Receipt) { r.Model = strings.Repeat("é", MaxModel/2) + "x" }, "model"},
		{"invalid UTF-8 model", func(r *Receipt) { r.Model = "llama" + invalidUTF8 }, "model"},
		{"truncated rune in model", func(r *Receipt) { r.Model = "é"[:1] }, "model"},
		{"empty digest", func(r *Receipt) { r.ModelDigest = "" }, "model_digest"},
		{"long digest", func(r *Receipt) { r.ModelDigest = strings.Repeat("d", MaxDigest+1) }, "model_digest"},
		{"invalid UTF-8 digest", func(r *Receipt) { r.ModelDigest = invalidUTF8 }, "model_digest"},
		{"zero gateway key", func(r *Receipt) { r.Gateway = keys.PublicKey{} }, "keys must be set"},
		{"zero provider key", func(r *Receipt) { r.Provider = keys.PublicKey{} }, "keys must be set"},
		{"amount one too high", func(r *Receipt) { r.Amount++ }, "amount"},
		{"amount one too low", func(r *Receipt) { r.Amount-- }, "amount"},
		{"amount zero for paid work", func(r *Receipt) { r.Amount = 0 }, "amount"},
		{"prompt cost overflows", func(r *Receipt) {
			r.PromptTokens, r.PricePromptPerMTok = 1_000_001, math.MaxUint64
		}, "overflow"},
		{"sum of costs overflows", func(r *Receipt) {
			r.PromptTokens, r.CompletionTokens = 1_000_000, 1_000_000
			r.PricePromptPerMTok, r.PriceCompletionPerMTok = math.MaxUint64, 1
		}, "overflow"},
		{"ends before it starts", func(r *Receipt) { r.EndUnixMs = r.StartUnixMs - 1 }, "ends before"},
		{"ends before it starts, negative", func(r *Receipt) { r.StartUnixMs, r.EndUnixMs = -5, -6 }, "ends before"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validReceipt(t)
			tt.modify(&r)
			err := r.Validate()
			if err == nil {
				t.Fatal("Validate accepted an invalid receipt")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
			// Decode must refuse the same receipt (Bytes still encodes it).
			if _, err := Decode(r.Bytes()); !errors.Is(err, ErrMalformed) {
				t.Errorf("Decode accepted or misreported an invalid receipt: %v", err)
			}
		})
	}
}

func TestDecodeRejectsTruncation(t *testing.T) {
	r := validReceipt(t)
	b := r.Bytes()
	for n := range len(b) {
		if _, err := Decode(b[:n]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("Decode of the first %d of %d bytes: %v, want ErrMalformed", n, len(b), err)
		}
	}
	if _, err := Decode(nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Decode(nil): %v", err)
	}
}

func TestDecodeRejectsTrailingBytes(t *testing.T) {
	r := validReceipt(t)
	b := r.Bytes()
	for _, extra := range [][]byte{{0}, {0xff}, b} {
		_, err := Decode(append(bytes.Clone(b), extra...))
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "trailing") {
			t.Errorf("Decode with %d trailing bytes: %v", len(extra), err)
		}
	}
}

// stringOffsets returns the offsets of the length prefixes of the five string
// fields in b (as Bytes lays them out).
func stringOffsets(r *Receipt) map[string]int {
	off := 1
	m := map[string]int{"chain_id": off}
	off += 4 + len(r.ChainID)
	m["request_id"] = off
	off += 4 + len(r.RequestID) + 2*keys.PublicKeySize
	m["consumer"] = off
	off += 4 + len(r.Consumer)
	m["model"] = off
	off += 4 + len(r.Model)
	m["model_digest"] = off
	return m
}

func TestDecodeRejectsBadLengthPrefixes(t *testing.T) {
	r := validReceipt(t)
	b := r.Bytes()
	max := map[string]uint32{"chain_id": MaxChainID, "request_id": MaxRequestID, "consumer": MaxConsumer, "model": MaxModel, "model_digest": MaxDigest}
	for field, off := range stringOffsets(&r) {
		for _, l := range []uint32{max[field] + 1, 1 << 24, 1<<31 - 1, 1 << 31, math.MaxUint32} {
			bad := bytes.Clone(b)
			binary.BigEndian.PutUint32(bad[off:], l)
			if _, err := Decode(bad); !errors.Is(err, ErrMalformed) {
				t.Errorf("%s length %d: %v, want ErrMalformed", field, l, err)
			}
		}
		// Within the limit but longer than what is left: truncated.
		short := bytes.Clone(b[:off+4+1])
		binary.BigEndian.PutUint32(short[off:], max[field])
		if _, err := Decode(short); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s length %d with 1 byte left: %v", field, max[field], err)
		}
		// A length that is wrong but in range shifts every later field:
		// the decoder must notice (here, by trailing bytes or a bad field).
		shifted := bytes.Clone(b)
		binary.BigEndian.PutUint32(shifted[off:], binary.BigEndian.Uint32(b[off:])-1)
		if _, err := Decode(shifted); err == nil {
			t.Errorf("%s length off by one accepted", field)
		}
	}
}

// TestDecodeHostileLengthAllocates checks that a length prefix claiming 4 GiB
// costs the decoder nothing like 4 GiB: the limit is checked before reading.
func TestDecodeHostileLengthAllocates(t *testing.T) {
	r := validReceipt(t)
	b := r.Bytes()
	bad := bytes.Clone(b)
	binary.BigEndian.PutUint32(bad[stringOffsets(&r)["chain_id"]:], math.MaxUint32)
	allocs := testing.AllocsPerRun(100, func() { _, _ = Decode(bad) })
	if allocs > 10 {
		t.Errorf("Decode of a hostile length prefix makes %.0f allocations", allocs)
	}
	const runs = 100
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range runs {
		_, _ = Decode(bad)
	}
	runtime.ReadMemStats(&after)
	if perRun := (after.TotalAlloc - before.TotalAlloc) / runs; perRun > 4096 {
		t.Errorf("Decode of a hostile length prefix allocates %d bytes per call", perRun)
	}
}

// TestDecodeCanonical: whatever Decode accepts re-encodes to the same bytes,
// including receipts built by flipping bytes of a valid encoding.
func TestDecodeCanonical(t *testing.T) {
	r := validReceipt(t)
	b := r.Bytes()
	accepted := 0
	for i := range b {
		for _, x := range []byte{1, 0x80, 0xff} {
			c := bytes.Clone(b)
			c[i] ^= x
			r, err := Decode(c)
			if err != nil {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("byte %d ^ %#x: error %v does not wrap ErrMalformed", i, x, err)
				}
				continue
			}
			accepted++
			if !bytes.Equal(r.Bytes(), c) {
				t.Fatalf("byte %d ^ %#x: Decode accepted non-canonical bytes", i, x)
			}
		}
	}
	if accepted == 0 {
		t.Fatal("no mutated encoding was accepted: the test exercises nothing")
	}
}

func TestHashText(t *testing.T) {
	h := Sum([]byte("abc"))
	const want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if h.String() != want {
		t.Fatalf("Sum(abc) = %s", h)
	}
	text, _ := h.MarshalText()
	var back Hash
	if err := back.UnmarshalText(text); err != nil || back != h {
		t.Fatalf("UnmarshalText(%s) = %s, %v", text, back, err)
	}
	for _, bad := range []string{"", want[:63], want + "0", strings.Repeat("g", 64)} {
		if err := back.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("hash %q accepted", bad)
		}
	}
}
