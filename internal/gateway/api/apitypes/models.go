package apitypes

// ModelList is the answer of GET /v1/models.
type ModelList struct {
	// Object is "list".
	Object string `json:"object"`
	// Data is never null, even when empty.
	Data []Model `json:"data"`
}

// Model is OpenAI's model object plus the network's market fields, one
// entry of /v1/models and the answer of /v1/models/{id}. OpenAI clients
// keep unknown fields (openai-go exposes them as extra fields), so the
// additions break none of them; their names differ from OpenRouter's
// "pricing", whose values are strings per token.
type Model struct {
	// ID is the name consumers put in "model", e.g. "llama3.2:1b".
	ID string `json:"id"`
	// Object is "model".
	Object string `json:"object"`
	// Created is when the network first saw the model, in unix seconds.
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
	// Providers is how many providers serve the model now; when 0 the
	// market fields below are absent.
	Providers int `json:"providers,omitempty"`
	// PricePerMTok is the consumer prices across those providers.
	PricePerMTok *Prices `json:"price_per_mtok,omitempty"`
	// TokensPerSecond is the median of the rates the gateway measured for
	// the model's providers (completion tokens over dispatch to done),
	// rounded to a tenth; 0 (absent) when unknown.
	TokensPerSecond float64 `json:"tokens_per_second,omitempty"`
	// Digests are the model identities served (what require_digest
	// names), sorted.
	Digests []string `json:"digests,omitempty"`
	// Capabilities are what the model can do on some provider (Ollama's
	// names: completion, tools, …): a request that needs one is placed
	// only where the model has it.
	Capabilities []string `json:"capabilities,omitempty"`
}

// Prices are a model's prompt and completion prices, in tokens per
// million tokens.
type Prices struct {
	Prompt     PriceRange `json:"prompt"`
	Completion PriceRange `json:"completion"`
}

// PriceRange summarizes one price across providers, as exact decimal
// strings (money.Parse reads them).
type PriceRange struct {
	Min    string `json:"min"`
	Median string `json:"median"`
}
