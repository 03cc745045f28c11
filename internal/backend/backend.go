// Package backend is the interface between the provider agent and the local
// model server that does the work. Implementations: ollama (HTTP client of a
// real Ollama, or of the simulator's Ollama-compatible server) and sim (the
// deterministic simulator itself). backendtest runs one conformance suite
// against each.
package backend

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/idlegrid/idlegrid/internal/protocol"
)

// Backend generates text for protocol requests.
type Backend interface {
	// Models lists the models the backend can serve, with their digests.
	Models(ctx context.Context) ([]Model, error)
	// Generate runs req, calling emit for every piece of generated text in
	// order, and returns the final counts. It stops and returns ctx.Err()
	// (wrapped) when ctx is cancelled, and returns emit's error when emit
	// fails. The upstream request is cancelled in both cases.
	Generate(ctx context.Context, req protocol.Request, emit func(Delta) error) (Result, error)
}

// Embedder is a Backend that also computes embeddings: one vector per
// input of a protocol.KindEmbed request, in order. Agents whose backend is
// not one answer embed jobs with protocol.CodeUnsupported.
type Embedder interface {
	Embed(ctx context.Context, req protocol.Request) (Embeddings, error)
}

// Embeddings is the outcome of an embed request.
type Embeddings struct {
	// Vectors holds one vector per input, in order, every one finite.
	Vectors [][]float32
	// PromptTokens is the tokens of all inputs, as the backend counted
	// them: what the receipt bills.
	PromptTokens uint64
}

// Model is one model the backend has.
type Model struct {
	Name string
	// Digest identifies the model by what determines its outputs, the same
	// on every machine that has it (for Ollama: ollama/identity.go). It is
	// what providers attest, receipts carry and verifiers look up.
	Digest string
	// BackendDigest is the backend's own digest of the model (Ollama's
	// /api/tags digest), shown beside Digest; it may differ between
	// machines with the same model.
	BackendDigest string
	Quantization  string
	Family        string
	ParameterSize string
	ContextLength int
	SizeBytes     int64
	// ParameterCount and EmbeddingLength as the backend reports them
	// (Ollama's model_info general.parameter_count and
	// <architecture>.embedding_length); 0 when unknown.
	ParameterCount  int64
	EmbeddingLength int
	// NoLogprobs: the backend is known to return no log-probabilities for
	// this model (Ollama before 0.12.11).
	NoLogprobs bool
	// Capabilities are what the model can do, with Ollama's names
	// (protocol.CapCompletion, protocol.CapTools, "vision", …); empty
	// means completion only.
	Capabilities []string
}

// Delta is a piece of generated text.
type Delta struct {
	Text string
	// Tokens in Text (1 per streamed token for Ollama).
	Tokens int
	// Logprobs for the tokens in Text, when requested and supported.
	Logprobs []protocol.TokenLogprob
	// ToolCalls the model made, each whole, after Text.
	ToolCalls []protocol.ToolCall
}

// Result is the outcome of a finished generation.
type Result struct {
	Usage protocol.Usage
	// FinishReason is "stop" or "length".
	FinishReason string
	// Context (generate only) is the token context the answer ends with,
	// for a later request to continue from (protocol.Request.Context);
	// nil when the backend returns none.
	Context []int
	// PromptEval and Eval are the backend's own durations, when reported.
	PromptEval time.Duration
	Eval       time.Duration
}

// Errors callers branch on. Implementations wrap them.
var (
	// ErrModelNotFound: the backend does not have the requested model.
	ErrModelNotFound = errors.New("model not found")
	// ErrBadRequest: the backend rejected the request as invalid.
	ErrBadRequest = errors.New("bad request")
	// ErrUnavailable: the backend could not be reached or failed.
	ErrUnavailable = errors.New("backend unavailable")
	// ErrNoLogprobs: the request asked for log-probabilities and the
	// backend returns none (Ollama before 0.12.11). It is an ErrBadRequest:
	// the same backend anywhere would answer the same.
	ErrNoLogprobs = fmt.Errorf("%w: the backend returns no log-probabilities (Ollama before 0.12.11?); ask without logprobs", ErrBadRequest)
)
