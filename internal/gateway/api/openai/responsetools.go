package openai

import (
	"encoding/json"
	"fmt"

	"github.com/idlegrid/idlegrid/internal/gateway/api/jsonfield"
	"github.com/idlegrid/idlegrid/internal/gateway/api/schema"
	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// responseTool is a function tool as the Responses API writes it: flat,
// not nested under "function" as in the chat API. The response echoes the
// request's tools in this shape.
type responseTool struct {
	Type        string          `json:"type"`
	Name        string          `json:"name"`
	Description *string         `json:"description"`
	Parameters  json.RawMessage `json:"parameters"`
	Strict      bool            `json:"strict"`
}

// parseResponseTools reads tools, tool_choice and parallel_tool_calls into
// req and the echo r. Only function tools exist on the network; built-in
// tools (web_search, file_search, …) are refused.
func parseResponseTools(o jsonfield.Object, req *protocol.Request, r *ResponsesOptions) *apierr.Error {
	if raw, ok := o.Get("tools"); ok {
		items, e := jsonfield.AsArray(raw, "tools")
		if e != nil {
			return e
		}
		if len(items) > protocol.MaxTools {
			return jsonfield.Invalid(jsonfield.CodeInvalidValue, "tools", "at most %d tools may be given, not %d", protocol.MaxTools, len(items))
		}
		for i, item := range items {
			t, echo, e := parseResponseTool(item, fmt.Sprintf("tools[%d]", i))
			if e != nil {
				return e
			}
			req.Tools = append(req.Tools, t)
			r.Tools = append(r.Tools, echo)
		}
	}
	choice, name, e := parseResponseToolChoice(o)
	if e != nil {
		return e
	}
	if choice == protocol.ToolChoiceRequired && len(req.Tools) == 0 {
		return jsonfield.Invalid(jsonfield.CodeInvalidValue, "tool_choice", "tool_choice requires tools: none were given")
	}
	if name != "" && !hasTool(req.Tools, name) {
		return jsonfield.Invalid(jsonfield.CodeInvalidValue, "tool_choice.name", "tool_choice names function %q, which is not in tools", name)
	}
	if raw, ok := o.Get("tool_choice"); ok {
		r.ToolChoice = raw
	}
	if r.ParallelToolCalls, e = o.OptBool("parallel_tool_calls", "parallel_tool_calls", true); e != nil {
		return e
	}
	if len(req.Tools) == 0 {
		return nil
	}
	req.ToolChoice, req.ToolChoiceFunction = choice, name
	if _, ok := o.Get("parallel_tool_calls"); ok {
		req.ParallelToolCalls = &r.ParallelToolCalls
	}
	return nil
}

// parseResponseTool reads one {"type":"function","name",…} entry.
func parseResponseTool(raw json.RawMessage, param string) (protocol.Tool, responseTool, *apierr.Error) {
	t := protocol.Tool{Type: "function"}
	echo := responseTool{Type: "function"}
	o, e := jsonfield.AsObject(raw, param)
	if e != nil {
		return t, echo, e
	}
	typ, e := requiredString(o, "type", param+".type")
	if e != nil {
		return t, echo, e
	}
	if typ != "function" {
		return t, echo, jsonfield.Invalid(jsonfield.CodeUnsupportedValue, param+".type", "the built-in tool %q is not available on this network: only function tools are", typ)
	}
	if t.Function.Name, e = requiredString(o, "name", param+".name"); e != nil {
		return t, echo, e
	}
	if !functionName.MatchString(t.Function.Name) {
		return t, echo, jsonfield.Invalid(jsonfield.CodeInvalidValue, param+".name", "invalid function name %q: use 1 to 64 letters, digits, underscores and dashes", t.Function.Name)
	}
	if t.Function.Description, e = o.OptString("description", param+".description"); e != nil {
		return t, echo, e
	}
	if rawParams, ok := o.Get("parameters"); ok {
		if t.Function.Parameters, e = schema.Param(rawParams, param+".parameters"); e != nil {
			return t, echo, e
		}
	}
	if echo.Strict, e = o.OptBool("strict", param+".strict", true); e != nil {
		return t, echo, e
	}
	echo.Name, echo.Parameters = t.Function.Name, t.Function.Parameters
	if t.Function.Description != "" {
		echo.Description = &t.Function.Description
	}
	if echo.Parameters == nil {
		echo.Parameters = json.RawMessage(jsonNull)
	}
	return t, echo, nil
}

// parseResponseToolChoice reads tool_choice: "none", "auto", "required",
// or {"type":"function","name":…}, returned as "required" with the name.
func parseResponseToolChoice(o jsonfield.Object) (choice, name string, e *apierr.Error) {
	return parseToolChoiceWith(o, func(tc jsonfield.Object) (string, *apierr.Error) {
		return requiredString(tc, "name", "tool_choice.name")
	})
}

// parseTextFormat maps text.format to Ollama's format, as
// parseResponseFormat does for the chat API: "json_object" is `"json"`,
// "json_schema" its (checked) schema, flat in the Responses API.
func parseTextFormat(f jsonfield.Object, req *protocol.Request) *apierr.Error {
	typ, e := requiredString(f, "type", "text.format.type")
	if e != nil {
		return e
	}
	switch typ {
	case "text":
		return nil
	case "json_object":
		req.Format = json.RawMessage(`"json"`)
		return nil
	case "json_schema":
	default:
		return jsonfield.Invalid(jsonfield.CodeInvalidValue, "text.format.type", "invalid value for 'text.format.type': %q is not one of text, json_object, json_schema", typ)
	}
	name, e := requiredString(f, "name", "text.format.name")
	if e != nil {
		return e
	}
	if !functionName.MatchString(name) {
		return jsonfield.Invalid(jsonfield.CodeInvalidValue, "text.format.name", "invalid schema name %q: use 1 to 64 letters, digits, underscores and dashes", name)
	}
	if _, e := f.OptBool("strict", "text.format.strict", false); e != nil {
		return e
	}
	if _, e := f.OptString("description", "text.format.description"); e != nil {
		return e
	}
	rawSchema, ok := f.Get("schema")
	if !ok {
		return jsonfield.Invalid(jsonfield.CodeMissing, "text.format.schema", "missing required parameter: 'text.format.schema'")
	}
	req.Format, e = schema.Param(rawSchema, "text.format.schema")
	return e
}

// parseFunctionCall reads a function_call input item: a call an earlier
// response made.
func parseFunctionCall(o jsonfield.Object, param string) (protocol.ToolCall, *apierr.Error) {
	var tc protocol.ToolCall
	var e *apierr.Error
	if tc.ID, e = requiredString(o, "call_id", param+".call_id"); e != nil {
		return tc, e
	}
	if tc.Name, e = requiredString(o, "name", param+".name"); e != nil {
		return tc, e
	}
	if tc.Arguments, e = requiredString(o, "arguments", param+".arguments"); e != nil {
		return tc, e
	}
	if tc.Arguments == "" {
		tc.Arguments = "{}"
	}
	if err := tc.Validate(); err != nil {
		return tc, jsonfield.Invalid(jsonfield.CodeInvalidValue, param, "invalid function call: %v", err)
	}
	return tc, nil
}

// parseFunctionCallOutput reads a function_call_output input item: a
// tool's result, named by the call it answers (whose function must have
// been called earlier in input, so that Ollama gets its name).
func parseFunctionCallOutput(o jsonfield.Object, param string, names map[string]string) (protocol.ChatMessage, *apierr.Error) {
	m := protocol.ChatMessage{Role: "tool"}
	var e *apierr.Error
	if m.ToolCallID, e = requiredString(o, "call_id", param+".call_id"); e != nil {
		return m, e
	}
	raw, ok := o.Get("output")
	if !ok {
		return m, jsonfield.Invalid(jsonfield.CodeMissing, param+".output", "missing required parameter: '%s.output'", param)
	}
	if m.Content, e = parseInputContent(raw, param+".output"); e != nil {
		return m, e
	}
	m.ToolName = names[m.ToolCallID]
	return m, nil
}
