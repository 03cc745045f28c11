package verifier_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/verify"
)

// embedThrough sends an embed request through the gateway's OpenAI API,
// pinned to provider, and returns the status.
func embedThrough(t *testing.T, sn *sampledNet, req protocol.Request, provider keys.PublicKey) (int, string) {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"model": req.Model, "input": req.Input,
		"provider": map[string]any{"order": []string{provider.String()}, "allow_fallbacks": false}})
	// Long enough for a shared real Ollama under load.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	hr, _ := http.NewRequestWithContext(ctx, http.MethodPost, sn.Gateway.URL()+"/v1/embeddings", bytes.NewReader(b))
	hr.Header.Set("Authorization", "Bearer "+apiKey)
	hr.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

// TestEmbedSamplesJudged: the gateway samples embed answers with their
// vectors; the verifier recomputes them on the reference. The provider
// whose vectors carry hardware-sized noise passes every case; the one
// serving a cheaper quantization (the simulator's noise 0.1) as the model
// fails each on the embedding rule and is jailed once the cases mature.
func TestEmbedSamplesJudged(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ref, err := verify.NewBenchReference()
	if err != nil {
		t.Fatal(err)
	}
	models, err := ref.Models(ctx)
	if err != nil {
		t.Fatal(err)
	}
	model := models[0].Name
	sn := sampledNetwork(t, sampledOptions{
		main:      &sim.Perturbed{Sim: ref, Noise: 0.01, Seed: 5},
		extra:     map[string]backend.Backend{"quantized": &sim.Perturbed{Sim: ref, Noise: 0.1, Seed: 6}},
		verifiers: 1,
	})
	v := sampleVerifier(t, sn, ref, sn.verifiers[0])
	const requests = 3
	mix := verify.DefaultPromptMix(model)
	for i := range requests {
		for name, key := range sn.providers {
			if status, body := embedThrough(t, sn, mix.Embed(i, 4), key); status != 200 {
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
		if p.Err != "" || p.Source != "sample" {
			t.Fatalf("%s: verdict not posted: %+v", n, p)
		}
		cases[n]++
		if !p.Verdict.Pass {
			failed[n]++
			if n == "main" || p.Verdict.Rule != verify.RuleEmbedding {
				t.Errorf("%s failed on rule %q: %s", n, p.Verdict.Rule, p.Verdict.Reason)
			}
		}
	}
	t.Logf("cases %v, failed %v", cases, failed)
	if cases["main"] != requests || cases["quantized"] != requests || failed["main"] != 0 || failed["quantized"] != requests {
		t.Fatalf("cases %v, failed %v: want %d each, every quantized one failed, no honest one", cases, failed, requests)
	}
	matureCases(t, ctx, sn, sn.verifiers[0], 3)
	l := chainrpc.StateReader{Client: sn.Validator.Node.Client()}
	waitProvider(t, ctx, l, sn.providers["quantized"].Address(), func(p chainrpc.ProviderInfo) bool { return p.Jailed })
	if p, err := l.Provider(ctx, sn.providers["main"].Address()); err != nil || p.Jailed || p.Failures != 0 {
		t.Errorf("honest provider on the ledger: %+v %v", p, err)
	}
}
