package apitypes

import "encoding/json"

// ChatCompletion is the non-streaming answer of /v1/chat/completions.
type ChatCompletion struct {
	// ID is the request id (also the X-Request-Id header), under which
	// GET /v1/receipts/{id} finds the receipt.
	ID string `json:"id"`
	// Object is "chat.completion".
	Object string `json:"object"`
	// Created is in unix seconds.
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []ChatChoice `json:"choices"`
	Usage   *Usage       `json:"usage"`
	// SystemFingerprint is always null.
	SystemFingerprint json.RawMessage `json:"system_fingerprint"`
}

// ChatChoice is one choice of a ChatCompletion.
type ChatChoice struct {
	Index   int         `json:"index"`
	Message ChatMessage `json:"message"`
	// Logprobs is null unless logprobs were requested.
	Logprobs     *ChatLogprobs `json:"logprobs"`
	FinishReason string        `json:"finish_reason"`
}

// ChatMessage is the assistant's message of a ChatChoice.
type ChatMessage struct {
	Role string `json:"role"`
	// Content is null when the answer is only tool calls.
	Content *string `json:"content"`
	// Refusal is always null.
	Refusal   json.RawMessage `json:"refusal"`
	ToolCalls []ToolCall      `json:"tool_calls,omitempty"`
}

// Text is the message's content, "" when null.
func (m ChatMessage) Text() string {
	if m.Content == nil {
		return ""
	}
	return *m.Content
}

// ToolCall is a whole tool call in a ChatMessage.
type ToolCall struct {
	ID       string       `json:"id"`
	Type     string       `json:"type"`
	Function ToolFunction `json:"function"`
}

// ToolFunction is the function a ToolCall calls.
type ToolFunction struct {
	Name string `json:"name"`
	// Arguments is a JSON object as a string, as OpenAI sends it.
	Arguments string `json:"arguments"`
}

// Envelope is the members that open every streamed chunk (and the legacy
// completion body, which has a chunk's shape), in OpenAI's order.
type Envelope struct {
	// ID is the request id (also the X-Request-Id header).
	ID string `json:"id"`
	// Object is "chat.completion.chunk" or "text_completion".
	Object string `json:"object"`
	// Created is in unix seconds.
	Created int64  `json:"created"`
	Model   string `json:"model"`
	// SystemFingerprint is always null.
	SystemFingerprint json.RawMessage `json:"system_fingerprint"`
}

// ChatChunk is one chat.completion.chunk event of a streamed chat
// completion.
type ChatChunk struct {
	Envelope
	Choices []ChunkChoice `json:"choices"`
	// Usage is absent unless stream_options.include_usage was set; then
	// it is null on every chunk but the last, which has no choices.
	Usage StreamUsage `json:"usage,omitzero"`
}

// ChunkChoice is one choice's piece of a ChatChunk.
type ChunkChoice struct {
	Index    int           `json:"index"`
	Delta    ChunkDelta    `json:"delta"`
	Logprobs *ChatLogprobs `json:"logprobs"`
	// FinishReason is null until the choice's last chunk.
	FinishReason *string `json:"finish_reason"`
}

// ChunkDelta is what a chunk adds to the message.
type ChunkDelta struct {
	// Role is "assistant" on the first chunk of a choice.
	Role    string          `json:"role,omitempty"`
	Content *string         `json:"content,omitempty"`
	Refusal json.RawMessage `json:"refusal,omitempty"`
	// ToolCalls are pieces of tool calls: the first piece of each call
	// has its index, id, type and name, the next ones the index and a
	// fragment of its arguments, which clients join.
	ToolCalls []ToolCallDelta `json:"tool_calls,omitempty"`
}

// Text is the delta's content, "" when absent.
func (d ChunkDelta) Text() string {
	if d.Content == nil {
		return ""
	}
	return *d.Content
}

// ToolCallDelta is a streamed piece of a tool call.
type ToolCallDelta struct {
	Index    int               `json:"index"`
	ID       string            `json:"id,omitempty"`
	Type     string            `json:"type,omitempty"`
	Function ToolFunctionDelta `json:"function"`
}

// ToolFunctionDelta is a streamed piece of a ToolFunction.
type ToolFunctionDelta struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

// ChatLogprobs is choices[].logprobs of the chat API.
type ChatLogprobs struct {
	Content []ChatTokenLogprob `json:"content"`
	// Refusal is always null.
	Refusal json.RawMessage `json:"refusal"`
}

// ChatTokenLogprob is one generated token's log-probability and the
// most likely alternatives.
type ChatTokenLogprob struct {
	Token   string  `json:"token"`
	Logprob float64 `json:"logprob"`
	// Bytes are the token's UTF-8 bytes as numbers, so that clients can
	// rebuild characters split across tokens.
	Bytes       []int            `json:"bytes"`
	TopLogprobs []ChatTopLogprob `json:"top_logprobs"`
}

// ChatTopLogprob is one alternative of a ChatTokenLogprob.
type ChatTopLogprob struct {
	Token   string  `json:"token"`
	Logprob float64 `json:"logprob"`
	Bytes   []int   `json:"bytes"`
}
