package verify

import (
	"strings"
	"testing"
)

// TestBenchSmall runs the benchmark at a small size: every variant in
// both modes, a table and a summary, cost shares that make sense.
func TestBenchSmall(t *testing.T) {
	cfg := DefaultBench()
	cfg.Trials, cfg.Horizon, cfg.HonestAudits = 1, 48, 48
	var out strings.Builder
	cfg.Out = &out
	res, err := Bench(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) != 20 {
		t.Fatalf("%d rows, want 10 variants × 2 modes", len(res.Rows))
	}
	for _, want := range []string{"quantized", "honest-seed", "rescore", "canary", "verifier compute"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if !(res.VerifyShare > 0 && res.VerifyShare < res.VerifyShareFlat && res.VerifyShareFlat < 0.1) {
		t.Errorf("verifier compute %.4f (flat %.4f): want positive, smaller with the prefill speedup, below 10%%", res.VerifyShare, res.VerifyShareFlat)
	}
	if s := res.Summary(); !strings.HasPrefix(s, "bench verify: ") {
		t.Errorf("summary %q", s)
	}
}

func TestBenchConfigCheck(t *testing.T) {
	for name, mod := range map[string]func(*BenchConfig){
		"no trials":         func(c *BenchConfig) { c.Trials = 0 },
		"no horizon":        func(c *BenchConfig) { c.Horizon = 0 },
		"shares above one":  func(c *BenchConfig) { c.RescoreShare, c.CanaryShare = 0.8, 0.5 },
		"no audits":         func(c *BenchConfig) { c.RescoreShare, c.CanaryShare = 0, 0 },
		"negative share":    func(c *BenchConfig) { c.CanaryShare = -1 },
		"slow prefill":      func(c *BenchConfig) { c.PrefillSpeedup = 0.5 },
		"no conviction":     func(c *BenchConfig) { c.Params.ConvictFailures = 0 },
		"zero canary batch": func(c *BenchConfig) { c.CanaryBatch = 0 },
	} {
		cfg := DefaultBench()
		mod(&cfg)
		if _, err := Bench(t.Context(), cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
