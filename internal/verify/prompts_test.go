package verify

import (
	"reflect"
	"testing"

	"github.com/idlegrid/idlegrid/internal/protocol"
)

func TestPromptMix(t *testing.T) {
	ref := newRef(t)
	mix := DefaultPromptMix(benchModel)
	const n = 2000
	kinds := map[protocol.Kind]int{}
	sampled, stops, multiTurn, systems := 0, 0, 0, 0
	shortest, longest := 1<<30, 0
	distinct := map[string]bool{}
	for i := range n {
		req := mix.Traffic(i)
		if again := mix.Traffic(i); !reflect.DeepEqual(req, again) {
			t.Fatalf("request %d differs between calls", i)
		}
		c := mix.Canary(i)
		if c.Options.Temperature == nil || *c.Options.Temperature != 0 || len(c.Options.Stop) > 0 || c.Options.MaxTokens <= 0 {
			t.Fatalf("canary %d is not greedy with a limit and without stop strings: %+v", i, c.Options)
		}
		kinds[req.Kind]++
		if req.Options.Temperature != nil {
			sampled++
		}
		if len(req.Options.Stop) > 0 {
			stops++
		}
		users := 0
		for _, m := range req.Messages {
			switch m.Role {
			case "user":
				users++
			case "system":
				systems++
			}
		}
		if users > 1 {
			multiTurn++
		}
		if req.System != "" {
			systems++
		}
		distinct[promptKey(req)] = true
		sc, err := ref.Score(req, "")
		if err != nil {
			t.Fatal(err)
		}
		shortest, longest = min(shortest, sc.PromptTokens), max(longest, sc.PromptTokens)
	}
	t.Logf("%d requests: %v, %d sampled, %d with stop strings, %d multi-turn, %d with a system prompt, %d distinct, prompts of %d to %d tokens",
		n, kinds, sampled, stops, multiTurn, systems, len(distinct), shortest, longest)
	share := func(k int) float64 { return float64(k) / n }
	switch {
	case share(kinds[protocol.KindChat]) < 0.5 || share(kinds[protocol.KindGenerate]) < 0.3:
		t.Errorf("kinds %v: want both chat and completion prompts", kinds)
	case share(sampled) < 0.25 || share(sampled) > 0.35:
		t.Errorf("%d sampled, want about 30%%", sampled)
	case share(stops) < 0.07 || share(stops) > 0.13:
		t.Errorf("%d with stop strings, want about 10%%", stops)
	case multiTurn == 0 || systems == 0:
		t.Error("no multi-turn chat or no system prompt")
	case len(distinct) < n*9/10:
		t.Errorf("only %d distinct prompts in %d", len(distinct), n)
	case shortest > 20 || longest < 300:
		t.Errorf("prompts of %d to %d tokens: want short and long ones", shortest, longest)
	}
	if other := (PromptMix{Model: benchModel, Seed: 2}).Traffic(0); reflect.DeepEqual(other, mix.Traffic(0)) {
		t.Error("another seed gives the same request")
	}
}
