package openai

import (
	"math"
	"net/http"

	"github.com/idlegrid/idlegrid/internal/money"
)

// Model is one entry of /v1/models.
type Model struct {
	// ID is the name consumers put in "model", e.g. "llama3.2:1b".
	ID string
	// Created is when the network first saw the model, in unix seconds.
	Created int64
	// OwnedBy is shown to consumers as "owned_by"; "idlegrid" when empty.
	OwnedBy string
	// Providers is how many connected providers serve the model; 0 leaves
	// out the market fields below.
	Providers int
	// PricePrompt and PriceCompletion are the consumer prices per million
	// tokens across those providers.
	PricePrompt, PriceCompletion PriceRange
	// TokensPerSecond is the median of the rates the gateway measured for
	// the model's providers (completion tokens over dispatch to done); 0
	// when unknown.
	TokensPerSecond float64
	// Digests are the distinct model identities (protocol.Model.Digest)
	// those providers serve, sorted.
	Digests []string
	// Capabilities are what at least one of those providers' models can
	// do (Ollama's names: completion, tools, …).
	Capabilities []string
}

// PriceRange summarizes one price across providers.
type PriceRange struct {
	Min, Median money.Amount
}

// modelObject is OpenAI's model object plus the network's market fields.
// OpenAI clients keep unknown fields (openai-go exposes them as extra
// fields), so the additions break none of them; their names differ from
// OpenRouter's "pricing", whose values are strings per token.
type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
	// Providers serving the model now.
	Providers int `json:"providers,omitempty"`
	// PricePerMTok is in tokens per million tokens, as exact decimal
	// strings.
	PricePerMTok *priceObject `json:"price_per_mtok,omitempty"`
	// TokensPerSecond is the median of the rates the gateway measured for
	// the model's providers (completion tokens over dispatch to done).
	TokensPerSecond float64 `json:"tokens_per_second,omitempty"`
	// Digests are the model identities served (what require_digest names).
	Digests []string `json:"digests,omitempty"`
	// Capabilities are what the model can do on some provider: a request
	// that needs one (tools) is placed only where the model has it.
	Capabilities []string `json:"capabilities,omitempty"`
}

type priceObject struct {
	Prompt     rangeObject `json:"prompt"`
	Completion rangeObject `json:"completion"`
}

type rangeObject struct {
	Min    string `json:"min"`
	Median string `json:"median"`
}

func newRange(r PriceRange) rangeObject {
	return rangeObject{Min: r.Min.String(), Median: r.Median.String()}
}

func newModelObject(m Model) modelObject {
	owner := m.OwnedBy
	if owner == "" {
		owner = "idlegrid"
	}
	o := modelObject{ID: m.ID, Object: "model", Created: m.Created, OwnedBy: owner}
	if m.Providers > 0 {
		o.Providers = m.Providers
		o.PricePerMTok = &priceObject{Prompt: newRange(m.PricePrompt), Completion: newRange(m.PriceCompletion)}
		if m.TokensPerSecond > 0 && !math.IsInf(m.TokensPerSecond, 0) {
			o.TokensPerSecond = math.Round(m.TokensPerSecond*10) / 10
		}
		o.Digests = m.Digests
		o.Capabilities = m.Capabilities
	}
	return o
}

type modelList struct {
	Object string        `json:"object"`
	Data   []modelObject `json:"data"`
}

// WriteModelList writes the /v1/models response. The list is written in
// the given order and is never null, even when empty.
func WriteModelList(w http.ResponseWriter, models []Model) {
	list := modelList{Object: "list", Data: make([]modelObject, 0, len(models))}
	for _, m := range models {
		list.Data = append(list.Data, newModelObject(m))
	}
	out := newResponder(w)
	// A failed write means the consumer left; there is nobody to tell.
	_ = out.body(http.StatusOK, list)
}

// WriteModel writes the /v1/models/{id} response for one model.
func WriteModel(w http.ResponseWriter, m Model) {
	out := newResponder(w)
	_ = out.body(http.StatusOK, newModelObject(m))
}
