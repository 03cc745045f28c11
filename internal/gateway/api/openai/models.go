package openai

import (
	"math"
	"net/http"

	"github.com/idlegrid/idlegrid/internal/gateway/api/apitypes"
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

func newRange(r PriceRange) apitypes.PriceRange {
	return apitypes.PriceRange{Min: r.Min.String(), Median: r.Median.String()}
}

// ModelObject is m as /v1/models shows it: the market fields only when
// some provider serves it, the speed rounded to a tenth.
func ModelObject(m Model) apitypes.Model {
	owner := m.OwnedBy
	if owner == "" {
		owner = "idlegrid"
	}
	o := apitypes.Model{ID: m.ID, Object: "model", Created: m.Created, OwnedBy: owner}
	if m.Providers > 0 {
		o.Providers = m.Providers
		o.PricePerMTok = &apitypes.Prices{Prompt: newRange(m.PricePrompt), Completion: newRange(m.PriceCompletion)}
		if m.TokensPerSecond > 0 && !math.IsInf(m.TokensPerSecond, 0) {
			o.TokensPerSecond = math.Round(m.TokensPerSecond*10) / 10
		}
		o.Digests = m.Digests
		o.Capabilities = m.Capabilities
	}
	return o
}

// WriteModelList writes the /v1/models response. The list is written in
// the given order and is never null, even when empty.
func WriteModelList(w http.ResponseWriter, models []Model) {
	objects := make([]apitypes.Model, 0, len(models))
	for _, m := range models {
		objects = append(objects, ModelObject(m))
	}
	WriteModelObjects(w, objects)
}

// WriteModelObjects writes the /v1/models response from its entries.
func WriteModelObjects(w http.ResponseWriter, models []apitypes.Model) {
	list := apitypes.ModelList{Object: "list", Data: models}
	if list.Data == nil {
		list.Data = []apitypes.Model{}
	}
	out := newResponder(w)
	// A failed write means the consumer left; there is nobody to tell.
	_ = out.body(http.StatusOK, list)
}

// WriteModel writes the /v1/models/{id} response for one model.
func WriteModel(w http.ResponseWriter, m Model) {
	out := newResponder(w)
	_ = out.body(http.StatusOK, ModelObject(m))
}
