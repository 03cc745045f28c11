// Package openai translates the OpenAI-compatible consumer API
// (/v1/chat/completions, /v1/completions, /v1/models) to and from idlegrid's
// one internal request type and typed event stream: ParseChat and
// ParseCompletion turn a request body into a protocol.Request, and
// NewChatSink and NewCompletionSink write a sink.Sink's events in OpenAI's
// wire format, streaming (server-sent events) or not. The gateway core owns
// authentication, model lookup, scheduling and the relay; this package owns
// only the format, so that unmodified OpenAI clients (openai-go,
// openai-python, LangChain, …) work against the gateway.
package openai

import (
	"fmt"

	"github.com/idlegrid/idlegrid/internal/gateway/api/apitypes"
	"github.com/idlegrid/idlegrid/internal/gateway/api/jsonfield"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/scheduler"
)

// Params is a parsed OpenAI request: the internal request plus the
// response-shape choices that only the sink needs.
type Params struct {
	// Request is what providers run.
	Request protocol.Request
	// Stream selects server-sent events instead of one JSON body.
	Stream bool
	// N is n, how many choices to generate, when above 1 (up to
	// MaxChoices; chat only), and 0 for one choice: each choice is a job of
	// its own (NewChatChoices).
	N int
	// IncludeUsage (stream_options.include_usage, streaming only) adds a
	// last chunk with token usage, and "usage":null on every other chunk.
	IncludeUsage bool
	// User is the consumer's end-user identifier. It does not affect
	// generation; the gateway uses it as a session for affinity when the
	// request has no X-Session-Id header.
	User string
	// Provider holds the routing preferences of the "provider" member.
	Provider scheduler.Preferences
	// ProviderObject is that member's object as sent (nil without one),
	// for laying it over an API key's defaults (WithDefaults).
	ProviderObject jsonfield.Object
	// Responses holds what a /v1/responses response echoes of its
	// request; nil on the other endpoints.
	Responses *ResponsesOptions
}

// MaxChoices bounds n: each choice is a job with its own reservation and
// receipt, so one request may not fan out without limit.
const MaxChoices = 8

// Limits OpenAI documents for its own API; enforcing them here keeps
// clients' expectations (and errors) the same on idlegrid.
const (
	maxStopSequences   = 4
	maxChatTopLogprobs = 20
	// maxLegacyLogprobs is the cap of /v1/completions' integer logprobs.
	maxLegacyLogprobs = 5
	// maxTokensLimit bounds max_tokens so that the gateway's price
	// reservation (tokens × price) cannot overflow; no model has a context
	// anywhere near it.
	maxTokensLimit = 1<<31 - 1
)

// Error codes specific to the OpenAI API, in the "code" member of 400
// responses; jsonfield has the ones both APIs use.
const (
	codeEmptyArray = "empty_array"
)

// finishReason defaults an empty reason to "stop": OpenAI clients treat a
// null finish_reason on the last chunk as a stream that never ended.
func finishReason(r string) string {
	if r == "" {
		return "stop"
	}
	return r
}

func newUsage(u protocol.Usage) apitypes.Usage {
	return apitypes.Usage{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, TotalTokens: u.PromptTokens + u.CompletionTokens}
}

// outOfOrder reports a relay that broke the Begin → Delta* → End|Fail order;
// returning it makes the relay cancel the job instead of sending garbage.
func outOfOrder(call string) error {
	return fmt.Errorf("openai sink: %s called out of order", call)
}
