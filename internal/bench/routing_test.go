package bench

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/scheduler"
)

// TestRoutingRuns runs the routing harness at a tiny size: it checks that
// every policy serves real traffic and that the caches see it, not how
// fast anything is.
func TestRoutingRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts networks; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out strings.Builder
	cfg := DefaultRouting()
	cfg.Speeds, cfg.Slots = []float64{1, 0.5}, 4
	cfg.TokenRate, cfg.PromptRate, cfg.FirstToken = 0, 0, 0 // instant: only the counts matter here
	cfg.Conversations, cfg.ContextTokens, cfg.Clients, cfg.PromptTokens = 2, 200, 2, 50
	cfg.ChatDuration, cfg.NoReuseDuration, cfg.Think = 400*time.Millisecond, 200*time.Millisecond, time.Millisecond
	cfg.Out = &out
	res, err := Routing(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Chat) != 3 || len(res.NoReuse) != 3 {
		t.Fatalf("results %+v", res)
	}
	for i, p := range []scheduler.Policy{scheduler.PolicyMarket, scheduler.PolicyRoundRobin, scheduler.PolicyLeastLoaded} {
		for _, r := range []PolicyResult{res.Chat[i], res.NoReuse[i]} {
			if r.Policy != p || r.Requests == 0 || r.Throughput <= 0 || len(r.Latency) != r.Requests {
				t.Fatalf("%s: %+v", p, r)
			}
		}
		if res.NoReuse[i].CacheHitRate != 0 {
			t.Errorf("%s: unique prompts hit the cache: %.2f", p, res.NoReuse[i].CacheHitRate)
		}
	}
	// Two conversations on two providers stay within the load bound, so
	// every follow-up turn finds its conversation cached.
	if hit := res.Chat[0].CacheHitRate; hit < 0.5 {
		t.Errorf("market policy cache-hit rate %.2f on the chat workload", hit)
	}
	if s := res.Summary(); !strings.Contains(s, "routing: shared-prefix chat") {
		t.Errorf("summary %q", s)
	}
	t.Log(out.String())
	t.Log(res.Summary())
}

func TestRoutingConfigChecked(t *testing.T) {
	for _, mutate := range []func(*RoutingConfig){
		func(c *RoutingConfig) { c.Speeds = []float64{1} },
		func(c *RoutingConfig) { c.Speeds = []float64{1, 0} },
		func(c *RoutingConfig) { c.Slots = 0 },
		func(c *RoutingConfig) { c.ChatDuration = 0 },
		func(c *RoutingConfig) { c.Think = -time.Second },
	} {
		cfg := DefaultRouting()
		mutate(&cfg)
		if _, err := Routing(context.Background(), cfg); err == nil {
			t.Errorf("Routing accepted %+v", cfg)
		}
	}
}
