package verify

import (
	"slices"

	"github.com/idlegrid/idlegrid/internal/ledger"
)

// Convictions replays one provider's case verdicts through the ledger's
// conviction rule (ledger.Params ConvictFailures and ConvictWindowBlocks,
// as countCase applies them): fails[i] is the i-th case's verdict (true:
// failed) and the case counts at height (i+1) × blocksPerCase. It returns
// the 1-based indexes of the cases at which the provider is convicted; as
// the ledger does, a conviction clears the provider's recent failures
// (its jail time is not modelled: audits continue).
//
// The fewer blocks per case, the more cases share one window: one block
// per case is the worst case for an honest provider.
func Convictions(p ledger.Params, fails []bool, blocksPerCase uint64) []int {
	blocksPerCase = max(blocksPerCase, 1)
	var recent []uint64
	var out []int
	for i, f := range fails {
		h := uint64(i+1) * blocksPerCase
		if f {
			recent = append(recent, h)
		}
		cutoff := uint64(0)
		if h > p.ConvictWindowBlocks {
			cutoff = h - p.ConvictWindowBlocks
		}
		recent = slices.DeleteFunc(recent, func(x uint64) bool { return x <= cutoff })
		if p.ConvictFailures > 0 && len(recent) >= int(p.ConvictFailures) {
			out = append(out, i+1)
			recent = nil
		}
	}
	return out
}
