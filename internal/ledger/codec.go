package ledger

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
)

// ErrMalformed is wrapped by every error decoding transactions or state.
var ErrMalformed = errors.New("malformed")

// enc appends the canonical encoding: integers big-endian and fixed width,
// strings and byte slices with a 4-byte length prefix, no optional parts.
type enc struct{ b []byte }

func (e *enc) u8(v uint8)             { e.b = append(e.b, v) }
func (e *enc) u32(v uint32)           { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *enc) u64(v uint64)           { e.b = binary.BigEndian.AppendUint64(e.b, v) }
func (e *enc) amount(v money.Amount)  { e.u64(uint64(v)) }
func (e *enc) fixed(v []byte)         { e.b = append(e.b, v...) }
func (e *enc) str(s string)           { e.u32(uint32(len(s))); e.b = append(e.b, s...) }
func (e *enc) bytes(v []byte)         { e.u32(uint32(len(v))); e.b = append(e.b, v...) }
func (e *enc) key(k keys.PublicKey)   { e.fixed(k[:]) }
func (e *enc) address(a keys.Address) { e.str(string(a)) }

func (e *enc) boolean(v bool) {
	if v {
		e.u8(1)
	} else {
		e.u8(0)
	}
}

func (e *enc) entries(es []Entry) {
	e.u32(uint32(len(es)))
	for _, x := range es {
		e.amount(x.Amount)
		e.u64(x.Height)
	}
}

func (e *enc) vests(vs []Vest) {
	e.u32(uint32(len(vs)))
	for _, v := range vs {
		e.amount(v.Amount)
		e.amount(v.Released)
		e.u64(v.Start)
		e.u64(v.End)
	}
}

func (e *enc) addresses(as []keys.Address) {
	e.u32(uint32(len(as)))
	for _, a := range as {
		e.address(a)
	}
}

// dec reads what enc writes. The first error sticks; later reads return
// zero values, so decoders read every field and check err once.
type dec struct {
	b   []byte
	err error
}

func (d *dec) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
	}
}

func (d *dec) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || len(d.b) < n {
		d.fail("truncated")
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *dec) u8() uint8 {
	if v := d.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (d *dec) u32() uint32 {
	if v := d.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (d *dec) u64() uint64 {
	if v := d.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (d *dec) amount() money.Amount { return money.Amount(d.u64()) }

func (d *dec) fixed(dst []byte) { copy(dst, d.take(len(dst))) }

func (d *dec) key() keys.PublicKey {
	var k keys.PublicKey
	d.fixed(k[:])
	return k
}

// length reads a length prefix and checks it against max and against what is
// left, so a hostile prefix cannot make the decoder allocate.
func (d *dec) length(max int, what string) int {
	n := d.u32()
	if d.err != nil {
		return 0
	}
	if uint64(n) > uint64(max) {
		d.fail("%s of %d exceeds %d", what, n, max)
		return 0
	}
	if int(n) > len(d.b) {
		d.fail("truncated %s", what)
		return 0
	}
	return int(n)
}

func (d *dec) str(max int, what string) string {
	s := string(d.take(d.length(max, what)))
	if d.err == nil && !utf8.ValidString(s) {
		d.fail("%s is not UTF-8", what)
	}
	return s
}

func (d *dec) bytes(max int, what string) []byte { return d.take(d.length(max, what)) }

func (d *dec) boolean() bool {
	switch d.u8() {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail("boolean not 0 or 1")
	return false
}

func (d *dec) address() keys.Address {
	a := keys.Address(d.str(maxAddress, "address"))
	if d.err == nil {
		if err := a.Validate(); err != nil {
			d.fail("%v", err)
		}
	}
	return a
}

func (d *dec) entries() []Entry {
	n := d.length(len(d.b)/16, "entry list")
	var es []Entry
	for range n {
		es = append(es, Entry{Amount: d.amount(), Height: d.u64()})
	}
	return es
}

func (d *dec) vests() []Vest {
	n := d.length(len(d.b)/32, "vesting list")
	var vs []Vest
	for range n {
		v := Vest{Amount: d.amount(), Released: d.amount(), Start: d.u64(), End: d.u64()}
		if d.err == nil && (v.Released > v.Amount || v.End <= v.Start) {
			d.fail("vesting entry released %d of %d over heights %d to %d", v.Released, v.Amount, v.Start, v.End)
		}
		vs = append(vs, v)
	}
	return vs
}

func (d *dec) addresses() []keys.Address {
	n := d.length(len(d.b)/4, "address list")
	var as []keys.Address
	for range n {
		as = append(as, d.address())
	}
	return as
}

// end fails unless every byte was read.
func (d *dec) end() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	return d.err
}

// maxAddress bounds address strings in decoders (an address is 43 bytes).
const maxAddress = 64
