package verify

import (
	"testing"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/backend/sim"
)

func testAuditor(t *testing.T, trials, honestAudits int) (*auditor, []variant) {
	t.Helper()
	cfg := DefaultBench()
	cfg.Trials, cfg.HonestAudits = trials, honestAudits
	ref := newRef(t)
	other, err := benchSim(2)
	if err != nil {
		t.Fatal(err)
	}
	words, err := harvestWords(t.Context(), ref, cfg.Mix, 64)
	if err != nil {
		t.Fatal(err)
	}
	return &auditor{cfg: cfg, ref: ref}, benchVariants(ref, other, words)
}

// TestCheatersConvicted: every cheater fails audits often enough to be
// convicted by the ledger's default rule within 200 audited requests, in
// every stream, in both modes.
func TestCheatersConvicted(t *testing.T) {
	a, variants := testAuditor(t, 3, 0)
	cheaters := 0
	for vi, v := range variants {
		if v.honest {
			continue
		}
		cheaters++
		for _, mode := range []Mode{ModeRescore, ModeCanary} {
			row, err := a.run(t.Context(), vi, v, mode)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s/%s: %d of %d cases failed (%v), convicted in %d of %d streams after %v audited requests, binomial %.4f",
				v.name, mode, row.Failed, row.Cases, row.Rules, row.Convicted, row.Trials, row.ToConviction, row.Binomial)
			if row.Convicted != row.Trials || row.Binomial < 0.99 {
				t.Errorf("%s/%s: convicted in %d of %d streams, binomial estimate %.4f: want all and ≥ 0.99",
					v.name, mode, row.Convicted, row.Trials, row.Binomial)
			}
		}
	}
	if cheaters != 6 {
		t.Fatalf("%d cheater variants, want the 6 of the issue", cheaters)
	}
}

// TestHonestControlsPass: honest providers — hardware noise of three
// sizes, random seeds under greedy decoding, and noise three times the
// largest control as a margin — fail no audit and are never convicted.
func TestHonestControlsPass(t *testing.T) {
	a, variants := testAuditor(t, 1, 2400)
	ref := a.ref
	variants = append(variants, variant{"honest-margin", true, func() backend.Backend {
		return &sim.Perturbed{Sim: ref, Noise: 0.03, Seed: 14}
	}})
	controls := 0
	for vi, v := range variants {
		if !v.honest {
			continue
		}
		controls++
		for _, mode := range []Mode{ModeRescore, ModeCanary} {
			row, err := a.run(t.Context(), vi, v, mode)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s/%s: %d of %d cases failed, %d convictions; %d greedy cases differed from the reference",
				v.name, mode, row.Failed, row.Cases, row.Convictions, row.Differed)
			if row.Failed != 0 || row.Convictions != 0 {
				t.Errorf("%s/%s: %d cases failed (%v), %d convictions; want none", v.name, mode, row.Failed, row.Rules, row.Convictions)
			}
			// Noise must make answers differ (else the control tests
			// nothing); a seed must not change a greedy answer.
			if seedOnly := v.name == "honest-seed"; seedOnly != (row.Differed == 0) {
				t.Errorf("%s/%s: %d greedy cases differed from the reference", v.name, mode, row.Differed)
			}
		}
	}
	if controls != 5 {
		t.Fatalf("%d honest controls, want 5", controls)
	}
}
