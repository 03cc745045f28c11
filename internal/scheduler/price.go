package scheduler

import (
	"math"
	"math/bits"
	"slices"
	"strings"

	"github.com/idlegrid/idlegrid/internal/money"
)

// MaxFeeBps bounds the gateway's fee: below 100%, or no price would fit.
const MaxFeeBps = 9_999

// ConsumerPrice is what consumers pay per million tokens when a provider's
// floor is floor and the gateway's fee is feeBps basis points of the
// consumer price: floor / (1 − feeBps/10000), rounded up to a base unit, so
// that the provider keeps at least its floor once the fee is taken out.
// A price too large to represent is the largest Amount, which no price
// cap admits and no reservation can hold.
func ConsumerPrice(floor money.Amount, feeBps uint32) money.Amount {
	if feeBps == 0 {
		return floor
	}
	if feeBps > MaxFeeBps {
		return math.MaxUint64
	}
	d := uint64(10_000 - feeBps)
	hi, lo := bits.Mul64(uint64(floor), 10_000)
	if hi >= d {
		return math.MaxUint64
	}
	q, rem := bits.Div64(hi, lo, d)
	if rem != 0 {
		if q == math.MaxUint64 {
			return math.MaxUint64
		}
		q++
	}
	return money.Amount(q)
}

// Median is the middle of prices (the mean of the two middle ones, rounded
// down, for an even count); 0 for none.
func Median(prices []money.Amount) money.Amount {
	if len(prices) == 0 {
		return 0
	}
	s := slices.Clone(prices)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	a, b := s[n/2-1], s[n/2]
	return a + (b-a)/2
}

// FormatPrice writes a price in tokens with at least two and at most six
// decimals ("0.20", "0.35", "1.125"), for messages people read.
func FormatPrice(a money.Amount) string {
	s := a.String() // six decimals
	trimmed := strings.TrimRight(s, "0")
	if dot := strings.IndexByte(s, '.'); len(trimmed) < dot+3 {
		return s[:dot+3]
	}
	return trimmed
}
