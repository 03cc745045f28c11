package openai

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/idlegrid/idlegrid/internal/gateway/api/jsonfield"
	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// ResponsesOptions are the members of a /v1/responses request that the
// response object echoes back, as OpenAI's does.
type ResponsesOptions struct {
	// Instructions is the system message; nil when the request had none
	// (echoed as null).
	Instructions *string
	// MaxOutputTokens is max_output_tokens; 0 when absent (null).
	MaxOutputTokens int
	// Metadata is the request's metadata, {} without one.
	Metadata map[string]string
	// ToolChoice is tool_choice as sent, "auto" by default.
	ToolChoice json.RawMessage
	// Tools are the function tools as the response echoes them.
	Tools []responseTool
	// Format is text.format as sent, {"type":"text"} by default.
	Format json.RawMessage
	// ParallelToolCalls is parallel_tool_calls (default true).
	ParallelToolCalls bool
	// Verbosity is text.verbosity (default "medium"), a hint to models
	// that know it.
	Verbosity string
	// Truncation is "disabled" or "auto"; the conversation is never
	// truncated by the gateway, so both mean the same here.
	Truncation string
	// PreviousResponseID continues a response the gateway kept: its
	// conversation goes before the input (Continue). "" for none.
	PreviousResponseID string
	// Store is whether the response is kept for a later
	// previous_response_id (store, default true); the gateway clears it
	// when it keeps no responses, and the response echoes it.
	Store bool
}

// Limits of the Responses API's metadata, as OpenAI documents them.
const (
	maxMetadataPairs    = 16
	maxMetadataKeyLen   = 64
	maxMetadataValueLen = 512
)

// codeUnsupportedParameter is OpenAI's code for a parameter the model or
// endpoint does not take.
const codeUnsupportedParameter = "unsupported_parameter"

func newResponsesOptions() *ResponsesOptions {
	return &ResponsesOptions{ToolChoice: json.RawMessage(`"auto"`), Tools: []responseTool{}, Format: json.RawMessage(`{"type":"text"}`),
		ParallelToolCalls: true, Verbosity: "medium", Truncation: "disabled", Metadata: map[string]string{}}
}

// includeLogprobs is the include value that asks for output_text logprobs.
const includeLogprobs = "message.output_text.logprobs"

// ParseResponses parses a /v1/responses body into Params: a KindChat
// request whose messages are instructions (as the system message) followed
// by input, and Params.Responses for the response object. Every error is a
// 400 whose Param names the offending member.
//
// Decisions where the Responses API is richer than the network:
//   - input is a string (one user message) or an array of message items,
//     whose content is a string or an array of input_text / output_text /
//     refusal parts (joined with "\n", as chat content parts are), and
//     function_call / function_call_output items, which become an
//     assistant turn's tool calls and tool messages; image, file and audio
//     parts, item references and reasoning items are refused;
//   - tools are function tools, mapped like the chat API's; built-in tools
//     are refused; text.format json_object / json_schema is structured
//     output, like the chat API's response_format;
//   - previous_response_id names a response the gateway kept (see
//     Continue); conversation, prompt and background: true name state
//     the gateway does not keep and are refused;
//   - include may ask for message.output_text.logprobs; other include
//     values name outputs (tool results, reasoning) the network never
//     produces and are ignored, as are reasoning, service_tier,
//     safety_identifier, prompt_cache_key, max_tool_calls and
//     stream_options;
//   - the chat API's seed, stop, max_tokens and provider members are
//     accepted as extensions, with the same meaning (max_output_tokens
//     wins over max_tokens).
func ParseResponses(body []byte) (Params, *apierr.Error) {
	o, p, e := parseRequest(body, protocol.KindChat)
	if e != nil {
		return p, e
	}
	// stream_options.include_usage is the chat API's: a response always
	// carries its usage.
	p.IncludeUsage = false
	r := newResponsesOptions()
	p.Responses = r
	opts := &p.Request.Options
	if n, ok, e := o.OptIntIn("max_output_tokens", "max_output_tokens", 1, maxTokensLimit); e != nil {
		return p, e
	} else if ok {
		opts.MaxTokens, r.MaxOutputTokens = int(n), int(n)
	}
	for _, check := range []func(jsonfield.Object) *apierr.Error{refuseKeptState, refuseBackground} {
		if e := check(o); e != nil {
			return p, e
		}
	}
	if e := parseResponseTools(o, &p.Request, r); e != nil {
		return p, e
	}
	if r.Store, e = o.OptBool("store", "store", true); e != nil {
		return p, e
	}
	if r.PreviousResponseID, e = o.OptString("previous_response_id", "previous_response_id"); e != nil {
		return p, e
	}
	if r.Verbosity, e = parseTextConfig(o, &p.Request, r); e != nil {
		return p, e
	}
	if r.Truncation, e = parseTruncation(o); e != nil {
		return p, e
	}
	if r.Metadata, e = parseMetadata(o); e != nil {
		return p, e
	}
	if e := parseResponseLogprobs(o, opts); e != nil {
		return p, e
	}
	if raw, ok := o.Get("instructions"); ok {
		s, e := jsonfield.AsString(raw, "instructions")
		if e != nil {
			return p, e
		}
		r.Instructions = &s
		p.Request.Messages = append(p.Request.Messages, protocol.ChatMessage{Role: "system", Content: s})
	}
	input, e := parseInput(o)
	if e != nil {
		return p, e
	}
	p.Request.Messages = append(p.Request.Messages, input...)
	return p, nil
}

// refuseKeptState refuses the members that name state kept on OpenAI's
// side: this gateway keeps no conversations or prompts, and answering
// without them would silently drop what they hold.
func refuseKeptState(o jsonfield.Object) *apierr.Error {
	for _, key := range []string{"conversation", "prompt"} {
		if o.NonEmpty(key) {
			return jsonfield.Invalid(codeUnsupportedParameter, key, "'%s' is not supported on this network: the gateway keeps no conversations or prompts; send the conversation in 'input' (or continue a response with previous_response_id)", key)
		}
	}
	return nil
}

// Continue puts history, the conversation of the response named by
// previous_response_id, between the instructions and the input.
func (p *Params) Continue(history []protocol.ChatMessage) {
	at := 0
	if p.Responses != nil && p.Responses.Instructions != nil {
		at = 1
	}
	msgs := make([]protocol.ChatMessage, 0, len(p.Request.Messages)+len(history))
	msgs = append(msgs, p.Request.Messages[:at]...)
	msgs = append(msgs, history...)
	p.Request.Messages = append(msgs, p.Request.Messages[at:]...)
	// Tool results in the input may answer calls of the kept turns.
	names := map[string]string{}
	for i, m := range p.Request.Messages {
		for _, tc := range m.ToolCalls {
			names[tc.ID] = tc.Name
		}
		if m.Role == "tool" && m.ToolName == "" {
			p.Request.Messages[i].ToolName = names[m.ToolCallID]
		}
	}
}

// Conversation is what a later previous_response_id continues: this
// request's messages and the answer with its tool calls, without the
// instructions, which OpenAI does not carry over to the next response.
func (p *Params) Conversation(answer string, calls []protocol.ToolCall) []protocol.ChatMessage {
	msgs := p.Request.Messages
	if p.Responses != nil && p.Responses.Instructions != nil {
		msgs = msgs[1:]
	}
	out := make([]protocol.ChatMessage, 0, len(msgs)+1)
	out = append(out, msgs...)
	return append(out, protocol.ChatMessage{Role: "assistant", Content: answer, ToolCalls: calls})
}

func refuseBackground(o jsonfield.Object) *apierr.Error {
	bg, e := o.OptBool("background", "background", false)
	if e != nil {
		return e
	}
	if bg {
		return jsonfield.Invalid(codeUnsupportedParameter, "background", "background responses are not supported on this network: the gateway keeps no responses to poll; send the request with background false (or omit it)")
	}
	return nil
}

// parseTextConfig reads text: format must be {"type":"text"}; verbosity
// is one of OpenAI's three levels.
func parseTextConfig(o jsonfield.Object, req *protocol.Request, r *ResponsesOptions) (string, *apierr.Error) {
	raw, ok := o.Get("text")
	if !ok {
		return "medium", nil
	}
	t, e := jsonfield.AsObject(raw, "text")
	if e != nil {
		return "", e
	}
	if raw, ok := t.Get("format"); ok {
		f, e := jsonfield.AsObject(raw, "text.format")
		if e != nil {
			return "", e
		}
		if e := parseTextFormat(f, req); e != nil {
			return "", e
		}
		r.Format = raw
	}
	v, e := t.OptString("verbosity", "text.verbosity")
	if e != nil {
		return "", e
	}
	switch v {
	case "":
		return "medium", nil
	case "low", "medium", "high":
		return v, nil
	}
	return "", jsonfield.Invalid(jsonfield.CodeInvalidValue, "text.verbosity", "invalid value for 'text.verbosity': %q is not one of low, medium, high", v)
}

func parseTruncation(o jsonfield.Object) (string, *apierr.Error) {
	t, e := o.OptString("truncation", "truncation")
	if e != nil {
		return "", e
	}
	switch t {
	case "":
		return "disabled", nil
	case "auto", "disabled":
		return t, nil
	}
	return "", jsonfield.Invalid(jsonfield.CodeInvalidValue, "truncation", "invalid value for 'truncation': %q is not one of auto, disabled", t)
}

// parseMetadata reads up to 16 string pairs, with OpenAI's length limits.
func parseMetadata(o jsonfield.Object) (map[string]string, *apierr.Error) {
	out := map[string]string{}
	raw, ok := o.Get("metadata")
	if !ok {
		return out, nil
	}
	m, e := jsonfield.AsObject(raw, "metadata")
	if e != nil {
		return nil, e
	}
	if len(m) > maxMetadataPairs {
		return nil, jsonfield.Invalid(jsonfield.CodeInvalidValue, "metadata", "invalid value for 'metadata': at most %d pairs are allowed, got %d", maxMetadataPairs, len(m))
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		raw := m[k]
		param := "metadata." + k
		if utf8.RuneCountInString(k) > maxMetadataKeyLen {
			return nil, jsonfield.Invalid(jsonfield.CodeInvalidValue, "metadata", "invalid value for 'metadata': keys are at most %d characters", maxMetadataKeyLen)
		}
		v, e := jsonfield.AsString(raw, param)
		if e != nil {
			return nil, e
		}
		if utf8.RuneCountInString(v) > maxMetadataValueLen {
			return nil, jsonfield.Invalid(jsonfield.CodeInvalidValue, param, "invalid value for '%s': values are at most %d characters", param, maxMetadataValueLen)
		}
		out[k] = v
	}
	return out, nil
}

// parseResponseLogprobs reads include and top_logprobs: log-probabilities
// are returned when include names message.output_text.logprobs or
// top_logprobs asks for alternatives.
func parseResponseLogprobs(o jsonfield.Object, opts *protocol.Options) *apierr.Error {
	if raw, ok := o.Get("include"); ok {
		items, e := jsonfield.AsArray(raw, "include")
		if e != nil {
			return e
		}
		for i, item := range items {
			s, e := jsonfield.AsString(item, fmt.Sprintf("include[%d]", i))
			if e != nil {
				return e
			}
			opts.Logprobs = opts.Logprobs || s == includeLogprobs
		}
	}
	n, _, e := o.OptIntIn("top_logprobs", "top_logprobs", 0, maxChatTopLogprobs)
	if e != nil {
		return e
	}
	opts.TopLogprobs = int(n)
	opts.Logprobs = opts.Logprobs || n > 0
	return nil
}

// parseInput reads input: a string is one user message.
func parseInput(o jsonfield.Object) ([]protocol.ChatMessage, *apierr.Error) {
	raw, ok := o.Get("input")
	if !ok {
		return nil, jsonfield.Invalid(jsonfield.CodeMissing, "input", "missing required parameter: 'input' (this gateway keeps no prompts to answer instead)")
	}
	if raw[0] == '"' {
		s, e := jsonfield.AsString(raw, "input")
		if e != nil {
			return nil, e
		}
		return []protocol.ChatMessage{{Role: "user", Content: s}}, nil
	}
	if raw[0] != '[' {
		return nil, jsonfield.TypeError("input", "a string or an array of input items", raw)
	}
	items, e := jsonfield.AsArray(raw, "input")
	if e != nil {
		return nil, e
	}
	if len(items) == 0 {
		return nil, jsonfield.Invalid(codeEmptyArray, "input", "invalid value for 'input': expected a string or an array with at least one item, but got an empty array")
	}
	msgs := make([]protocol.ChatMessage, 0, len(items))
	names := map[string]string{} // call id → function, for tool results
	for i, item := range items {
		param := fmt.Sprintf("input[%d]", i)
		o, e := jsonfield.AsObject(item, param)
		if e != nil {
			return nil, e
		}
		typ, e := o.OptString("type", param+".type")
		if e != nil {
			return nil, e
		}
		switch typ {
		case "function_call":
			// Calls of one turn join the assistant message before them,
			// as tool_calls do in the chat API.
			tc, e := parseFunctionCall(o, param)
			if e != nil {
				return nil, e
			}
			names[tc.ID] = tc.Name
			if n := len(msgs); n > 0 && msgs[n-1].Role == "assistant" {
				msgs[n-1].ToolCalls = append(msgs[n-1].ToolCalls, tc)
				continue
			}
			msgs = append(msgs, protocol.ChatMessage{Role: "assistant", ToolCalls: []protocol.ToolCall{tc}})
		case "function_call_output":
			m, e := parseFunctionCallOutput(o, param, names)
			if e != nil {
				return nil, e
			}
			msgs = append(msgs, m)
		default:
			m, e := parseInputItem(o, typ, param)
			if e != nil {
				return nil, e
			}
			msgs = append(msgs, m)
		}
	}
	return msgs, nil
}

// parseInputItem reads one item of input. Only messages are accepted: an
// item without a type is a message, as in OpenAI's "easy input message".
func parseInputItem(o jsonfield.Object, typ, param string) (protocol.ChatMessage, *apierr.Error) {
	var m protocol.ChatMessage
	switch typ {
	case "", "message":
	case "item_reference":
		return m, jsonfield.Invalid(jsonfield.CodeUnsupportedValue, param+".type", "item references are not supported on this network: the gateway keeps no responses; send the item itself")
	default:
		return m, jsonfield.Invalid(jsonfield.CodeUnsupportedValue, param+".type", "input items of type %q are not supported on this network: only messages are", typ)
	}
	role, e := requiredString(o, "role", param+".role")
	if e != nil {
		return m, e
	}
	var ok bool
	if m.Role, ok = chatRole(role); !ok {
		return m, jsonfield.Invalid(jsonfield.CodeInvalidValue, param+".role", "invalid value for '%s.role': %q is not one of user, assistant, system, developer", param, role)
	}
	rawContent, ok := o.Get("content")
	if !ok {
		return m, jsonfield.Invalid(jsonfield.CodeMissing, param+".content", "missing required parameter: '%s.content'", param)
	}
	m.Content, e = parseInputContent(rawContent, param+".content")
	return m, e
}

// parseInputContent accepts a string or an array of text parts: input_text
// in what the consumer wrote, output_text and refusal in assistant turns
// from earlier responses.
func parseInputContent(raw json.RawMessage, param string) (string, *apierr.Error) {
	if raw[0] == '"' {
		return jsonfield.AsString(raw, param)
	}
	if raw[0] != '[' {
		return "", jsonfield.TypeError(param, "a string or an array of content parts", raw)
	}
	parts, e := jsonfield.AsArray(raw, param)
	if e != nil {
		return "", e
	}
	texts := make([]string, 0, len(parts))
	for i, part := range parts {
		pp := fmt.Sprintf("%s[%d]", param, i)
		po, e := jsonfield.AsObject(part, pp)
		if e != nil {
			return "", e
		}
		t, e := requiredString(po, "type", pp+".type")
		if e != nil {
			return "", e
		}
		key := "text"
		switch t {
		case "input_text", "output_text":
		case "refusal":
			key = "refusal"
		default:
			return "", jsonfield.Invalid(jsonfield.CodeUnsupportedValue, pp+".type", "content parts of type %q are not supported on /v1/responses on this network: only input_text, output_text and refusal parts are", t)
		}
		text, e := requiredString(po, key, pp+"."+key)
		if e != nil {
			return "", e
		}
		texts = append(texts, text)
	}
	return strings.Join(texts, "\n"), nil
}
