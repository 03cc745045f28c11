package receipt

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

// FuzzDecode: Decode never panics, fails only with ErrMalformed, and accepts
// only canonical bytes of valid receipts.
func FuzzDecode(f *testing.F) {
	r := validReceipt(f)
	b := r.Bytes()
	f.Add(b)
	f.Add(b[:len(b)-1])
	f.Add(append(bytes.Clone(b), 0))
	f.Add([]byte{})
	f.Add([]byte{Version, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("Decode returned an invalid receipt: %v", err)
		}
		if again := r.Bytes(); !bytes.Equal(again, b) {
			t.Fatalf("Decode accepted non-canonical bytes:\n  in %x\nout %x", b, again)
		}
		if r.Hash() != Sum(b) {
			t.Fatal("Hash differs from the sha256 of the accepted bytes")
		}
	})
}

// FuzzParseSigned: ParseSigned never panics, fails only with ErrMalformed,
// and returns only receipts that Validate and survive a JSON round trip.
func FuzzParseSigned(f *testing.F) {
	good := signedJSON(f)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"receipt":{"version":1,"amount":-1}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSigned(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if err := s.Receipt.Validate(); err != nil {
			t.Fatalf("ParseSigned returned an invalid receipt: %v", err)
		}
		// Verify must not panic whatever the signatures are.
		_ = s.Verify()
		out, err := json.Marshal(&s)
		if err != nil {
			t.Fatalf("marshal parsed receipt: %v", err)
		}
		back, err := ParseSigned(out)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", out, err)
		}
		if back != s {
			t.Fatalf("JSON round trip changed the receipt:\n got %+v\nwant %+v", back, s)
		}
		// The canonical bytes of a parsed receipt decode back to it.
		if dec, err := Decode(s.Receipt.Bytes()); err != nil || dec != s.Receipt {
			t.Fatalf("Decode(Bytes) of a parsed receipt: %v", err)
		}
	})
}
