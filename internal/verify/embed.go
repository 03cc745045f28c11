package verify

import (
	"context"
	"fmt"
	"math"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// Embeddings are judged by recomputing them: the reference embeds the
// same inputs, and every vector the provider answered must point where
// the reference's does. Hardware, thread counts and batch sizes move a
// vector's components by rounding only; a cheaper quantization of the
// weights (or other weights) turns it measurably. The threshold and the
// separation it rests on are in docs/verification.md
// (TestEmbeddingSeparation, TestRealOllamaEmbeddingSeparation).

// DefaultEmbeddingMinCosine is the cosine similarity to the reference
// below which a vector fails. Measured: honest variants of the simulator
// stay above 0.99998 and its quantization (Noise 0.1) below 0.9992; on
// Ollama, tiny against tiny (other thread count, other batch) is 1
// exactly and tiny-q4sim served as tiny at most 0.99948.
const DefaultEmbeddingMinCosine = 0.9999

// Cosine is the cosine similarity of a and b, computed in float64; 0 when
// either is zero or their lengths differ.
func Cosine(a, b []float32) float64 {
	if len(a) != len(b) {
		return 0
	}
	var dot, na, nb float64
	for i := range a {
		x, y := float64(a[i]), float64(b[i])
		dot, na, nb = dot+x*y, na+x*x, nb+y*y
	}
	if na == 0 || nb == 0 {
		return 0
	}
	return dot / math.Sqrt(na*nb)
}

// Embedded is what a reference's recomputation of an embed answer found.
type Embedded struct {
	// Cosines of each vector to the reference's, in input order.
	Cosines []float64 `json:"cosines"`
	// PromptTokens is the reference's count of the inputs.
	PromptTokens uint64 `json:"prompt_tokens"`
}

// Embed recomputes req's vectors on ref and compares them with got.
func Embed(ctx context.Context, ref backend.Embedder, req protocol.Request, got [][]float32) (Embedded, error) {
	res, err := ref.Embed(ctx, req)
	if err != nil {
		return Embedded{}, fmt.Errorf("verify: reference embeddings: %w", err)
	}
	if len(res.Vectors) != len(req.Input) {
		return Embedded{}, fmt.Errorf("verify: the reference answered %d vectors for %d inputs", len(res.Vectors), len(req.Input))
	}
	// One cosine per input: a missing vector counts 0.
	e := Embedded{Cosines: make([]float64, len(res.Vectors)), PromptTokens: res.PromptTokens}
	for i := range min(len(got), len(res.Vectors)) {
		e.Cosines[i] = Cosine(got[i], res.Vectors[i])
	}
	return e, nil
}

// Embeddings judges an embed answer of n vectors that claimed usage from
// the reference's recomputation e: every vector at least
// EmbeddingMinCosine from the reference's (RuleEmbedding), and no more
// prompt tokens than the reference counts, within the count slack
// (RuleCount). The verdict's MaxDeficit is the largest cosine distance
// (1 − cosine), Tokens the vectors judged and Flagged those below the
// threshold.
func (j Judge) Embeddings(n int, usage protocol.Usage, e Embedded) Verdict {
	worst, flagged, at := 0.0, 0, -1
	for i, c := range e.Cosines {
		if d := 1 - c; d > worst || at < 0 {
			worst, at = max(d, 0), i
		}
		if c < j.EmbeddingMinCosine {
			flagged++
		}
	}
	switch {
	case n != len(e.Cosines):
		return failed(RuleEmbedding, n, n, 1, "%d vectors for %d inputs", n, len(e.Cosines))
	case flagged > 0:
		return failed(RuleEmbedding, n, flagged, worst, "%d of %d vectors further from the reference's than noise explains: vector %d has cosine %.6f, below %v",
			flagged, n, at, 1-worst, j.EmbeddingMinCosine)
	case usage.CompletionTokens > 0:
		return failed(RuleCount, n, 0, worst, "%d completion tokens claimed for embeddings", usage.CompletionTokens)
	}
	slack := uint64(j.CountSlack) + uint64(j.CountSlackRate*float64(e.PromptTokens))
	if usage.PromptTokens > e.PromptTokens+slack {
		return failed(RuleCount, n, 0, worst, "%d prompt tokens claimed; the reference counts %d", usage.PromptTokens, e.PromptTokens)
	}
	return pass(n, 0, worst)
}
