package sim

import (
	"context"
	"fmt"
	"math"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// Embeddings. The simulated model embeds a text as the normalized sum of
// its tokens' vectors, each token's vector a pure function of the Weights
// and the token (plus half the vector of the token with the one before, so
// word order counts a little): texts that share tokens get close vectors,
// other Weights give unrelated ones, and the same text gives the same bits
// on every machine. A Perturbed model adds its noise to every component of
// the token vectors, so its vectors drift from the model's by an amount set
// by its Noise, as a real model's do on other hardware (a little) or
// quantized (more).

// DefaultEmbeddingLength is a model's vector size when its config sets none.
const DefaultEmbeddingLength = 64

// embedNoiseScale turns a Perturbed's logit noise into component noise:
// the Noise of honest hardware in the benchmark (0.01 at most) keeps the
// cosine to the model's vectors above 0.99998, a quantization's (0.1) takes
// it below 0.9992 (TestPerturbedEmbeddings).
const embedNoiseScale = 0.5

var _ backend.Embedder = (*Sim)(nil)

// Embed computes one vector per input of req.
func (s *Sim) Embed(ctx context.Context, req protocol.Request) (backend.Embeddings, error) {
	return s.embed(ctx, req, 0, 0)
}

var _ backend.Embedder = (*Perturbed)(nil)

// Embed computes the model's vectors with the perturbation's noise.
func (p *Perturbed) Embed(ctx context.Context, req protocol.Request) (backend.Embeddings, error) {
	return p.Sim.embed(ctx, req, p.Noise*embedNoiseScale, p.Seed)
}

func (s *Sim) embed(ctx context.Context, req protocol.Request, noise float64, seed uint64) (backend.Embeddings, error) {
	m, ok := s.lookup(req.Model)
	if !ok {
		return backend.Embeddings{}, fmt.Errorf("sim: %w: %s", backend.ErrModelNotFound, notFoundMessage(req.Model))
	}
	if req.Kind != protocol.KindEmbed {
		return backend.Embeddings{}, fmt.Errorf("sim: %w: embeddings need an embed request, not %q", backend.ErrBadRequest, req.Kind)
	}
	dims := m.embeddingLength()
	if req.Dimensions < 0 || req.Dimensions > dims {
		return backend.Embeddings{}, fmt.Errorf("sim: %w: dimensions %d: the model's vectors have %d", backend.ErrBadRequest, req.Dimensions, dims)
	}
	var out backend.Embeddings
	for i, text := range req.Input {
		if err := ctx.Err(); err != nil {
			return backend.Embeddings{}, fmt.Errorf("sim: %w", err)
		}
		toks := tokenize(text)
		if m.ContextLength > 0 && len(toks) > m.ContextLength {
			if req.Truncate != nil && !*req.Truncate {
				return backend.Embeddings{}, fmt.Errorf("sim: %w: input %d has %d tokens, above the context length %d", backend.ErrBadRequest, i, len(toks), m.ContextLength)
			}
			toks = toks[:m.ContextLength]
		}
		out.PromptTokens += uint64(len(toks))
		v := embedTokens(m.Weights, toks, dims, noise, seed)
		if req.Dimensions > 0 {
			v = v[:req.Dimensions]
		}
		out.Vectors = append(out.Vectors, normalize(v))
	}
	return out, nil
}

func (m *model) embeddingLength() int {
	if m.EmbeddingLength > 0 {
		return m.EmbeddingLength
	}
	return DefaultEmbeddingLength
}

// embedTokens sums the token vectors of toks in float64.
func embedTokens(weights uint64, toks []string, dims int, noise float64, seed uint64) []float64 {
	sum := make([]float64, dims)
	prev := uint64(0)
	for _, t := range toks {
		id := tokenID(t)
		addTokenVector(sum, weights, id, 1, noise, seed)
		if prev != 0 {
			addTokenVector(sum, weights, mix64(prev)^id, 0.5, noise, seed)
		}
		prev = id
	}
	return sum
}

// addTokenVector adds scale times the vector of token id under weights,
// each component standard normal, plus noise × a standard normal drawn from
// seed when noise is above 0.
func addTokenVector(sum []float64, weights, id uint64, scale, noise float64, seed uint64) {
	rng := splitmix(mix64(weights^0x6a09e667f3bcc909) ^ mix64(id))
	var nrng splitmix
	if noise > 0 {
		nrng = splitmix(mix64(seed^0xbb67ae8584caa73b) ^ mix64(weights^id))
	}
	for d := range sum {
		c := gaussian(&rng)
		if noise > 0 {
			c += noise * gaussian(&nrng)
		}
		sum[d] += scale * c
	}
}

// normalize scales v to unit length in float32; a zero vector (no tokens)
// stays zero.
func normalize(v []float64) []float32 {
	var n float64
	for _, x := range v {
		n += x * x
	}
	out := make([]float32, len(v))
	if n == 0 {
		return out
	}
	n = math.Sqrt(n)
	for i, x := range v {
		out[i] = float32(x / n)
	}
	return out
}
