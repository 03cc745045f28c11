package openai

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// ParseChat parses a /v1/chat/completions body into Params. Every error is
// a 400 whose Param names the offending member, as OpenAI's does.
//
// Decisions where OpenAI's API is richer than the network:
//   - role "developer" becomes "system"; roles "tool" and "function", tool
//     calls in assistant messages, and non-empty tools / functions /
//     tool_choice other than "none" or "auto" are refused, because
//     providers cannot call tools yet and silently dropping them would
//     change what the conversation means;
//   - content may be a string or an array of text parts, joined with "\n"
//     (as vLLM does); image, audio and file parts are refused;
//   - response_format must be absent or {"type":"text"};
//   - n must be 1; top_logprobs > 0 requires logprobs: true.
func ParseChat(body []byte) (Params, *apierr.Error) {
	var p Params
	o, e := decodeBody(body)
	if e != nil {
		return p, e
	}
	p.Request.Kind = protocol.KindChat
	if e := parseCommon(o, &p); e != nil {
		return p, e
	}
	if e := parseMaxCompletionTokens(o, &p.Request.Options); e != nil {
		return p, e
	}
	if e := parseChatLogprobs(o, &p.Request.Options); e != nil {
		return p, e
	}
	if e := refuseTools(o); e != nil {
		return p, e
	}
	if e := parseResponseFormat(o); e != nil {
		return p, e
	}
	if p.Request.Messages, e = parseMessages(o); e != nil {
		return p, e
	}
	return p, nil
}

func parseChatLogprobs(o object, opts *protocol.Options) *apierr.Error {
	var e *apierr.Error
	if opts.Logprobs, e = o.optBool("logprobs"); e != nil {
		return e
	}
	n, ok, e := o.optIntIn("top_logprobs", 0, maxChatTopLogprobs)
	if e != nil {
		return e
	}
	// top_logprobs: 0 asks for nothing, so it is accepted without logprobs.
	if ok && n > 0 && !opts.Logprobs {
		return invalid(codeInvalidValue, "top_logprobs", "top_logprobs requires logprobs to be true")
	}
	opts.TopLogprobs = int(n)
	return nil
}

func toolsError(param string) *apierr.Error {
	return invalid(codeUnsupportedTool, param, "tool calling is not supported yet on this network: remove '%s' from the request", param)
}

// refuseTools rejects requests that use tool or function calling; empty
// lists and the choices "none"/"auto" (which some clients always send) mean
// no tools and pass.
func refuseTools(o object) *apierr.Error {
	for _, key := range []string{"tools", "functions"} {
		if o.nonEmpty(key) {
			return toolsError(key)
		}
	}
	for _, key := range []string{"tool_choice", "function_call"} {
		raw, ok := o.get(key)
		if !ok {
			continue
		}
		var s string
		if json.Unmarshal(raw, &s) == nil && (s == "none" || s == "auto") {
			continue
		}
		return toolsError(key)
	}
	return nil
}

func parseResponseFormat(o object) *apierr.Error {
	raw, ok := o.get("response_format")
	if !ok {
		return nil
	}
	rf, e := asObject(raw, "response_format")
	if e != nil {
		return e
	}
	rawType, ok := rf.get("type")
	if !ok {
		return invalid(codeMissing, "response_format.type", "missing required parameter: 'response_format.type'")
	}
	t, e := asString(rawType, "response_format.type")
	if e != nil {
		return e
	}
	if t != "text" {
		return invalid(codeUnsupportedVal, "response_format.type", "response_format type %q is not supported yet on this network: only \"text\" is", t)
	}
	return nil
}

// chatRole maps accepted OpenAI roles to the internal ones.
func chatRole(role string) (string, bool) {
	switch role {
	case "system", "developer":
		// Backends know no "developer" role; it is OpenAI's new name for
		// system instructions.
		return "system", true
	case "user", "assistant":
		return role, true
	}
	return "", false
}

func parseMessages(o object) ([]protocol.ChatMessage, *apierr.Error) {
	raw, ok := o.get("messages")
	if !ok {
		return nil, invalid(codeMissing, "messages", "you must provide a messages parameter")
	}
	items, e := asArray(raw, "messages")
	if e != nil {
		return nil, e
	}
	if len(items) == 0 {
		return nil, invalid(codeEmptyArray, "messages", "invalid value for 'messages': expected an array with at least one message, but got an empty array")
	}
	msgs := make([]protocol.ChatMessage, 0, len(items))
	for i, item := range items {
		m, e := parseMessage(item, fmt.Sprintf("messages[%d]", i))
		if e != nil {
			return nil, e
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

func parseMessage(raw json.RawMessage, param string) (protocol.ChatMessage, *apierr.Error) {
	var m protocol.ChatMessage
	o, e := asObject(raw, param)
	if e != nil {
		return m, e
	}
	rawRole, ok := o.get("role")
	if !ok {
		return m, invalid(codeMissing, param+".role", "missing required parameter: '%s.role'", param)
	}
	role, e := asString(rawRole, param+".role")
	if e != nil {
		return m, e
	}
	switch role {
	case "tool", "function":
		return m, invalid(codeUnsupportedTool, param+".role", "tool calling is not supported yet on this network: messages with role %q cannot be sent", role)
	}
	if m.Role, ok = chatRole(role); !ok {
		return m, invalid(codeInvalidValue, param+".role", "invalid value for '%s.role': %q is not one of system, developer, user, assistant", param, role)
	}
	if o.nonEmpty("tool_calls") {
		return m, toolsError(param + ".tool_calls")
	}
	if o.nonEmpty("function_call") {
		return m, toolsError(param + ".function_call")
	}
	if rawContent, ok := o.get("content"); ok {
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
		return asString(raw, param)
	}
	if raw[0] != '[' {
		return "", typeError(param, "a string or an array of content parts", raw)
	}
	parts, e := asArray(raw, param)
	if e != nil {
		return "", e
	}
	texts := make([]string, 0, len(parts))
	for i, part := range parts {
		pp := fmt.Sprintf("%s[%d]", param, i)
		po, e := asObject(part, pp)
		if e != nil {
			return "", e
		}
		rawType, ok := po.get("type")
		if !ok {
			return "", invalid(codeMissing, pp+".type", "missing required parameter: '%s.type'", pp)
		}
		t, e := asString(rawType, pp+".type")
		if e != nil {
			return "", e
		}
		if t != "text" {
			return "", invalid(codeUnsupportedVal, pp, "content parts of type %q are not supported on this network: only text parts are", t)
		}
		rawText, ok := po.get("text")
		if !ok {
			return "", invalid(codeMissing, pp+".text", "missing required parameter: '%s.text'", pp)
		}
		text, e := asString(rawText, pp+".text")
		if e != nil {
			return "", e
		}
		texts = append(texts, text)
	}
	return strings.Join(texts, "\n"), nil
}
