// Package money is idlegrid's integer money type. One token is 1,000,000 base
// units; prices are base units per million model tokens. There are no floats
// anywhere money is computed, and every operation that could overflow says so.
package money

import (
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
)

// Amount is a non-negative number of base units (10⁻⁶ token).
type Amount uint64

// Unit is the number of base units in one token.
const Unit Amount = 1_000_000

// ErrOverflow is returned by any operation whose result does not fit.
var ErrOverflow = errors.New("amount overflow")

// ErrInsufficient is returned by Sub when the result would be negative.
var ErrInsufficient = errors.New("insufficient amount")

// Add returns a+b or ErrOverflow.
func (a Amount) Add(b Amount) (Amount, error) {
	s, carry := bits.Add64(uint64(a), uint64(b), 0)
	if carry != 0 {
		return 0, ErrOverflow
	}
	return Amount(s), nil
}

// Sub returns a-b or ErrInsufficient.
func (a Amount) Sub(b Amount) (Amount, error) {
	if b > a {
		return 0, ErrInsufficient
	}
	return a - b, nil
}

// MulDiv returns a*n/d rounded down, computed in 128 bits; ErrOverflow when
// the quotient does not fit or d is zero.
func (a Amount) MulDiv(n, d uint64) (Amount, error) {
	if d == 0 {
		return 0, fmt.Errorf("%w: division by zero", ErrOverflow)
	}
	hi, lo := bits.Mul64(uint64(a), n)
	if hi >= d {
		return 0, ErrOverflow
	}
	q, _ := bits.Div64(hi, lo, d)
	return Amount(q), nil
}

// Cost is the price of tokens at pricePerMTok base units per million tokens,
// rounded down to a base unit.
func Cost(tokens uint64, pricePerMTok Amount) (Amount, error) {
	return pricePerMTok.MulDiv(tokens, 1_000_000)
}

// String formats a as tokens with six decimals, e.g. "1.250000".
func (a Amount) String() string {
	return fmt.Sprintf("%d.%06d", uint64(a/Unit), uint64(a%Unit))
}

// Parse reads a token amount written as digits with at most six decimals
// ("1", "0.25", "12.000001"). It never goes through a float.
func Parse(s string) (Amount, error) {
	whole, frac, hasDot := strings.Cut(strings.TrimSpace(s), ".")
	if whole == "" && frac == "" || hasDot && frac == "" || len(frac) > 6 {
		return 0, fmt.Errorf("amount %q: want digits with at most 6 decimals", s)
	}
	for _, part := range []string{whole, frac} {
		for _, c := range part {
			if c < '0' || c > '9' {
				return 0, fmt.Errorf("amount %q: want digits with at most 6 decimals", s)
			}
		}
	}
	var w uint64
	if whole != "" {
		var err error
		if w, err = strconv.ParseUint(whole, 10, 64); err != nil {
			return 0, fmt.Errorf("amount %q: %w", s, ErrOverflow)
		}
	}
	f := uint64(0)
	if frac != "" {
		f, _ = strconv.ParseUint(frac+strings.Repeat("0", 6-len(frac)), 10, 64)
	}
	hi, lo := bits.Mul64(w, uint64(Unit))
	if hi != 0 {
		return 0, fmt.Errorf("amount %q: %w", s, ErrOverflow)
	}
	return Amount(lo).Add(Amount(f))
}
