package bench

import (
	"crypto/sha256"
	"slices"
	"strings"
	"testing"

	"github.com/idlegrid/idlegrid/internal/receipt"
)

// TestMarkRun: the chaos benchmark's billing check places each segment's
// receipt on the answer's tokens after the previous segment, so an answer
// that repeats a token is not miscounted, while a receipt that really bills
// tokens of an earlier segment again still counts them twice.
func TestMarkRun(t *testing.T) {
	toks := []string{"a", "b", "a"}
	seg := func(from, to int) receipt.Receipt {
		return receipt.Receipt{CompletionTokens: uint64(to - from), ResponseHash: sha256.Sum256([]byte(strings.Join(toks[from:to], "")))}
	}
	tests := []struct {
		name    string
		rs      []receipt.Receipt
		covered []int
		found   []bool
	}{
		{"whole answer", []receipt.Receipt{seg(0, 3)}, []int{1, 1, 1}, []bool{true}},
		{"checkpoint then a one-token continuation of a repeated token", []receipt.Receipt{seg(0, 2), seg(2, 3)}, []int{1, 1, 1}, []bool{true, true}},
		{"continuation billing the first token again", []receipt.Receipt{seg(0, 2), seg(0, 1), seg(2, 3)}, []int{2, 1, 1}, []bool{true, true, true}},
		{"overlapping continuation", []receipt.Receipt{seg(0, 2), seg(1, 3)}, []int{1, 2, 1}, []bool{true, true}},
		{"a receipt matching no run", []receipt.Receipt{seg(0, 2), {CompletionTokens: 1}}, []int{1, 1, 0}, []bool{true, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			covered := make([]int, len(toks))
			var found []bool
			next := 0
			for _, r := range tt.rs {
				end, ok := markRun(toks, covered, r, next)
				found = append(found, ok)
				next = end
			}
			if !slices.Equal(covered, tt.covered) || !slices.Equal(found, tt.found) {
				t.Errorf("covered %v found %v, want %v %v", covered, found, tt.covered, tt.found)
			}
		})
	}
}
