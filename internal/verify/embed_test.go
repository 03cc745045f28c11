package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// separation is the worst cosine each variant reached against the
// reference over the same inputs.
type separation struct {
	name   string
	honest bool
	worst  float64
	best   float64
	n      int // vectors compared
}

func measure(t *testing.T, name string, honest bool, ref, got [][]float32) separation {
	t.Helper()
	if len(ref) != len(got) {
		t.Fatalf("%s: %d vectors, the reference %d", name, len(got), len(ref))
	}
	s := separation{name: name, honest: honest, worst: 1, best: -1, n: len(ref)}
	for i := range ref {
		c := Cosine(got[i], ref[i])
		s.worst, s.best = min(s.worst, c), max(s.best, c)
	}
	return s
}

// checkSeparation logs the figures and fails unless every honest vector
// is at or above the threshold and every cheater's below it.
func checkSeparation(t *testing.T, seps []separation) {
	t.Helper()
	minHonest, maxCheat := 1.0, -1.0
	for _, s := range seps {
		t.Logf("%-22s honest=%-5v worst cosine %.7f, best %.7f (%d vectors)", s.name, s.honest, s.worst, s.best, s.n)
		if s.honest {
			minHonest = min(minHonest, s.worst)
		} else {
			maxCheat = max(maxCheat, s.best)
		}
	}
	t.Logf("min honest cosine %.7f, max cheater cosine %.7f, threshold %v", minHonest, maxCheat, DefaultEmbeddingMinCosine)
	if minHonest < DefaultEmbeddingMinCosine || maxCheat >= DefaultEmbeddingMinCosine {
		t.Fatalf("the threshold %v does not separate honest (min %.7f) from cheaters (max %.7f)", DefaultEmbeddingMinCosine, minHonest, maxCheat)
	}
}

// TestEmbeddingSeparation measures, on the simulator, how close the
// vectors of honest variants (the perturbations that stand for other
// thread counts, batch sizes and hardware in the re-scoring benchmark)
// and of cheaters (its quantization, other weights) come to the model's,
// over 400 texts of the prompt mix.
func TestEmbeddingSeparation(t *testing.T) {
	ref, err := NewBenchReference()
	if err != nil {
		t.Fatal(err)
	}
	other, err := benchSim(2)
	if err != nil {
		t.Fatal(err)
	}
	const batches, per = 40, 10
	variants := []struct {
		name   string
		honest bool
		b      backend.Embedder
	}{
		{"honest-threads", true, &sim.Perturbed{Sim: ref, Noise: 0.0005, Seed: 11}},
		{"honest-batch", true, &sim.Perturbed{Sim: ref, Noise: 0.002, Seed: 12}},
		{"honest-hardware", true, &sim.Perturbed{Sim: ref, Noise: 0.01, Seed: 13}},
		{"quantized", false, &sim.Perturbed{Sim: ref, Noise: 0.1, Seed: 21}},
		{"other-model", false, other},
	}
	want := map[int][][]float32{}
	mix := DefaultPromptMix("sim")
	var seps []separation
	for _, v := range variants {
		var refAll, gotAll [][]float32
		for i := range batches {
			req := mix.Embed(i, per)
			if want[i] == nil {
				r, err := ref.Embed(t.Context(), req)
				if err != nil {
					t.Fatal(err)
				}
				want[i] = r.Vectors
			}
			got, err := v.b.Embed(t.Context(), req)
			if err != nil {
				t.Fatal(err)
			}
			refAll, gotAll = append(refAll, want[i]...), append(gotAll, got.Vectors...)
		}
		seps = append(seps, measure(t, v.name, v.honest, refAll, gotAll))
	}
	checkSeparation(t, seps)
}

// ollamaEmbed calls a real Ollama's /api/embed with options, as an
// application would (the backend client sends none).
func ollamaEmbed(t *testing.T, ctx context.Context, base, model string, inputs []string, options map[string]any) [][]float32 {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"model": model, "input": inputs, "options": options})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(base, "/")+"/api/embed", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Embeddings [][]float32 `json:"embeddings"`
		Error      string      `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 || len(out.Embeddings) != len(inputs) {
		t.Fatalf("%s /api/embed: %s %v %s", model, resp.Status, err, out.Error)
	}
	return out.Embeddings
}

// TestRealOllamaEmbeddingSeparation measures the same on a real Ollama
// (models tiny and tiny-q4sim): tiny's vectors from other thread counts
// and one input per call (another batch) against tiny's, and tiny-q4sim's
// (the same weights rounded to 4 bits) served as tiny.
func TestRealOllamaEmbeddingSeparation(t *testing.T) {
	base := os.Getenv("OLLAMA_URL")
	if testing.Short() {
		t.Skip("-short: the measurement makes 44 calls and reloads the model per thread count")
	}
	if base == "" {
		t.Skip("OLLAMA_URL not set: start a test Ollama (v0.13.5, models tiny and tiny-q4sim) with shared/scripts/ollama-test-server.sh")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	defer cancel()
	const batches, per = 20, 10
	mix := DefaultPromptMix("tiny")
	var inputs []string
	for i := range batches {
		inputs = append(inputs, mix.Embed(i, per).Input...)
	}
	ref := ollamaEmbed(t, ctx, base, "tiny", inputs, nil)
	// One input per call for the first 40 (each call waits its turn on a
	// shared server).
	const singles = 40
	var single [][]float32
	for _, in := range inputs[:singles] {
		single = append(single, ollamaEmbed(t, ctx, base, "tiny", []string{in}, nil)...)
	}
	seps := []separation{
		measure(t, "tiny, 1 thread", true, ref, ollamaEmbed(t, ctx, base, "tiny", inputs, map[string]any{"num_thread": 1})),
		measure(t, "tiny, 2 threads", true, ref, ollamaEmbed(t, ctx, base, "tiny", inputs, map[string]any{"num_thread": 2})),
		measure(t, "tiny, batch of 1", true, ref[:singles], single),
		measure(t, "tiny-q4sim as tiny", false, ref, ollamaEmbed(t, ctx, base, "tiny-q4sim", inputs, nil)),
	}
	checkSeparation(t, seps)
}

// TestJudgeEmbeddings: the rules on hand-made recomputations.
func TestJudgeEmbeddings(t *testing.T) {
	j := DefaultJudge()
	close, far := []float64{1, 0.99999}, []float64{1, 0.9995}
	for name, tc := range map[string]struct {
		n     int
		usage protocol.Usage
		e     Embedded
		rule  Rule
	}{
		"honest":               {2, protocol.Usage{PromptTokens: 10}, Embedded{Cosines: close, PromptTokens: 10}, ""},
		"within count slack":   {2, protocol.Usage{PromptTokens: 11}, Embedded{Cosines: close, PromptTokens: 10}, ""},
		"a vector turned":      {2, protocol.Usage{PromptTokens: 10}, Embedded{Cosines: far, PromptTokens: 10}, RuleEmbedding},
		"a vector missing":     {1, protocol.Usage{PromptTokens: 10}, Embedded{Cosines: []float64{1, 0}, PromptTokens: 10}, RuleEmbedding},
		"prompt tokens padded": {2, protocol.Usage{PromptTokens: 20}, Embedded{Cosines: close, PromptTokens: 10}, RuleCount},
		"completion claimed":   {2, protocol.Usage{PromptTokens: 10, CompletionTokens: 1}, Embedded{Cosines: close, PromptTokens: 10}, RuleCount},
	} {
		v := j.Embeddings(tc.n, tc.usage, tc.e)
		if v.Pass != (tc.rule == "") || v.Rule != tc.rule {
			t.Errorf("%s: %+v, want rule %q", name, v, tc.rule)
		}
	}
	if v := j.Embeddings(2, protocol.Usage{}, Embedded{Cosines: far}); v.Flagged != 1 || fmt.Sprintf("%.4f", v.MaxDeficit) != "0.0005" {
		t.Errorf("flagged %d, max deficit %v", v.Flagged, v.MaxDeficit)
	}
}
