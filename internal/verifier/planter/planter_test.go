package planter

import (
	"testing"

	"github.com/idlegrid/idlegrid/internal/protocol"
)

// TestPlantedIDPrefix: chat plants carry both chat id prefixes, so that no
// prefix marks a sample as real (a verifier could skip those), and
// generate plants the completions one. 200 draws miss one of two prefixes
// with probability 2^-199.
func TestPlantedIDPrefix(t *testing.T) {
	seen := map[string]int{}
	for range 200 {
		seen[plantedIDPrefix(protocol.KindChat)]++
	}
	if len(seen) != 2 || seen["resp_"] == 0 || seen["chatcmpl-"] == 0 {
		t.Errorf("chat plants' prefixes %v, want resp_ and chatcmpl-", seen)
	}
	if p := plantedIDPrefix(protocol.KindGenerate); p != "cmpl-" {
		t.Errorf("generate plant prefix %q", p)
	}
}
