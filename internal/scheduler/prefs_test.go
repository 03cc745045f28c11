package scheduler

import (
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/idlegrid/idlegrid/internal/money"
)

func TestParseProviderRef(t *testing.T) {
	k := key(0xab)
	full := k.String()
	addr := string(k.Address())
	tests := []struct {
		in      string
		ok      bool
		matches bool // whether the parsed ref names k
	}{
		{full, true, true},
		{strings.ToUpper(full), true, true},
		{" " + full + " ", true, true},
		{full[:8], true, true},
		{full[:20], true, true},
		{"00000000", true, false},
		{addr, true, true},
		{strings.ToUpper(addr), true, true},
		{string(key(0xac).Address()), true, false},
		{full[:7], false, false},     // too short a prefix
		{full + "00", false, false},  // too long
		{"zzzzzzzzzz", false, false}, // not hex
		{"idg1234", false, false},    // short address
		{"", false, false},           // empty
		{"openai", false, false},     // a name, which providers do not have
		{addr[:len(addr)-1] + "g", false, false},
	}
	for _, tt := range tests {
		r, err := ParseProviderRef(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("ParseProviderRef(%q) error %v, want ok %v", tt.in, err, tt.ok)
			continue
		}
		if err == nil && r.Matches(k) != tt.matches {
			t.Errorf("ParseProviderRef(%q).Matches = %v, want %v", tt.in, !tt.matches, tt.matches)
		}
	}
	if (ProviderRef{}).Matches(k) {
		t.Error("the zero ProviderRef matches a key")
	}
}

func TestParseDigest(t *testing.T) {
	d := strings.Repeat("0123456789abcdef", 4)
	tests := []struct {
		in, want string
	}{
		{d, d},
		{"sha256:" + d, d},
		{"SHA256:" + strings.ToUpper(d), d},
		{d[:12], d[:12]},
		{d[:11], ""},
		{d + "0", ""},
		{"sha256:", ""},
		{"not-a-digest", ""},
	}
	for _, tt := range tests {
		got, err := ParseDigest(tt.in)
		if tt.want == "" {
			if err == nil {
				t.Errorf("ParseDigest(%q) = %q, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseDigest(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	if !digestMatches(d[:12], "sha256:"+strings.ToUpper(d)) || digestMatches(d[1:13], d) {
		t.Error("digestMatches compares prefixes wrongly")
	}
}

func TestParseSort(t *testing.T) {
	for _, s := range []string{"", "price", "throughput", "latency"} {
		if got, err := ParseSort(s); err != nil || string(got) != s {
			t.Errorf("ParseSort(%q) = %q, %v", s, got, err)
		}
	}
	for _, s := range []string{"Price", "speed", "cost"} {
		if _, err := ParseSort(s); err == nil {
			t.Errorf("ParseSort(%q) accepted", s)
		}
	}
}

func TestConsumerPrice(t *testing.T) {
	tests := []struct {
		floor money.Amount
		fee   uint32
		want  money.Amount
	}{
		{200_000, 0, 200_000},
		{0, 600, 0},
		{940_000, 600, 1_000_000},   // 6%: 0.94 / 0.94
		{200_000, 600, 212_766},     // 212765.95… rounded up
		{1, 5_000, 2},               // half the price is the fee
		{3, 5_000, 6},               // exact
		{1, 9_999, 10_000},          // the largest fee
		{1, 10_000, math.MaxUint64}, // no consumer price covers a 100% fee
		{math.MaxUint64, 1, math.MaxUint64},
		{math.MaxUint64 / 2, 5_000, math.MaxUint64 - 1},
	}
	for _, tt := range tests {
		got := ConsumerPrice(tt.floor, tt.fee)
		if got != tt.want {
			t.Errorf("ConsumerPrice(%d, %d) = %d, want %d", tt.floor, tt.fee, got, tt.want)
		}
		// The provider keeps at least its floor after the fee.
		if got != math.MaxUint64 && tt.fee < 10_000 {
			fee, _ := got.MulDiv(uint64(tt.fee), 10_000)
			if got-fee < tt.floor {
				t.Errorf("ConsumerPrice(%d, %d) = %d leaves the provider %d", tt.floor, tt.fee, got, got-fee)
			}
		}
	}
}

func TestMedianAndFormat(t *testing.T) {
	if m := Median(nil); m != 0 {
		t.Errorf("Median(nil) = %d", m)
	}
	if m := Median([]money.Amount{5, 1, 3}); m != 3 {
		t.Errorf("odd median %d", m)
	}
	if m := Median([]money.Amount{4, 1, 3, 10}); m != 3 {
		t.Errorf("even median %d, want 3 (mean of 3 and 4, rounded down)", m)
	}
	if m := Median([]money.Amount{math.MaxUint64, math.MaxUint64 - 2}); m != math.MaxUint64-1 {
		t.Errorf("median overflowed: %d", m)
	}
	in := []money.Amount{3, 1, 2}
	Median(in)
	if in[0] != 3 {
		t.Error("Median sorted its argument")
	}
	for a, want := range map[money.Amount]string{0: "0.00", 200_000: "0.20", 350_000: "0.35", 1_000_000: "1.00", 1_125_000: "1.125", 1: "0.000001", 12_300_000: "12.30"} {
		if got := FormatPrice(a); got != want {
			t.Errorf("FormatPrice(%d) = %q, want %q", a, got, want)
		}
	}
}

// TestPreferencesIsZero: the zero value asks for nothing, and setting any
// one field (every field, found by reflection, so a new one cannot be
// forgotten) makes it ask for something.
func TestPreferencesIsZero(t *testing.T) {
	if !(Preferences{}).IsZero() {
		t.Fatal("the zero value is not zero")
	}
	typ := reflect.TypeFor[Preferences]()
	for i := range typ.NumField() {
		var p Preferences
		f := reflect.ValueOf(&p).Elem().Field(i)
		switch f.Kind() {
		case reflect.Slice:
			f.Set(reflect.MakeSlice(f.Type(), 1, 1))
		case reflect.Pointer:
			f.Set(reflect.New(f.Type().Elem()))
		case reflect.Bool:
			f.SetBool(true)
		case reflect.String:
			f.SetString("x")
		default:
			t.Fatalf("field %s: kind %s not covered by this test", typ.Field(i).Name, f.Kind())
		}
		if p.IsZero() {
			t.Errorf("with %s set, IsZero says nothing is asked", typ.Field(i).Name)
		}
	}
}
