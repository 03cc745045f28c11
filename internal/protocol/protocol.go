// Package protocol defines the messages exchanged between a gateway and its
// providers over one WebSocket per provider (/v1/providers/connect). Both ends
// — the gateway's hub, the native agent and the browser page — encode and
// decode exactly these types, so they cannot drift. The package reads no
// environment and no clock.
//
// Framing: every WebSocket text message carries one or more JSON messages
// separated by '\n' (JSON never contains a raw newline), so a busy connection
// can batch many small chunks into one frame.
package protocol

import (
	"encoding/json"
	"slices"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// Version is the protocol version spoken by this code. Each version lists
// what it added:
//
//	1: hello/auth/welcome handshake; job, chunk, done, error, cancel;
//	   pause, resume, capabilities; ping, pong.
//	2: optional chunk.checkpoint: the provider's signature over the receipt
//	   for everything the job delivered so far, which the gateway settles
//	   when the job fails mid-answer.
//	3: checkpoint.prompt_tokens: a checkpoint bills the prompt too
//	   (PromptEstimate until the backend reports the real count), so a
//	   consumer who hangs up after the first token pays for its prompt.
//	4: capabilities.models[].digest is the model's identity (the content
//	   of its layers, the same on every machine: backend/ollama
//	   identity.go) and backend_digest the backend's own digest beside it;
//	   no_logprobs says the backend returns no log-probabilities, and the
//	   gateway places requests that ask for them elsewhere.
//	5: capabilities.models[].capabilities names what each model can do
//	   (Ollama's names: completion, tools, vision, embedding, …; absent
//	   means ["completion"]) and the gateway places a request only on
//	   models with every capability it Needs; request.tools,
//	   tool_choice, tool_choice_function, parallel_tool_calls and format
//	   (structured output); messages[].tool_calls, tool_call_id and
//	   tool_name; chunk.tool_calls, which the response hash covers
//	   (HashChunk).
//	5 (eco): capabilities.models[].parameter_count and embedding_length,
//	   shown by the gateway's /api/show; job.request.context and
//	   done.context, /api/generate's token context in and out. An older
//	   agent ignores request.context (the answer starts afresh) and sends
//	   no done.context. request.messages[].images and request.images
//	   (base64), sent only to providers whose model has the vision
//	   capability.
//	5 (embed): request kind "embed" (request.input, dimensions, truncate),
//	   answered by one chunk per input carrying its vector
//	   (chunk.embedding) and a done with prompt tokens only; job error
//	   code "unsupported" from a backend that cannot embed. Gateways send
//	   embed jobs only to agents of version 5 or later.
//
// Versions from MinVersion to Version interoperate: a version-1 peer simply
// sends or reads no checkpoint, a version-2 peer's checkpoints bill no
// prompt, an older peer's models have no backend_digest and are taken to
// return log-probabilities, as before; an older peer's models have only
// the completion capability, so requests with tools never reach it.
const Version = 5

// MinVersion is the oldest protocol version still accepted.
const MinVersion = 1

// Supported reports whether a peer speaking version v can be served.
func Supported(v int) bool { return v >= MinVersion && v <= Version }

// Path is the gateway URL path providers dial.
const Path = "/v1/providers/connect"

// Type names a message kind.
type Type string

// Message types.
const (
	TypeHello        Type = "hello"        // gateway → provider, first message
	TypeAuth         Type = "auth"         // provider → gateway, answer to hello
	TypeWelcome      Type = "welcome"      // gateway → provider, auth accepted
	TypeJob          Type = "job"          // gateway → provider
	TypeCancel       Type = "cancel"       // gateway → provider
	TypeChunk        Type = "chunk"        // provider → gateway
	TypeDone         Type = "done"         // provider → gateway
	TypeError        Type = "error"        // provider → gateway
	TypePause        Type = "pause"        // provider → gateway
	TypeResume       Type = "resume"       // provider → gateway
	TypeCapabilities Type = "capabilities" // provider → gateway, update after auth
	TypePing         Type = "ping"         // either way
	TypePong         Type = "pong"         // either way, answer to ping
)

// Message is one protocol message: Type says which one payload field is set.
type Message struct {
	Type         Type          `json:"type"`
	Hello        *Hello        `json:"hello,omitempty"`
	Auth         *Auth         `json:"auth,omitempty"`
	Welcome      *Welcome      `json:"welcome,omitempty"`
	Job          *Job          `json:"job,omitempty"`
	Cancel       *Cancel       `json:"cancel,omitempty"`
	Chunk        *Chunk        `json:"chunk,omitempty"`
	Done         *Done         `json:"done,omitempty"`
	Error        *JobError     `json:"error,omitempty"`
	Pause        *Pause        `json:"pause,omitempty"`
	Capabilities *Capabilities `json:"capabilities,omitempty"`
	Ping         *Ping         `json:"ping,omitempty"`
}

// Hello opens the handshake.
type Hello struct {
	// Nonce is 32 random bytes the provider must sign.
	Nonce []byte `json:"nonce"`
	// GatewayKey identifies the gateway; it countersigns receipts.
	GatewayKey keys.PublicKey `json:"gateway_key"`
	// ChainID names the ledger the gateway settles on.
	ChainID string `json:"chain_id"`
	// ProtocolVersion is the gateway's Version.
	ProtocolVersion int `json:"protocol_version"`
}

// Auth proves the provider holds its key for this gateway and chain.
type Auth struct {
	// ProviderKey is the provider's identity.
	ProviderKey keys.PublicKey `json:"provider_key"`
	// Signature is over AuthBytes(nonce, gateway key, chain id).
	Signature keys.Signature `json:"signature"`
	// ProtocolVersion is the provider's Version.
	ProtocolVersion int `json:"protocol_version"`
	// Capabilities is what the provider serves.
	Capabilities Capabilities `json:"capabilities"`
}

// Welcome tells the provider its auth was accepted.
type Welcome struct {
	// HeartbeatMs is how often each side should send a ping when idle; a
	// side that hears nothing for three intervals drops the connection.
	HeartbeatMs int64 `json:"heartbeat_ms"`
}

// Capabilities describes what a provider serves.
type Capabilities struct {
	// Models served, with the exact digests the provider attests.
	Models []Model `json:"models"`
	// Slots is how many jobs the provider runs at once.
	Slots int `json:"slots"`
	// Hardware is a summary for routing and display.
	Hardware Hardware `json:"hardware"`
	// AgentVersion is the provider software's version string.
	AgentVersion string `json:"agent_version"`
}

// Model is one model a provider serves.
type Model struct {
	// Name as consumers ask for it, e.g. "llama3.2:1b".
	Name string `json:"name"`
	// Digest identifies the model by what determines its outputs (weights,
	// template, parameters), the same on every machine; 64 hex digits for
	// Ollama models (backend/ollama identity.go).
	Digest string `json:"digest"`
	// BackendDigest is the backend's own digest of the model (Ollama's
	// /api/tags digest), shown beside Digest; informational only.
	BackendDigest string `json:"backend_digest,omitempty"`
	// NoLogprobs: the backend returns no log-probabilities for this model
	// (Ollama before 0.12.11), so requests asking for them go elsewhere.
	NoLogprobs bool `json:"no_logprobs,omitempty"`
	// Quantization level, e.g. "Q4_K_M", "F16".
	Quantization string `json:"quantization,omitempty"`
	// Family and ParameterSize as the backend reports them.
	Family        string `json:"family,omitempty"`
	ParameterSize string `json:"parameter_size,omitempty"`
	// ContextLength in tokens; 0 when unknown.
	ContextLength int `json:"context_length,omitempty"`
	// ParameterCount (the weights' exact count) and EmbeddingLength (the
	// model's hidden size) as the backend reports them; 0 when unknown.
	// Shown by the gateway's /api/show (version 5, eco).
	ParameterCount  int64 `json:"parameter_count,omitempty"`
	EmbeddingLength int   `json:"embedding_length,omitempty"`
	// Prices in base units per million tokens.
	PricePromptPerMTok     money.Amount `json:"price_per_mtok_in"`
	PriceCompletionPerMTok money.Amount `json:"price_per_mtok_out"`
	// TokensPerSecond measured by the provider; 0 when unmeasured.
	// Informational: gateways route on the speed they measure themselves.
	TokensPerSecond float64 `json:"tokens_per_second,omitempty"`
	// Capabilities are what the model can do, with Ollama's names
	// (CapCompletion, CapTools, "vision", "embedding", "insert",
	// "thinking"); absent (a peer before version 5) means
	// ["completion"]. Read it with Has. Agents of version 5 always list
	// at least completion, which also tells the gateway they take
	// Request.Format (older agents would ignore it).
	Capabilities []string `json:"capabilities,omitempty"`
}

// Capability names a request may need (Ollama's /api/show names).
const (
	CapCompletion = "completion"
	CapTools      = "tools"
	CapVision     = "vision"
)

// Has reports whether the model has capability c. A model that lists none
// (advertised by a peer before version 5) has only completion.
func (m *Model) Has(c string) bool {
	if len(m.Capabilities) == 0 {
		return c == CapCompletion
	}
	return slices.Contains(m.Capabilities, c)
}

// Hardware summarizes the provider machine.
type Hardware struct {
	OS          string `json:"os,omitempty"`
	Arch        string `json:"arch,omitempty"`
	CPU         string `json:"cpu,omitempty"`
	Cores       int    `json:"cores,omitempty"`
	MemoryBytes uint64 `json:"memory_bytes,omitempty"`
	GPUs        []GPU  `json:"gpus,omitempty"`
}

// GPU is one accelerator.
type GPU struct {
	Name        string `json:"name"`
	MemoryBytes uint64 `json:"memory_bytes,omitempty"`
}

// Job asks the provider to run one request.
type Job struct {
	// ID names the job on this connection (the request id).
	ID string `json:"id"`
	// Request is what to generate.
	Request Request `json:"request"`
	// DeadlineUnixMs after which the gateway no longer wants the result.
	DeadlineUnixMs int64 `json:"deadline_unix_ms"`
	// Terms are the receipt fields the gateway fixes; the provider signs a
	// receipt made of these plus its usage, response hash and end time.
	Terms Terms `json:"terms"`
}

// Terms are the receipt fields fixed when a job is dispatched.
type Terms struct {
	ChainID                string         `json:"chain_id"`
	RequestID              string         `json:"request_id"`
	Gateway                keys.PublicKey `json:"gateway"`
	Consumer               keys.Address   `json:"consumer"`
	Model                  string         `json:"model"`
	ModelDigest            string         `json:"model_digest"`
	PricePromptPerMTok     money.Amount   `json:"price_per_mtok_in"`
	PriceCompletionPerMTok money.Amount   `json:"price_per_mtok_out"`
	RequestHash            receipt.Hash   `json:"request_hash"`
	StartUnixMs            int64          `json:"start_unix_ms"`
}

// Cancel tells the provider to stop a job; it answers with an error message
// (code CodeCancelled) or, if it had already finished, nothing more.
type Cancel struct {
	ID string `json:"id"`
}

// Chunk carries generated text of a job, in order.
type Chunk struct {
	ID string `json:"id"`
	// Seq numbers chunks of a job from 0 without gaps.
	Seq uint64 `json:"seq"`
	// Delta is the text generated since the previous chunk. It must be valid
	// UTF-8 (hold back a rune split across tokens until it is complete): both
	// ends hash the deltas for the receipt, and JSON would alter invalid bytes.
	Delta string `json:"delta"`
	// Tokens is how many tokens Delta holds, when the backend says.
	Tokens int `json:"tokens,omitempty"`
	// Logprobs of the tokens in Delta, when requested and available.
	Logprobs []TokenLogprob `json:"logprobs,omitempty"`
	// ToolCalls the model made, each whole, after Delta's text (version
	// 5). The response hash covers them (HashChunk).
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
	// Checkpoint, when set, signs for everything the job delivered up to
	// and including this chunk (version 2, optional).
	Checkpoint *Checkpoint `json:"checkpoint,omitempty"`
	// Embedding is the vector of input Seq of an embed job (version 5);
	// an embed job's chunks carry no text. JSON carries each float32 in
	// its shortest round-tripping form, so both ends see the same bits.
	Embedding []float32 `json:"embedding,omitempty"`
}

// PromptEstimate is the prompt tokens a checkpoint claims for req before
// the backend has reported the real count: one token per 4 bytes of the
// prompt's text (system, prompt and message contents), rounded up. It is
// below the real count for most text and tokenizers (English runs about 4
// bytes a token; code, digits and other scripts fewer), so a partial
// receipt seldom bills more prompt than the final one would, and it never
// exceeds what the gateway's bound (its promptLimit) allows. The browser
// page's promptEstimate (codec.js) computes the same.
func PromptEstimate(req *Request) uint64 {
	n := uint64(len(req.Prompt)) + uint64(len(req.System))
	for _, m := range req.Messages {
		n += uint64(len(m.Content))
	}
	return (n + 3) / 4
}

// TokenCount is how many completion tokens the chunk counts for, on both
// ends: Tokens when the provider says, else one for a chunk with text or
// tool calls.
func (c *Chunk) TokenCount() uint64 {
	switch {
	case c.Tokens > 0:
		return uint64(c.Tokens)
	case c.Delta != "" || len(c.ToolCalls) > 0:
		return 1
	}
	return 0
}

// Checkpoint is a provider's signature over the partial receipt of a job:
// the receipt built by Terms.Receipt from the job's terms, PromptTokens,
// CompletionTokens, the sha256 of every delta sent so far including this
// chunk's, and EndUnixMs.
// It is an ordinary receipt under the job's request id, so it settles like
// one and never besides the job's final receipt (a request id settles
// once). The gateway keeps the latest and uses it only when the job ends
// without done: the tokens the provider delivered before it died or
// stalled are then billed and paid up to that checkpoint.
type Checkpoint struct {
	// PromptTokens is the prompt the partial receipt bills (version 3;
	// 0 before): once the provider has produced a token it has processed
	// the prompt. Backends report the prompt's count only at the end, so
	// agents claim PromptEstimate of the request; the gateway refuses a
	// count the prompt cannot hold, by the same rule as final receipts.
	PromptTokens uint64 `json:"prompt_tokens,omitempty"`
	// CompletionTokens is the sum of TokenCount over the job's chunks so
	// far; the gateway refuses a checkpoint that claims more.
	CompletionTokens uint64 `json:"completion_tokens"`
	// EndUnixMs is the partial receipt's end time: when this chunk was sent.
	EndUnixMs int64 `json:"end_unix_ms"`
	// Signature is the provider's receipt signature (receipt.SignProvider).
	Signature keys.Signature `json:"signature"`
}

// TokenLogprob is one generated token and its log-probability.
type TokenLogprob struct {
	Token   string  `json:"token"`
	Logprob float64 `json:"logprob"`
	// Top alternatives at this position, most likely first.
	Top []TopLogprob `json:"top_logprobs,omitempty"`
}

// TopLogprob is one alternative token.
type TopLogprob struct {
	Token   string  `json:"token"`
	Logprob float64 `json:"logprob"`
}

// Done ends a job successfully.
type Done struct {
	ID string `json:"id"`
	// Chunks is how many chunks were sent (the next Seq).
	Chunks uint64 `json:"chunks"`
	// Usage as counted by the backend.
	Usage Usage `json:"usage"`
	// FinishReason is "stop" or "length".
	FinishReason string `json:"finish_reason"`
	// Timings measured by the provider.
	Timings Timings `json:"timings"`
	// EndUnixMs is the receipt's end time.
	EndUnixMs int64 `json:"end_unix_ms"`
	// ReceiptSignature is the provider's signature over the receipt made of
	// the job's Terms, Usage, the sha256 of all deltas, and EndUnixMs.
	ReceiptSignature keys.Signature `json:"receipt_signature"`
	// Context (generate only) is the token context the answer ends with,
	// as the backend returns it (prompt and answer, after Request.Context),
	// for the consumer to continue from; not covered by the receipt
	// (version 5, eco).
	Context []int `json:"context,omitempty"`
}

// Usage counts tokens.
type Usage struct {
	PromptTokens     uint64 `json:"prompt_tokens"`
	CompletionTokens uint64 `json:"completion_tokens"`
}

// Timings are durations in microseconds.
type Timings struct {
	FirstTokenUs int64 `json:"first_token_us"`
	TotalUs      int64 `json:"total_us"`
}

// JobError ends a job unsuccessfully.
type JobError struct {
	ID      string `json:"id"`
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

// Code classifies a job error.
type Code string

// Job error codes.
const (
	CodeBackend       Code = "backend_error"   // the local model server failed
	CodeModelNotFound Code = "model_not_found" // provider no longer has the model
	CodeBusy          Code = "busy"            // no free slot
	CodeCancelled     Code = "cancelled"       // after a cancel message
	CodeDeadline      Code = "deadline"        // the deadline passed
	CodeBadRequest    Code = "bad_request"     // the backend rejected the request
	CodeUnsupported   Code = "unsupported"     // this provider's backend cannot run the kind of job (version 5)
)

// Pause tells the gateway to stop sending new jobs.
type Pause struct {
	Reason string `json:"reason,omitempty"`
}

// Ping asks for a Pong with the same Seq.
type Ping struct {
	Seq uint64 `json:"seq"`
}

// Request is idlegrid's one internal generation request; the OpenAI and
// Ollama APIs are translated into it and backends translate it out.
type Request struct {
	// Kind is KindChat (Messages) or KindGenerate (Prompt, System).
	Kind     Kind          `json:"kind"`
	Model    string        `json:"model"`
	Messages []ChatMessage `json:"messages,omitempty"`
	Prompt   string        `json:"prompt,omitempty"`
	System   string        `json:"system,omitempty"`
	// Raw sends Prompt without the model's template (generate only).
	Raw bool `json:"raw,omitempty"`
	// Buffered says the consumer reads the answer in one piece (it did not
	// ask for streaming): the backend may generate without streaming and
	// deliver the text in fewer, larger deltas, which saves a write per
	// token on every hop.
	Buffered bool    `json:"buffered,omitempty"`
	Options  Options `json:"options"`
	// Tools the model may call (chat only; version 5).
	Tools []Tool `json:"tools,omitempty"`
	// ToolChoice is how the model must use Tools: "" or ToolChoiceAuto
	// (it decides), ToolChoiceNone (it must not call one: backends are
	// sent no tools) or ToolChoiceRequired (it must call one, the
	// function named ToolChoiceFunction when that is set). Ollama has no
	// such control: its backends send the tools (none for "none", only
	// the named one when forced) and the model decides.
	ToolChoice         string `json:"tool_choice,omitempty"`
	ToolChoiceFunction string `json:"tool_choice_function,omitempty"`
	// ParallelToolCalls is OpenAI's parallel_tool_calls: false asks for at
	// most one call per answer; nil is the default (true). Backends that
	// have no such control (Ollama) ignore it.
	ParallelToolCalls *bool `json:"parallel_tool_calls,omitempty"`
	// Format is Ollama's structured-output request, as its "format": the
	// JSON string "json" (any JSON value) or a JSON Schema object the
	// answer must conform to; empty for free text.
	Format json.RawMessage `json:"format,omitempty"`
	// Context (generate only) is the token context an earlier answer of
	// the same model ended with (Done.Context, Ollama's /api/generate
	// "context"): the model continues from it, Prompt after it. Token ids
	// are the model's own (version 5, eco).
	Context []int `json:"context,omitempty"`
	// Images (generate only) go with Prompt, as ChatMessage.Images with a
	// message (version 5, eco).
	Images []string `json:"images,omitempty"`
	// Input is the texts of an embed request (KindEmbed), at least one;
	// the answer has one vector per input, in order.
	Input []string `json:"input,omitempty"`
	// Dimensions, when above 0, asks an embed request for vectors cut to
	// that many dimensions (and normalized again), where the model allows.
	Dimensions int `json:"dimensions,omitempty"`
	// Truncate, when false, makes an embed input longer than the model's
	// context an error instead of being cut to fit (nil: cut, as Ollama).
	Truncate *bool `json:"truncate,omitempty"`
}

// Tool choices (Request.ToolChoice).
const (
	ToolChoiceAuto     = "auto"
	ToolChoiceNone     = "none"
	ToolChoiceRequired = "required"
)

// Needs returns the capabilities a request requires of the model that
// serves it: completion, tools when it offers the model tools, and vision
// when it carries images. An embed request needs none: Ollama lists
// "embedding" only for embedding-only models, yet embeds with any model
// (agents before version 5, which cannot embed, are skipped by version).
func (r *Request) Needs() []string {
	if r.Kind == KindEmbed {
		return nil
	}
	needs := []string{CapCompletion}
	if r.SendsTools() {
		needs = append(needs, CapTools)
	}
	if r.ImageCount() > 0 {
		needs = append(needs, CapVision)
	}
	return needs
}

// SendsTools reports whether the model is offered tools: some are given
// and the choice is not "none".
func (r *Request) SendsTools() bool {
	return len(r.Tools) > 0 && r.ToolChoice != ToolChoiceNone
}

// Tool is a function the model may call, in OpenAI's and Ollama's shape.
type Tool struct {
	// Type is "function", the only kind.
	Type     string       `json:"type"`
	Function ToolFunction `json:"function"`
}

// ToolFunction describes a callable function.
type ToolFunction struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Parameters is the JSON Schema of the arguments object.
	Parameters json.RawMessage `json:"parameters,omitempty"`
}

// ToolCall is one call the model made.
type ToolCall struct {
	// ID names the call so a later "tool" message can answer it; set by
	// the backend when it names calls (Ollama since 0.12), else by the
	// provider agent.
	ID string `json:"id,omitempty"`
	// Name of the function called.
	Name string `json:"name"`
	// Arguments is the JSON text of the arguments object, compact, as
	// OpenAI sends it; the Ollama API sends it as the object.
	Arguments string `json:"arguments"`
}

// Kind of request.
type Kind string

// Request kinds.
const (
	KindChat     Kind = "chat"
	KindGenerate Kind = "generate"
	// KindEmbed computes one embedding vector per Input (version 5). Its
	// receipt bills prompt tokens only, and its response hash is
	// EmbeddingsHash of the vectors.
	KindEmbed Kind = "embed"
)

// ChatMessage is one turn of a chat.
type ChatMessage struct {
	// Role is system, user, assistant or tool (the result of a call).
	Role    string `json:"role"`
	Content string `json:"content"`
	// ToolCalls an assistant turn made (version 5).
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
	// ToolCallID and ToolName say which call a tool message answers
	// (OpenAI sends the id, Ollama the function's name).
	ToolCallID string `json:"tool_call_id,omitempty"`
	ToolName   string `json:"tool_name,omitempty"`
	// Images are the turn's images, each base64 (standard encoding) of
	// the image file, as Ollama takes them; only for models with the
	// "vision" capability (version 5, eco).
	Images []string `json:"images,omitempty"`
}

// Limits on images in one request, across its messages (or a generate
// request's Images): at most MaxImages, each at most MaxImageBytes once
// decoded.
const (
	MaxImages     = 8
	MaxImageBytes = 20 << 20
)

// ImageCount is how many images req carries.
func (r *Request) ImageCount() int {
	n := len(r.Images)
	for _, m := range r.Messages {
		n += len(m.Images)
	}
	return n
}

// Options are sampling options; nil means the backend's default.
type Options struct {
	// MaxTokens caps generated tokens (0: the gateway's default).
	MaxTokens   int      `json:"max_tokens,omitempty"`
	Temperature *float64 `json:"temperature,omitempty"`
	TopP        *float64 `json:"top_p,omitempty"`
	Seed        *int64   `json:"seed,omitempty"`
	Stop        []string `json:"stop,omitempty"`
	// Logprobs asks for per-token log-probabilities; TopLogprobs for that
	// many alternatives per position.
	Logprobs    bool `json:"logprobs,omitempty"`
	TopLogprobs int  `json:"top_logprobs,omitempty"`
}
