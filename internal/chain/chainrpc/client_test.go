package chainrpc

import (
	"testing"

	"github.com/cometbft/cometbft/rpc/core"
)

// TestCatchingUpText: the client recognises a node that is catching up by
// the text of CometBFT's error, which it copies so as not to link rpc/core.
func TestCatchingUpText(t *testing.T) {
	if got := core.ErrEndpointClosedCatchingUp.Error(); got != catchingUp {
		t.Fatalf("rpc/core says %q while catching up; the client looks for %q", got, catchingUp)
	}
}
