package ollama

import (
	"context"
	"fmt"
	"math"
	"net/http"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

var _ backend.Embedder = (*Client)(nil)

// embedBody is /api/embed's request, with Ollama's names.
type embedBody struct {
	Model      string   `json:"model"`
	Input      []string `json:"input"`
	Truncate   *bool    `json:"truncate,omitempty"`
	Dimensions int      `json:"dimensions,omitempty"`
}

// Embed computes req's vectors with /api/embed, which Ollama serves for
// every model it has (generative ones included), normalized to unit length.
func (c *Client) Embed(ctx context.Context, req protocol.Request) (backend.Embeddings, error) {
	if req.Kind != protocol.KindEmbed {
		return backend.Embeddings{}, fmt.Errorf("%w: ollama: embeddings need an embed request, not %q", backend.ErrBadRequest, req.Kind)
	}
	body := embedBody{Model: req.Model, Input: req.Input, Truncate: req.Truncate, Dimensions: req.Dimensions}
	var resp struct {
		Embeddings      [][]float32 `json:"embeddings"`
		PromptEvalCount uint64      `json:"prompt_eval_count"`
	}
	if err := c.call(ctx, http.MethodPost, "/api/embed", body, &resp); err != nil {
		return backend.Embeddings{}, err
	}
	if len(resp.Embeddings) != len(req.Input) {
		return backend.Embeddings{}, fmt.Errorf("%w: ollama: /api/embed answered %d vectors for %d inputs", backend.ErrUnavailable, len(resp.Embeddings), len(req.Input))
	}
	for i, v := range resp.Embeddings {
		if req.Dimensions > 0 && len(v) < req.Dimensions {
			// Ollama answers the whole vector when asked for more.
			return backend.Embeddings{}, fmt.Errorf("%w: ollama: dimensions %d: the model's vectors have %d", backend.ErrBadRequest, req.Dimensions, len(v))
		}
		if len(v) == 0 || len(v) > protocol.MaxEmbeddingDims || (req.Dimensions > 0 && len(v) != req.Dimensions) {
			return backend.Embeddings{}, fmt.Errorf("%w: ollama: /api/embed answered a vector of %d dimensions for input %d", backend.ErrUnavailable, len(v), i)
		}
		for _, f := range v {
			if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
				return backend.Embeddings{}, fmt.Errorf("%w: ollama: /api/embed answered a non-finite component for input %d", backend.ErrUnavailable, i)
			}
		}
	}
	return backend.Embeddings{Vectors: resp.Embeddings, PromptTokens: resp.PromptEvalCount}, nil
}
