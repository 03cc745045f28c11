package bench

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/gateway"
)

// TestOverheadRuns runs the harness at a tiny size: it checks that every
// figure is produced from real traffic, not how fast anything is. Streams
// last 200 ms each, so that even on a loaded machine all eight run at once
// for a while (the steady-state relay figure needs that).
func TestOverheadRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a network; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out strings.Builder
	res, err := Overhead(ctx, OverheadConfig{Requests: 40, Concurrency: []int{1, 4}, Streams: 8, StreamTokens: 40, StreamRate: 200,
		RPSDuration: 300 * time.Millisecond, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.NonStreaming) != 2 || len(res.NonStreaming[1].Via.Dist) != 40 || len(res.NonStreaming[1].Proxy.Dist) != 40 || res.NonStreaming[1].Via.RPS <= 0 || len(res.Relay.All) != 320 ||
		len(res.Relay.Steady) == 0 || len(res.RelayBare.All) != 320 || res.RPSVia <= 0 || res.RPSDirect <= 0 {
		t.Fatalf("incomplete result: %+v", res)
	}
	// The gateway reported the stages of every measured request through
	// the network, and they add up to its total.
	for _, l := range res.NonStreaming {
		st := l.Stages
		if st.Requests != 40 {
			t.Fatalf("c=%d: stages of %d requests, want 40", l.Concurrency, st.Requests)
		}
		for _, m := range []gateway.Stages{st.Slowest, st.Middle} {
			if sum := m.Wait + m.Link + m.Agent + m.Receipt + m.Write; m.Total <= 0 || sum-m.Total > 5 || m.Total-sum > 5 {
				t.Errorf("c=%d: stages %+v add up to %s", l.Concurrency, m, sum)
			}
		}
	}
	for _, d := range append(res.Relay.All, res.RelayBare.All...) {
		if d <= 0 {
			t.Fatalf("token arrived before it was emitted: %s", d)
		}
	}
	// The one-client target and the saturation verdict apply to this
	// configuration; without a peer its targets are not measured.
	if targets := res.Targets(OverheadConfig{Streams: 8, StreamRate: 200}); len(targets) != 2 || !strings.Contains(targets[0], "one client") ||
		!strings.Contains(targets[1], "of 2 saturation targets met") || !strings.Contains(targets[1], "no Portkey run") {
		t.Errorf("targets = %q", targets)
	}
	t.Log(out.String())
	t.Log(res.Summary())
}
