package ollama

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/idlegrid/idlegrid/internal/gateway/api/jsonfield"
	"github.com/idlegrid/idlegrid/internal/gateway/api/schema"
	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// parseTools reads /api/chat's tools: function tools in OpenAI's shape,
// with schemas checked as on the OpenAI API. Ollama has no tool_choice:
// the model decides.
func parseTools(o jsonfield.Object) ([]protocol.Tool, *apierr.Error) {
	raw, ok := o.Get("tools")
	if !ok {
		return nil, nil
	}
	items, e := jsonfield.AsArray(raw, "tools")
	if e != nil {
		return nil, e
	}
	if len(items) > protocol.MaxTools {
		return nil, jsonfield.Invalid(jsonfield.CodeInvalidValue, "tools", "at most %d tools may be given, not %d", protocol.MaxTools, len(items))
	}
	var tools []protocol.Tool
	for i, item := range items {
		param := fmt.Sprintf("tools[%d]", i)
		to, e := jsonfield.AsObject(item, param)
		if e != nil {
			return nil, e
		}
		if typ, e := to.OptString("type", param+".type"); e != nil {
			return nil, e
		} else if typ != "" && typ != "function" {
			return nil, jsonfield.Invalid(jsonfield.CodeUnsupportedValue, param+".type", "tools of type %q are not supported: only \"function\" is", typ)
		}
		rawFn, ok := to.Get("function")
		if !ok {
			return nil, jsonfield.Invalid(jsonfield.CodeMissing, param+".function", "%s.function is required", param)
		}
		fn, e := jsonfield.AsObject(rawFn, param+".function")
		if e != nil {
			return nil, e
		}
		t := protocol.Tool{Type: "function"}
		if t.Function.Name, e = fn.OptString("name", param+".function.name"); e != nil {
			return nil, e
		}
		if t.Function.Name == "" || len(t.Function.Name) > protocol.MaxNameLen {
			return nil, jsonfield.Invalid(jsonfield.CodeInvalidValue, param+".function.name", "%s.function.name must be 1 to %d bytes", param, protocol.MaxNameLen)
		}
		if t.Function.Description, e = fn.OptString("description", param+".function.description"); e != nil {
			return nil, e
		}
		if rawParams, ok := fn.Get("parameters"); ok {
			if t.Function.Parameters, e = schema.Param(rawParams, param+".function.parameters"); e != nil {
				return nil, e
			}
		}
		tools = append(tools, t)
	}
	return tools, nil
}

// parseFormat reads format: "" (free text), "json", or a JSON Schema.
func parseFormat(raw json.RawMessage) (json.RawMessage, *apierr.Error) {
	switch string(raw) {
	case `""`:
		return nil, nil
	case `"json"`:
		return raw, nil
	}
	if raw[0] != '{' {
		return nil, jsonfield.Invalid(jsonfield.CodeInvalidValue, "format", "invalid format %s: use \"json\" or a JSON schema object", truncate(raw))
	}
	return schema.Param(raw, "format")
}

// parseToolCalls reads an assistant message's tool_calls: each with a
// function name and arguments object (absent arguments are {}).
func parseToolCalls(raw json.RawMessage, param string) ([]protocol.ToolCall, *apierr.Error) {
	items, e := jsonfield.AsArray(raw, param)
	if e != nil {
		return nil, e
	}
	var calls []protocol.ToolCall
	for i, item := range items {
		pp := fmt.Sprintf("%s[%d]", param, i)
		co, e := jsonfield.AsObject(item, pp)
		if e != nil {
			return nil, e
		}
		var tc protocol.ToolCall
		if tc.ID, e = co.OptString("id", pp+".id"); e != nil {
			return nil, e
		}
		rawFn, ok := co.Get("function")
		if !ok {
			return nil, jsonfield.Invalid(jsonfield.CodeMissing, pp+".function", "%s.function is required", pp)
		}
		fn, e := jsonfield.AsObject(rawFn, pp+".function")
		if e != nil {
			return nil, e
		}
		if tc.Name, e = fn.OptString("name", pp+".function.name"); e != nil {
			return nil, e
		}
		tc.Arguments = "{}"
		if rawArgs, ok := fn.Get("arguments"); ok {
			if _, e := jsonfield.AsObject(rawArgs, pp+".function.arguments"); e != nil {
				return nil, e
			}
			var buf bytes.Buffer
			if err := json.Compact(&buf, rawArgs); err != nil {
				return nil, jsonfield.TypeError(pp+".function.arguments", "an object", rawArgs)
			}
			tc.Arguments = buf.String()
		}
		if err := tc.Validate(); err != nil {
			return nil, jsonfield.Invalid(jsonfield.CodeInvalidValue, pp+".function", "invalid tool call: %v", err)
		}
		calls = append(calls, tc)
	}
	return calls, nil
}
