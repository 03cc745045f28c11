package econ

import (
	"fmt"
	"math"
	"math/big"
	"math/bits"

	"github.com/idlegrid/idlegrid/internal/money"
)

// Net is a signed amount of base units: a profit or a loss. Every amount
// the simulation handles stays below maxAmount (2⁶⁰), so sums of a few of
// them fit.
type Net int64

// net is a as a Net; config validation keeps amounts below maxAmount.
func net(a money.Amount) Net { return Net(min(a, maxAmount)) }

// String formats n as tokens with six decimals, e.g. "-1.250000".
func (n Net) String() string {
	if n < 0 {
		return "-" + money.Amount(-n).String()
	}
	return money.Amount(n).String()
}

// Short formats n as tokens with two decimals, rounded toward zero: for
// tables, where six decimals of a base unit are noise.
func (n Net) Short() string {
	sign := ""
	if n < 0 {
		sign, n = "-", -n
	}
	return fmt.Sprintf("%s%d.%02d", sign, n/Net(money.Unit), n%Net(money.Unit)/10_000)
}

// MicroUSD is n in µUSD at tokensPerUSD.
func (n Net) MicroUSD(tokensPerUSD uint64) int64 {
	if tokensPerUSD == 0 {
		return 0
	}
	return int64(n) / int64(min(tokensPerUSD, math.MaxInt64))
}

// USDPerHour is n earned every epoch of epochMillis, in µUSD per hour at
// tokensPerUSD.
func (n Net) USDPerHour(tokensPerUSD, epochMillis uint64) int64 {
	if tokensPerUSD == 0 || epochMillis == 0 {
		return 0
	}
	q := new(big.Int).Mul(big.NewInt(int64(n)), big.NewInt(3_600_000))
	q.Quo(q, new(big.Int).SetUint64(tokensPerUSD*min(epochMillis, math.MaxUint64/tokensPerUSD)))
	return clampBig(q)
}

// dollars formats µUSD as dollars with four decimals.
func dollars(micro int64) string {
	sign := ""
	if micro < 0 {
		sign, micro = "-", -micro
	}
	return fmt.Sprintf("%s$%d.%04d", sign, micro/1_000_000, micro%1_000_000/100)
}

// mulFull is the 128-bit product of a and b.
func mulFull(a, b uint64) (hi, lo uint64) { return bits.Mul64(a, b) }

// mulDiv is a×b/c rounded down, saturating at the largest uint64; zero
// when c is zero.
func mulDiv(a, b, c uint64) uint64 {
	if c == 0 {
		return 0
	}
	hi, lo := bits.Mul64(a, b)
	if hi >= c {
		return math.MaxUint64
	}
	q, _ := bits.Div64(hi, lo, c)
	return q
}

// satAdd adds, saturating at the largest uint64 (as the ledger adds work).
func satAdd(a, b uint64) uint64 {
	s, carry := bits.Add64(a, b, 0)
	if carry != 0 {
		return math.MaxUint64
	}
	return s
}

// mulDivAmount is a×b/c for money, saturating at maxAmount.
func mulDivAmount(a money.Amount, b, c uint64) money.Amount {
	return money.Amount(min(mulDiv(uint64(a), b, c), uint64(maxAmount)))
}

// cost is tokens at pricePerMTok, saturating at maxAmount.
func cost(tokens uint64, pricePerMTok money.Amount) money.Amount {
	c, err := money.Cost(tokens, pricePerMTok)
	if err != nil || c > maxAmount {
		return maxAmount
	}
	return c
}

// addAmount adds money, saturating at maxAmount: the totals of a run stay
// far below it, and a saturated total is still a deterministic result.
func addAmount(a, b money.Amount) money.Amount {
	s, err := a.Add(b)
	if err != nil || s > maxAmount {
		return maxAmount
	}
	return s
}

// perEpoch is sum/n as a Net, zero for no epochs.
func perEpoch(sum Net, n uint64) Net {
	if n == 0 {
		return 0
	}
	return sum / Net(min(n, uint64(math.MaxInt64)))
}

// clampBig is q as an int64, clamped.
func clampBig(q *big.Int) int64 {
	switch {
	case q.IsInt64():
		return q.Int64()
	case q.Sign() < 0:
		return math.MinInt64
	}
	return math.MaxInt64
}

// bps formats basis points as a percentage with two decimals.
func bps(b uint64) string { return fmt.Sprintf("%d.%02d%%", b/100, b%100) }

// share is part/whole in basis points, zero when whole is zero.
func share(part, whole uint64) uint64 { return mulDiv(part, 10_000, whole) }
