package money

import (
	"errors"
	"math"
	"testing"
)

func TestArithmetic(t *testing.T) {
	if _, err := Amount(math.MaxUint64).Add(1); !errors.Is(err, ErrOverflow) {
		t.Fatalf("overflow not detected: %v", err)
	}
	if s, err := Amount(2).Add(3); err != nil || s != 5 {
		t.Fatalf("2+3 = %v, %v", s, err)
	}
	if _, err := Amount(2).Sub(3); !errors.Is(err, ErrInsufficient) {
		t.Fatalf("negative result not detected: %v", err)
	}
	tests := []struct {
		tokens uint64
		price  Amount
		want   Amount
		err    bool
	}{
		{0, 1_000_000, 0, false},
		{1, 1_000_000, 1, false},
		{999_999, 1, 0, false},
		{1_000_000, 1, 1, false},
		{3, 600_000, 1, false},
		{math.MaxUint64, Amount(math.MaxUint64), 0, true},
		{math.MaxUint64, 1_000_000, Amount(math.MaxUint64), false},
	}
	for _, tt := range tests {
		got, err := Cost(tt.tokens, tt.price)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("Cost(%d, %d) = %d, %v; want %d, err=%v", tt.tokens, tt.price, got, err, tt.want, tt.err)
		}
	}
	if _, err := Amount(1).MulDiv(1, 0); err == nil {
		t.Fatal("division by zero accepted")
	}
}

func TestParseString(t *testing.T) {
	good := map[string]Amount{"1": Unit, "0.25": 250_000, "12.000001": 12_000_001, ".5": 500_000, "0": 0}
	for s, want := range good {
		got, err := Parse(s)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %d, %v; want %d", s, got, err, want)
		}
		back, err := Parse(got.String())
		if err != nil || back != got {
			t.Errorf("String/Parse round trip of %d: %q → %d, %v", got, got.String(), back, err)
		}
	}
	for _, s := range []string{"", ".", "1.", "-1", "1e6", "0.1234567", "abc", "99999999999999999999", "18446744073709.551616"} {
		if _, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) accepted", s)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"1", "0.25", "1.", "x", "18446744073709.551615"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := Parse(s)
		if err != nil {
			return
		}
		back, err := Parse(a.String())
		if err != nil || back != a {
			t.Fatalf("round trip of %q: %d → %q → %d, %v", s, a, a.String(), back, err)
		}
	})
}
