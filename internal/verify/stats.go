package verify

import "math"

// poissonTail is P(X ≥ k) for X ~ Poisson(lambda), summed upwards from k
// so that tiny tails keep their precision.
func poissonTail(lambda float64, k int) float64 {
	switch {
	case k <= 0:
		return 1
	case lambda <= 0 || math.IsNaN(lambda):
		return 0
	}
	var sum float64
	for i := k; i < k+10_000; i++ {
		lg, _ := math.Lgamma(float64(i) + 1)
		term := math.Exp(-lambda + float64(i)*math.Log(lambda) - lg)
		sum += term
		if float64(i) > lambda && term < sum*1e-16 {
			break
		}
	}
	return min(sum, 1)
}

// poissonThreshold is the smallest k ≥ minK with P(X ≥ k) ≤ alpha for X ~
// Poisson(lambda): the count an honest provider whose events occur at
// rate lambda reaches with probability at most alpha.
func poissonThreshold(lambda, alpha float64, minK int) int {
	k := max(minK, 1)
	for poissonTail(lambda, k) > alpha && k < 1<<20 {
		k++
	}
	return k
}

// binomialTail is P(X ≥ k) for X ~ Binomial(n, p).
func binomialTail(n int, p float64, k int) float64 {
	switch {
	case k <= 0:
		return 1
	case k > n || p <= 0:
		return 0
	case p >= 1:
		return 1
	}
	var sum float64
	for i := k; i <= n; i++ {
		lc := lchoose(n, i)
		sum += math.Exp(lc + float64(i)*math.Log(p) + float64(n-i)*math.Log1p(-p))
	}
	return min(sum, 1)
}

func lchoose(n, k int) float64 {
	a, _ := math.Lgamma(float64(n) + 1)
	b, _ := math.Lgamma(float64(k) + 1)
	c, _ := math.Lgamma(float64(n-k) + 1)
	return a - b - c
}
