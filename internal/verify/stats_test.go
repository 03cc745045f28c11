package verify

import (
	"math"
	"testing"
)

// Reference values computed independently (direct sums in Python).
func TestPoissonTail(t *testing.T) {
	for _, tt := range []struct {
		lambda float64
		k      int
		want   float64
	}{
		{1, 1, 1 - math.Exp(-1)},
		{4, 15, 1.9931727482935813e-05},
		{4, 17, 1.1328315293601676e-06},
		{4, 18, 2.4817760213569073e-07},
		{0, 1, 0},
		{3, 0, 1},
		{math.NaN(), 2, 0},
	} {
		if got := poissonTail(tt.lambda, tt.k); math.Abs(got-tt.want) > 1e-9*max(tt.want, 1e-12) && math.Abs(got-tt.want) > 1e-15 {
			t.Errorf("poissonTail(%v, %d) = %v, want %v", tt.lambda, tt.k, got, tt.want)
		}
	}
	if got := poissonThreshold(0, 1e-6, 3); got != 3 {
		t.Errorf("threshold at rate 0 = %d, want the minimum 3", got)
	}
	if a, b := poissonThreshold(2, 1e-6, 1), poissonThreshold(20, 1e-6, 1); a >= b {
		t.Errorf("thresholds %d (λ=2) and %d (λ=20) do not grow with the rate", a, b)
	}
}

func TestBinomialTail(t *testing.T) {
	for _, tt := range []struct {
		n    int
		p    float64
		k    int
		want float64
	}{
		{25, 0.1, 3, 0.462905949949059},
		{200, 0, 3, 0},
		{200, 1, 3, 1},
		{2, 0.5, 3, 0},
		{10, 0.3, 0, 1},
	} {
		if got := binomialTail(tt.n, tt.p, tt.k); math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("binomialTail(%d, %v, %d) = %v, want %v", tt.n, tt.p, tt.k, got, tt.want)
		}
	}
}
