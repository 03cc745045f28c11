package verify

import (
	"slices"
	"testing"

	"github.com/idlegrid/idlegrid/internal/ledger"
)

func TestConvictions(t *testing.T) {
	p := ledger.DefaultParams() // 3 failures within 10,000 blocks
	f := func(idx ...int) []bool {
		out := make([]bool, 30_000)
		for _, i := range idx {
			out[i] = true
		}
		return out
	}
	for _, tt := range []struct {
		name   string
		fails  []bool
		blocks uint64
		want   []int
	}{
		{"none", f(), 1, nil},
		{"two failures", f(3, 9), 1, nil},
		{"three in the window", f(3, 9, 5000), 1, []int{5001}},
		{"three across the window", f(3, 9, 10_003), 1, nil},
		{"the window slides", f(3, 9, 10_003, 10_008), 1, []int{10_009}},
		{"conviction clears the record", f(1, 2, 3, 4, 5), 1, []int{4}},
		{"dense audits share the window", f(3, 9, 5003), 1, []int{5004}},
		{"sparser audits leave the window", f(3, 9, 5003), 2, nil},
		{"zero blocks per case is one", f(0, 1, 2), 0, []int{3}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := Convictions(p, tt.fails, tt.blocks); !slices.Equal(got, tt.want) {
				t.Fatalf("convicted at %v, want %v", got, tt.want)
			}
		})
	}
	p.ConvictFailures = 0
	if got := Convictions(p, f(1, 2, 3), 1); got != nil {
		t.Fatalf("ConvictFailures 0 convicted at %v", got)
	}
}
