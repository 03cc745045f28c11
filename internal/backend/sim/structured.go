package sim

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// Structured answers: tool calls and JSON output. The simulator does not
// sample these token by token; it builds them from the request's schema,
// deterministically from the model's weights and the prompt (the same on
// every machine), so tests can assert them exactly:
//
//   - tools (and a tool choice other than "none"): the model calls one
//     function — the one tool_choice names, else the first — unless the
//     choice is "auto" (or unset) and the last message is a tool result,
//     which it answers in text as usual. parallel_tool_calls makes no
//     difference: it calls one function per answer;
//   - the arguments are a JSON object that satisfies the function's
//     parameters schema (instance, below);
//   - format "json" answers {"answer": "<words>"}; a schema format
//     answers an instance of the schema, as text.
//
// Either counts one completion token per token of its text (a call's
// text is {"name":…,"arguments":…}); one cut by the token limit is
// that much of its text, with finish reason "length".

// callsTool reports whether the answer to req is a tool call.
func callsTool(req *protocol.Request) bool {
	if !req.SendsTools() {
		return false
	}
	if req.ToolChoice == protocol.ToolChoiceRequired {
		return true
	}
	n := len(req.Messages)
	return n == 0 || req.Messages[n-1].Role != "tool"
}

// structured answers req with a tool call or JSON when it asks for one;
// handled reports whether it did.
func (g *generation) structured(ctx context.Context, req *protocol.Request, emit func(backend.Delta) error) (res backend.Result, handled bool, err error) {
	seed := mix64(g.st.hash ^ mix64(g.m.Weights))
	var d backend.Delta
	switch {
	case callsTool(req):
		tool := chosenTool(req)
		args := instance(parseSchema(tool.Function.Parameters), g.vocab, seed, 0)
		if _, ok := args.(map[string]any); !ok {
			args = map[string]any{}
		}
		id := fmt.Sprintf("call_%016x", mix64(seed^0x63616c6c))
		call := protocol.ToolCall{ID: id, Name: tool.Function.Name, Arguments: string(encode(args))}
		raw := string(encode(map[string]any{"name": call.Name, "arguments": args}))
		if toks := tokenize(raw); len(toks) > g.max {
			// Cut at the token limit, a call is no call: what was generated
			// of it is the answer's text, as a real model's would be.
			d.Text, d.Tokens = strings.Join(toks[:g.max], ""), g.max
		} else {
			d.ToolCalls, d.Tokens = []protocol.ToolCall{call}, len(toks)
		}
	case len(req.Format) > 0:
		var v any
		if string(req.Format) == `"json"` {
			v = map[string]any{"answer": vocabWords(g.vocab, seed, 3+int(seed>>60))}
		} else {
			v = instance(parseSchema(req.Format), g.vocab, seed, 0)
		}
		d.Text = string(encode(v))
		toks := tokenize(d.Text)
		if len(toks) > g.max {
			// Cut at the token limit, as a real model's JSON would be.
			toks = toks[:g.max]
			d.Text = strings.Join(toks, "")
		}
		d.Tokens = len(toks)
	default:
		return res, false, nil
	}
	start := time.Now()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	if err := pace(ctx, timer, start.Add(g.m.FirstToken+g.prefill)); err != nil {
		return res, true, fmt.Errorf("sim: %w", err)
	}
	g.cacheBlocks()
	first := time.Now()
	if err := emit(d); err != nil {
		return res, true, err
	}
	finish := "stop"
	if d.ToolCalls == nil && d.Tokens >= g.max && g.max > 0 {
		finish = "length"
	}
	return backend.Result{
		Usage:        protocol.Usage{PromptTokens: uint64(g.promptTokens), CompletionTokens: uint64(d.Tokens)},
		FinishReason: finish,
		PromptEval:   first.Sub(start),
	}, true, nil
}

// chosenTool is the function tool_choice names, else the first.
func chosenTool(req *protocol.Request) protocol.Tool {
	for _, t := range req.Tools {
		if t.Function.Name == req.ToolChoiceFunction {
			return t
		}
	}
	return req.Tools[0]
}

// encode is compact JSON with object keys sorted and no HTML escaping.
func encode(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return []byte("{}")
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// parseSchema decodes a JSON Schema; anything unreadable is the empty
// schema (any value).
func parseSchema(raw json.RawMessage) map[string]any {
	var s map[string]any
	if json.Unmarshal(raw, &s) != nil || s == nil {
		return map[string]any{}
	}
	s["$root"] = s
	return s
}

// maxDepth bounds nesting, so that a recursive schema ends.
const maxDepth = 8

// instance returns a value that satisfies the schema s for the keywords
// the simulator knows: type (the first non-null of a list), const, enum,
// anyOf/oneOf/allOf (the first), local $ref (#/$defs/…, #/definitions/…),
// properties and required (the required ones, or all when none are),
// items, minItems/maxItems, minimum/maximum (and exclusive ones),
// minLength/maxLength and the formats date, date-time, email, uri, uuid.
// The choices are a function of seed.
func instance(s map[string]any, v *vocab, seed uint64, depth int) any {
	root, _ := s["$root"].(map[string]any)
	sub := func(x any) map[string]any {
		m, _ := x.(map[string]any)
		if m == nil {
			m = map[string]any{}
		}
		if root != nil {
			m["$root"] = root
		}
		return m
	}
	if ref, ok := s["$ref"].(string); ok && root != nil && depth < maxDepth {
		if target := resolve(root, ref); target != nil {
			return instance(sub(target), v, seed, depth+1)
		}
	}
	if c, ok := s["const"]; ok {
		return c
	}
	if e, ok := s["enum"].([]any); ok && len(e) > 0 {
		return e[seed%uint64(len(e))]
	}
	for _, k := range []string{"anyOf", "oneOf", "allOf"} {
		if alts, ok := s[k].([]any); ok && len(alts) > 0 && depth < maxDepth {
			for _, alt := range alts {
				if t, _ := sub(alt)["type"].(string); t != "null" {
					return instance(sub(alt), v, seed, depth+1)
				}
			}
			return instance(sub(alts[0]), v, seed, depth+1)
		}
	}
	typ := schemaType(s)
	switch typ {
	case "object":
		out := map[string]any{}
		props, _ := s["properties"].(map[string]any)
		names := requiredNames(s, props)
		for i, name := range names {
			if depth >= maxDepth {
				break
			}
			out[name] = instance(sub(props[name]), v, mix64(seed+uint64(i)+1), depth+1)
		}
		return out
	case "array":
		n := 1
		if lo, ok := schemaNumber(s, "minItems"); ok {
			n = max(n, int(min(lo, 16)))
		}
		if hi, ok := schemaNumber(s, "maxItems"); ok {
			n = min(n, int(max(hi, 0)))
		}
		out := make([]any, 0, n)
		for i := range n {
			if depth >= maxDepth {
				break
			}
			out = append(out, instance(sub(s["items"]), v, mix64(seed+uint64(i)+101), depth+1))
		}
		return out
	case "integer", "number":
		lo, hi := 0.0, 100.0
		if x, ok := schemaNumber(s, "minimum"); ok {
			lo = x
		}
		if x, ok := schemaNumber(s, "exclusiveMinimum"); ok {
			lo = x + 1
		}
		if x, ok := schemaNumber(s, "maximum"); ok {
			hi = x
		}
		if x, ok := schemaNumber(s, "exclusiveMaximum"); ok {
			hi = x - 1
		}
		if hi < lo {
			hi = lo
		}
		n := lo + float64(seed%uint64(hi-lo+1))
		if typ == "number" && n+0.5 <= hi {
			n += 0.5
		}
		return n
	case "boolean":
		return seed&1 == 0
	case "null":
		return nil
	}
	return stringFor(s, v, seed)
}

// resolve finds a local reference "#/a/b" in root; nil when it cannot.
func resolve(root map[string]any, ref string) any {
	path, ok := strings.CutPrefix(ref, "#")
	if !ok {
		return nil
	}
	var cur any = root
	for _, part := range strings.Split(strings.TrimPrefix(path, "/"), "/") {
		if part == "" {
			continue
		}
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")]
	}
	return cur
}

// schemaType is s's type: the first non-null of a list, or guessed from
// its keywords, "string" when nothing says.
func schemaType(s map[string]any) string {
	switch t := s["type"].(type) {
	case string:
		return t
	case []any:
		for _, x := range t {
			if name, _ := x.(string); name != "" && name != "null" {
				return name
			}
		}
		if len(t) > 0 {
			name, _ := t[0].(string)
			return name
		}
	}
	switch {
	case s["properties"] != nil:
		return "object"
	case s["items"] != nil:
		return "array"
	}
	return "string"
}

// requiredNames are the properties an instance gets, sorted: the required
// ones, or every property when the schema requires none.
func requiredNames(s map[string]any, props map[string]any) []string {
	var names []string
	if req, ok := s["required"].([]any); ok && len(req) > 0 {
		for _, r := range req {
			if name, ok := r.(string); ok && !slices.Contains(names, name) {
				names = append(names, name)
			}
		}
	} else {
		for name := range props {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

func schemaNumber(s map[string]any, key string) (float64, bool) {
	x, ok := s[key].(float64)
	return x, ok
}

// stringFor is a string for a string schema: a format's shape, or words of
// the vocabulary fitted to minLength and maxLength.
func stringFor(s map[string]any, v *vocab, seed uint64) string {
	w := vocabWords(v, seed, 1+int(seed>>62))
	word := strings.ReplaceAll(vocabWords(v, seed, 1), " ", "")
	var out string
	switch s["format"] {
	case "date":
		out = fmt.Sprintf("2025-%02d-%02d", 1+seed%12, 1+seed>>8%28)
	case "date-time":
		out = fmt.Sprintf("2025-%02d-%02dT%02d:00:00Z", 1+seed%12, 1+seed>>8%28, seed>>16%24)
	case "email":
		out = word + "@example.com"
	case "uri", "url":
		out = "https://example.com/" + word
	case "uuid":
		b := make([]byte, 16)
		for i := range b {
			b[i] = byte(mix64(seed + uint64(i)))
		}
		h := hex.EncodeToString(b)
		out = h[:8] + "-" + h[8:12] + "-4" + h[13:16] + "-a" + h[17:20] + "-" + h[20:32]
	default:
		out = w
	}
	if lo, ok := schemaNumber(s, "minLength"); ok {
		for len([]rune(out)) < int(min(lo, 4096)) {
			out += "a"
		}
	}
	if hi, ok := schemaNumber(s, "maxLength"); ok && len([]rune(out)) > int(max(hi, 0)) {
		out = string([]rune(out)[:int(max(hi, 0))])
	}
	return out
}

// vocabWords is n words of the vocabulary chosen by seed, joined by spaces.
func vocabWords(v *vocab, seed uint64, n int) string {
	out := make([]string, 0, n)
	for i := range n {
		idx := firstWord + int(mix64(seed+uint64(i)*0x9e37)%numWords)
		out = append(out, strings.TrimPrefix(v.texts[idx], " "))
	}
	return strings.Join(out, " ")
}
