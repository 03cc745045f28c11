package ollama

import (
	"fmt"
	"net/http"
	"time"

	"github.com/idlegrid/idlegrid/internal/gateway/api/jsonfield"
	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// EmbedParams is a parsed /api/embed or legacy /api/embeddings request.
type EmbedParams struct {
	// Request is the KindEmbed request providers run; its Input is empty
	// when the consumer sent none, which Ollama answers with no vectors
	// (WriteEmbed, WriteLegacyEmbedding) without running the model.
	Request protocol.Request
}

// ParseEmbed parses an /api/embed body: model, input (a string or an array
// of strings), truncate (default true), dimensions. options and keep_alive
// are the provider's business and are ignored. As in Ollama, an empty
// string or array asks for nothing; unlike Ollama, empty strings inside an
// array are refused (OpenAI refuses them too, and a vector of nothing
// means nothing).
func ParseEmbed(body []byte) (EmbedParams, *apierr.Error) {
	o, p, e := parseEmbedCommon(body)
	if e != nil {
		return p, e
	}
	raw, ok := o.Get("input")
	switch {
	case !ok:
	case raw[0] == '"':
		s, e := jsonfield.AsString(raw, "input")
		if e != nil {
			return p, e
		}
		if s != "" {
			p.Request.Input = []string{s}
		}
	case raw[0] == '[':
		items, e := jsonfield.AsArray(raw, "input")
		if e != nil {
			return p, e
		}
		if len(items) > protocol.MaxEmbedInputs {
			return p, jsonfield.Invalid(jsonfield.CodeInvalidValue, "input", "input can hold at most %d items, got %d", protocol.MaxEmbedInputs, len(items))
		}
		for i, item := range items {
			param := fmt.Sprintf("input[%d]", i)
			s, e := jsonfield.AsString(item, param)
			if e != nil {
				return p, e
			}
			if s == "" {
				return p, jsonfield.Invalid(jsonfield.CodeInvalidValue, param, "%s is an empty string: there is nothing to embed", param)
			}
			p.Request.Input = append(p.Request.Input, s)
		}
	default:
		return p, jsonfield.TypeError("input", "a string or an array of strings", raw)
	}
	if raw, ok := o.Get("truncate"); ok {
		t, e := jsonfield.AsBool(raw, "truncate")
		if e != nil {
			return p, e
		}
		p.Request.Truncate = &t
	}
	if n, ok, e := o.OptIntIn("dimensions", "dimensions", 0, protocol.MaxEmbeddingDims); e != nil {
		return p, e
	} else if ok {
		p.Request.Dimensions = int(n)
	}
	return p, nil
}

// ParseEmbeddings parses a legacy /api/embeddings body: model and prompt
// (one text; empty asks for nothing).
func ParseEmbeddings(body []byte) (EmbedParams, *apierr.Error) {
	o, p, e := parseEmbedCommon(body)
	if e != nil {
		return p, e
	}
	s, e := o.OptString("prompt", "prompt")
	if e != nil {
		return p, e
	}
	if s != "" {
		p.Request.Input = []string{s}
	}
	return p, nil
}

func parseEmbedCommon(body []byte) (jsonfield.Object, EmbedParams, *apierr.Error) {
	p := EmbedParams{Request: protocol.Request{Kind: protocol.KindEmbed}}
	o, e := jsonfield.DecodeBody(body)
	if e != nil {
		return o, p, e
	}
	raw, ok := o.Get("model")
	if !ok {
		return o, p, jsonfield.Invalid(jsonfield.CodeMissing, "model", "model is required")
	}
	if p.Request.Model, e = jsonfield.AsString(raw, "model"); e != nil {
		return o, p, e
	}
	if p.Request.Model == "" {
		return o, p, jsonfield.Invalid(jsonfield.CodeMissing, "model", "model is required")
	}
	if raw, ok := o.Get("options"); ok {
		if _, e := jsonfield.AsObject(raw, "options"); e != nil {
			return o, p, e
		}
	}
	return o, p, nil
}

// EmbedResponse is /api/embed's answer.
type EmbedResponse struct {
	Model           string      `json:"model"`
	Embeddings      [][]float32 `json:"embeddings"`
	TotalDuration   int64       `json:"total_duration,omitempty"`
	LoadDuration    int64       `json:"load_duration,omitempty"`
	PromptEvalCount uint64      `json:"prompt_eval_count,omitempty"`
}

// WriteEmbed writes /api/embed's answer: the vectors in input order (an
// empty list for no input), the prompt tokens billed and the time the
// gateway took.
func WriteEmbed(w http.ResponseWriter, model string, vectors [][]float32, promptTokens uint64, total time.Duration) {
	if vectors == nil {
		vectors = [][]float32{}
	}
	writeJSON(w, EmbedResponse{Model: model, Embeddings: vectors, TotalDuration: total.Nanoseconds(), PromptEvalCount: promptTokens})
}

// WriteLegacyEmbedding writes /api/embeddings' answer: the one vector, or
// an empty one for an empty prompt. Ollama's legacy endpoint returns the
// model's raw vector; the network's is normalized to unit length, as
// /api/embed's, which leaves cosine similarities unchanged.
func WriteLegacyEmbedding(w http.ResponseWriter, vector []float32) {
	if vector == nil {
		vector = []float32{}
	}
	writeJSON(w, struct {
		Embedding []float32 `json:"embedding"`
	}{vector})
}
