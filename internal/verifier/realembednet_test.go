package verifier_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/backend/ollama"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/verify"
)

// TestRealOllamaEmbedCheaterThroughTheNetwork: on a real Ollama, a
// provider that advertises tiny (with tiny's identity) but computes its
// embeddings with tiny-q4sim serves consumers through the gateway; the
// gateway samples its answers, and the verifier, recomputing them on its
// own Ollama, fails every one. The honest provider's pass.
func TestRealOllamaEmbedCheaterThroughTheNetwork(t *testing.T) {
	u := os.Getenv("OLLAMA_URL")
	if testing.Short() {
		t.Skip("-short: a whole network on a real Ollama (minutes when the server is shared)")
	}
	if u == "" {
		t.Skip("OLLAMA_URL not set: start a test Ollama (v0.13.5, models tiny and tiny-q4sim) with shared/scripts/ollama-test-server.sh")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	o := ollama.New(u, nil)
	sn := sampledNetwork(t, sampledOptions{
		main:      o,
		extra:     map[string]backend.Backend{"cheater": &verify.Substitute{Backend: o, Claim: "tiny", Serve: "tiny-q4sim"}},
		verifiers: 1,
	})
	v := sampleVerifier(t, sn, o, sn.verifiers[0])
	const requests = 3
	mix := verify.DefaultPromptMix("tiny")
	for i := range requests {
		for name, key := range sn.providers {
			if status, body := embedThrough(t, sn, mix.Embed(i, 3), key); status != 200 {
				t.Fatalf("%s request %d: %d %s", name, i, status, body)
			}
		}
	}
	posted, err := v.PullSamples(ctx)
	if err != nil {
		t.Fatal(err)
	}
	name := map[keys.PublicKey]string{}
	for n, k := range sn.providers {
		name[k] = n
	}
	cases, failed := map[string]int{}, map[string]int{}
	for _, p := range posted {
		n := name[p.Provider]
		cases[n]++
		if !p.Verdict.Pass {
			failed[n]++
			if n == "main" || p.Verdict.Rule != verify.RuleEmbedding {
				t.Errorf("%s failed on rule %q: %s", n, p.Verdict.Rule, p.Verdict.Reason)
			}
		} else if n == "cheater" {
			t.Errorf("a tiny-q4sim answer claimed as tiny passed: %+v", p.Verdict)
		}
	}
	t.Logf("cases %v, failed %v", cases, failed)
	if cases["main"] != requests || cases["cheater"] != requests || failed["cheater"] != requests || failed["main"] != 0 {
		t.Fatalf("cases %v, failed %v: want %d each, every cheater's failed, no honest one", cases, failed, requests)
	}
}
