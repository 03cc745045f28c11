package openai

import (
	"encoding/json"
	"fmt"
	"regexp"

	"github.com/idlegrid/idlegrid/internal/gateway/api/jsonfield"
	"github.com/idlegrid/idlegrid/internal/gateway/api/schema"
	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// functionName is OpenAI's rule for function names.
var functionName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// parseTools reads tools, tool_choice and parallel_tool_calls into req.
// Without tools, tool_choice "none" and "auto" (which some clients always
// send) and parallel_tool_calls mean nothing and are dropped; the legacy
// functions / function_call are refused with the names to use instead.
func parseTools(o jsonfield.Object, req *protocol.Request) *apierr.Error {
	for _, key := range []string{"functions", "function_call"} {
		if o.NonEmpty(key) {
			return jsonfield.Invalid(jsonfield.CodeUnsupportedValue, key, "'%s' is deprecated and not supported on this network: use 'tools' and 'tool_choice'", key)
		}
	}
	if raw, ok := o.Get("tools"); ok {
		items, e := jsonfield.AsArray(raw, "tools")
		if e != nil {
			return e
		}
		if len(items) > protocol.MaxTools {
			return jsonfield.Invalid(jsonfield.CodeInvalidValue, "tools", "at most %d tools may be given, not %d", protocol.MaxTools, len(items))
		}
		for i, item := range items {
			t, e := parseTool(item, fmt.Sprintf("tools[%d]", i))
			if e != nil {
				return e
			}
			req.Tools = append(req.Tools, t)
		}
	}
	choice, name, e := parseToolChoice(o)
	if e != nil {
		return e
	}
	if len(req.Tools) == 0 {
		if choice == protocol.ToolChoiceRequired {
			return jsonfield.Invalid(jsonfield.CodeInvalidValue, "tool_choice", "tool_choice requires tools: none were given")
		}
		return nil
	}
	if name != "" && !hasTool(req.Tools, name) {
		return jsonfield.Invalid(jsonfield.CodeInvalidValue, "tool_choice.function.name", "tool_choice names function %q, which is not in tools", name)
	}
	req.ToolChoice, req.ToolChoiceFunction = choice, name
	if raw, ok := o.Get("parallel_tool_calls"); ok {
		b, e := jsonfield.AsBool(raw, "parallel_tool_calls")
		if e != nil {
			return e
		}
		req.ParallelToolCalls = &b
	}
	return nil
}

func hasTool(tools []protocol.Tool, name string) bool {
	for _, t := range tools {
		if t.Function.Name == name {
			return true
		}
	}
	return false
}

// parseTool reads one {"type":"function","function":{...}} entry.
func parseTool(raw json.RawMessage, param string) (protocol.Tool, *apierr.Error) {
	t := protocol.Tool{Type: "function"}
	o, e := jsonfield.AsObject(raw, param)
	if e != nil {
		return t, e
	}
	typ, e := requiredString(o, "type", param+".type")
	if e != nil {
		return t, e
	}
	if typ != "function" {
		return t, jsonfield.Invalid(jsonfield.CodeUnsupportedValue, param+".type", "tools of type %q are not supported: only \"function\" is", typ)
	}
	rawFn, ok := o.Get("function")
	if !ok {
		return t, jsonfield.Invalid(jsonfield.CodeMissing, param+".function", "missing required parameter: '%s.function'", param)
	}
	fn, e := jsonfield.AsObject(rawFn, param+".function")
	if e != nil {
		return t, e
	}
	if t.Function.Name, e = requiredString(fn, "name", param+".function.name"); e != nil {
		return t, e
	}
	if !functionName.MatchString(t.Function.Name) {
		return t, jsonfield.Invalid(jsonfield.CodeInvalidValue, param+".function.name", "invalid function name %q: use 1 to 64 letters, digits, underscores and dashes", t.Function.Name)
	}
	if t.Function.Description, e = fn.OptString("description", param+".function.description"); e != nil {
		return t, e
	}
	if rawParams, ok := fn.Get("parameters"); ok {
		if t.Function.Parameters, e = schema.Param(rawParams, param+".function.parameters"); e != nil {
			return t, e
		}
	}
	if _, e := fn.OptBool("strict", param+".function.strict", false); e != nil {
		return t, e
	}
	return t, nil
}

// parseToolChoice reads the chat API's tool_choice: "none", "auto",
// "required", or {"type":"function","function":{"name":…}}, which is
// returned as "required" with the name.
func parseToolChoice(o jsonfield.Object) (choice, name string, e *apierr.Error) {
	return parseToolChoiceWith(o, func(tc jsonfield.Object) (string, *apierr.Error) {
		rawFn, ok := tc.Get("function")
		if !ok {
			return "", jsonfield.Invalid(jsonfield.CodeMissing, "tool_choice.function", "missing required parameter: 'tool_choice.function'")
		}
		fn, e := jsonfield.AsObject(rawFn, "tool_choice.function")
		if e != nil {
			return "", e
		}
		return requiredString(fn, "name", "tool_choice.function.name")
	})
}

// parseToolChoiceWith reads tool_choice as both APIs write it: one of the
// strings "none", "auto", "required", or an object of type "function"
// whose name functionName reads (the two APIs nest it differently); a
// named function is returned as "required" with its name.
func parseToolChoiceWith(o jsonfield.Object, functionName func(jsonfield.Object) (string, *apierr.Error)) (choice, name string, e *apierr.Error) {
	raw, ok := o.Get("tool_choice")
	if !ok {
		return "", "", nil
	}
	if raw[0] == '"' {
		s, e := jsonfield.AsString(raw, "tool_choice")
		if e != nil {
			return "", "", e
		}
		switch s {
		case protocol.ToolChoiceNone, protocol.ToolChoiceAuto, protocol.ToolChoiceRequired:
			return s, "", nil
		}
		return "", "", jsonfield.Invalid(jsonfield.CodeInvalidValue, "tool_choice", "invalid value for 'tool_choice': %q is not one of none, auto, required", s)
	}
	tc, e := jsonfield.AsObject(raw, "tool_choice")
	if e != nil {
		return "", "", jsonfield.TypeError("tool_choice", "a string or an object", raw)
	}
	typ, e := requiredString(tc, "type", "tool_choice.type")
	if e != nil {
		return "", "", e
	}
	if typ != "function" {
		return "", "", jsonfield.Invalid(jsonfield.CodeUnsupportedValue, "tool_choice.type", "tool_choice of type %q is not supported on this network: only \"function\" is", typ)
	}
	if name, e = functionName(tc); e != nil {
		return "", "", e
	}
	return protocol.ToolChoiceRequired, name, nil
}

// parseToolCalls reads an assistant message's tool_calls.
func parseToolCalls(raw json.RawMessage, param string) ([]protocol.ToolCall, *apierr.Error) {
	items, e := jsonfield.AsArray(raw, param)
	if e != nil {
		return nil, e
	}
	calls := make([]protocol.ToolCall, 0, len(items))
	for i, item := range items {
		pp := fmt.Sprintf("%s[%d]", param, i)
		o, e := jsonfield.AsObject(item, pp)
		if e != nil {
			return nil, e
		}
		var tc protocol.ToolCall
		if tc.ID, e = requiredString(o, "id", pp+".id"); e != nil {
			return nil, e
		}
		if typ, e := o.OptString("type", pp+".type"); e != nil {
			return nil, e
		} else if typ != "" && typ != "function" {
			return nil, jsonfield.Invalid(jsonfield.CodeUnsupportedValue, pp+".type", "tool calls of type %q are not supported: only \"function\" is", typ)
		}
		rawFn, ok := o.Get("function")
		if !ok {
			return nil, jsonfield.Invalid(jsonfield.CodeMissing, pp+".function", "missing required parameter: '%s.function'", pp)
		}
		fn, e := jsonfield.AsObject(rawFn, pp+".function")
		if e != nil {
			return nil, e
		}
		if tc.Name, e = requiredString(fn, "name", pp+".function.name"); e != nil {
			return nil, e
		}
		if tc.Arguments, e = requiredString(fn, "arguments", pp+".function.arguments"); e != nil {
			return nil, e
		}
		if tc.Arguments == "" {
			tc.Arguments = "{}"
		}
		if err := tc.Validate(); err != nil {
			return nil, jsonfield.Invalid(jsonfield.CodeInvalidValue, pp+".function", "invalid tool call: %v", err)
		}
		calls = append(calls, tc)
	}
	return calls, nil
}

// parseResponseFormat maps response_format to Ollama's format: "text" is
// free text, "json_object" is `"json"`, "json_schema" is its schema
// (checked; without one, any JSON). strict is accepted: backends that
// take a schema constrain sampling to it anyway.
func parseResponseFormat(o jsonfield.Object, req *protocol.Request) *apierr.Error {
	raw, ok := o.Get("response_format")
	if !ok {
		return nil
	}
	rf, e := jsonfield.AsObject(raw, "response_format")
	if e != nil {
		return e
	}
	t, e := requiredString(rf, "type", "response_format.type")
	if e != nil {
		return e
	}
	switch t {
	case "text":
		return nil
	case "json_object":
		req.Format = json.RawMessage(`"json"`)
		return nil
	case "json_schema":
	default:
		return jsonfield.Invalid(jsonfield.CodeInvalidValue, "response_format.type", "invalid value for 'response_format.type': %q is not one of text, json_object, json_schema", t)
	}
	rawJS, ok := rf.Get("json_schema")
	if !ok {
		return jsonfield.Invalid(jsonfield.CodeMissing, "response_format.json_schema", "missing required parameter: 'response_format.json_schema'")
	}
	js, e := jsonfield.AsObject(rawJS, "response_format.json_schema")
	if e != nil {
		return e
	}
	name, e := requiredString(js, "name", "response_format.json_schema.name")
	if e != nil {
		return e
	}
	if !functionName.MatchString(name) {
		return jsonfield.Invalid(jsonfield.CodeInvalidValue, "response_format.json_schema.name", "invalid schema name %q: use 1 to 64 letters, digits, underscores and dashes", name)
	}
	if _, e := js.OptBool("strict", "response_format.json_schema.strict", false); e != nil {
		return e
	}
	if _, e := js.OptString("description", "response_format.json_schema.description"); e != nil {
		return e
	}
	rawSchema, ok := js.Get("schema")
	if !ok {
		req.Format = json.RawMessage(`"json"`)
		return nil
	}
	req.Format, e = schema.Param(rawSchema, "response_format.json_schema.schema")
	return e
}
