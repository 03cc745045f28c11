package openai

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/idlegrid/idlegrid/internal/gateway/api/jsonfield"
	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// ParseChat parses a /v1/chat/completions body into Params. Every error is
// a 400 whose Param names the offending member, as OpenAI's does.
//
// Decisions where OpenAI's API is richer than the network:
//   - role "developer" becomes "system"; tools are function tools
//     (tools.go), tool messages must name the call they answer, and the
//     legacy functions / function_call and role "function" are refused;
//   - content may be a string or an array of text parts, joined with "\n"
//     (as vLLM does); image, audio and file parts are refused;
//   - response_format text, json_object or json_schema (tools.go);
//   - n must be 1; top_logprobs > 0 requires logprobs: true.
func ParseChat(body []byte) (Params, *apierr.Error) {
	o, p, e := parseRequest(body, protocol.KindChat)
	if e != nil {
		return p, e
	}
	if e := parseMaxCompletionTokens(o, &p.Request.Options); e != nil {
		return p, e
	}
	if e := parseChatLogprobs(o, &p.Request.Options); e != nil {
		return p, e
	}
	if e := parseTools(o, &p.Request); e != nil {
		return p, e
	}
	if e := parseResponseFormat(o, &p.Request); e != nil {
		return p, e
	}
	if p.Request.Messages, e = parseMessages(o); e != nil {
		return p, e
	}
	return p, nil
}

func parseChatLogprobs(o jsonfield.Object, opts *protocol.Options) *apierr.Error {
	var e *apierr.Error
	if opts.Logprobs, e = o.OptBool("logprobs", "logprobs", false); e != nil {
		return e
	}
	n, ok, e := o.OptIntIn("top_logprobs", "top_logprobs", 0, maxChatTopLogprobs)
	if e != nil {
		return e
	}
	// top_logprobs: 0 asks for nothing, so it is accepted without logprobs.
	if ok && n > 0 && !opts.Logprobs {
		return jsonfield.Invalid(jsonfield.CodeInvalidValue, "top_logprobs", "top_logprobs requires logprobs to be true")
	}
	opts.TopLogprobs = int(n)
	return nil
}

// requiredString reads a string member that must be present (not null),
// with OpenAI's error when it is missing.
func requiredString(o jsonfield.Object, key, param string) (string, *apierr.Error) {
	raw, ok := o.Get(key)
	if !ok {
		return "", jsonfield.Invalid(jsonfield.CodeMissing, param, "missing required parameter: '%s'", param)
	}
	return jsonfield.AsString(raw, param)
}

// chatRole maps accepted OpenAI roles to the internal ones.
func chatRole(role string) (string, bool) {
	switch role {
	case "system", "developer":
		// Backends know no "developer" role; it is OpenAI's new name for
		// system instructions.
		return "system", true
	case "user", "assistant", "tool":
		return role, true
	}
	return "", false
}

func parseMessages(o jsonfield.Object) ([]protocol.ChatMessage, *apierr.Error) {
	raw, ok := o.Get("messages")
	if !ok {
		return nil, jsonfield.Invalid(jsonfield.CodeMissing, "messages", "you must provide a messages parameter")
	}
	items, e := jsonfield.AsArray(raw, "messages")
	if e != nil {
		return nil, e
	}
	if len(items) == 0 {
		return nil, jsonfield.Invalid(codeEmptyArray, "messages", "invalid value for 'messages': expected an array with at least one message, but got an empty array")
	}
	msgs := make([]protocol.ChatMessage, 0, len(items))
	for i, item := range items {
		m, e := parseMessage(item, fmt.Sprintf("messages[%d]", i))
		if e != nil {
			return nil, e
		}
		if m.Role == "tool" {
			// Ollama's templates name the function a result came from.
			m.ToolName = calledName(msgs, m.ToolCallID)
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// calledName is the function of the call with id among msgs' tool calls,
// "" when none has it.
func calledName(msgs []protocol.ChatMessage, id string) string {
	for i := len(msgs) - 1; i >= 0; i-- {
		for _, tc := range msgs[i].ToolCalls {
			if tc.ID == id {
				return tc.Name
			}
		}
	}
	return ""
}

func parseMessage(raw json.RawMessage, param string) (protocol.ChatMessage, *apierr.Error) {
	var m protocol.ChatMessage
	o, e := jsonfield.AsObject(raw, param)
	if e != nil {
		return m, e
	}
	role, e := requiredString(o, "role", param+".role")
	if e != nil {
		return m, e
	}
	var ok bool
	if m.Role, ok = chatRole(role); !ok {
		if role == "function" {
			return m, jsonfield.Invalid(jsonfield.CodeUnsupportedValue, param+".role", "messages with the deprecated role \"function\" are not supported on this network: use role \"tool\"")
		}
		return m, jsonfield.Invalid(jsonfield.CodeInvalidValue, param+".role", "invalid value for '%s.role': %q is not one of system, developer, user, assistant, tool", param, role)
	}
	if o.NonEmpty("function_call") {
		return m, jsonfield.Invalid(jsonfield.CodeUnsupportedValue, param+".function_call", "'function_call' is deprecated and not supported on this network: use 'tool_calls'")
	}
	if rawCalls, ok := o.Get("tool_calls"); ok && o.NonEmpty("tool_calls") {
		if m.Role != "assistant" {
			return m, jsonfield.Invalid(jsonfield.CodeInvalidValue, param+".tool_calls", "only assistant messages may have tool_calls")
		}
		if m.ToolCalls, e = parseToolCalls(rawCalls, param+".tool_calls"); e != nil {
			return m, e
		}
		if len(m.ToolCalls) == 0 {
			m.ToolCalls = nil
		}
	}
	if m.Role == "tool" {
		if m.ToolCallID, e = requiredString(o, "tool_call_id", param+".tool_call_id"); e != nil {
			return m, e
		}
	}
	if rawContent, ok := o.Get("content"); ok {
		if m.Content, e = parseContent(rawContent, param+".content"); e != nil {
			return m, e
		}
	}
	return m, nil
}

// parseContent accepts a string or an array of text parts. Absent or null
// content is empty text (assistant turns may have none).
func parseContent(raw json.RawMessage, param string) (string, *apierr.Error) {
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
		if t != "text" {
			return "", jsonfield.Invalid(jsonfield.CodeUnsupportedValue, pp, "content parts of type %q are not supported on this network: only text parts are", t)
		}
		text, e := requiredString(po, "text", pp+".text")
		if e != nil {
			return "", e
		}
		texts = append(texts, text)
	}
	return strings.Join(texts, "\n"), nil
}
