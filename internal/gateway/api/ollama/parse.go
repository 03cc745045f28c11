package ollama

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/idlegrid/idlegrid/internal/gateway/api/jsonfield"
	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// maxTokensLimit bounds num_predict so that the gateway's price
// reservation (tokens × price) cannot overflow.
const maxTokensLimit = 1<<31 - 1

// ParseChat parses an /api/chat body into Params.
//
// As in Ollama, stream defaults to true and a request without messages
// only loads the model (Params.LoadOnly). tools, assistant tool_calls and
// "tool" messages (tools.go) and format go to providers whose models take
// them. Decisions where Ollama's API is richer than the network: images
// are refused; think, keep_alive (beyond detecting an unload) and unknown
// options are ignored.
func ParseChat(body []byte) (Params, *apierr.Error) {
	o, p, e := parseRequest(body, protocol.KindChat)
	if e != nil {
		return p, e
	}
	if p.Request.Tools, e = parseTools(o); e != nil {
		return p, e
	}
	if raw, ok := o.Get("messages"); ok {
		items, e := jsonfield.AsArray(raw, "messages")
		if e != nil {
			return p, e
		}
		for i, item := range items {
			m, e := parseMessage(item, fmt.Sprintf("messages[%d]", i))
			if e != nil {
				return p, e
			}
			p.Request.Messages = append(p.Request.Messages, m)
		}
	}
	p.LoadOnly = len(p.Request.Messages) == 0
	p.Unload = p.LoadOnly && isZeroKeepAlive(o)
	return p, nil
}

// ParseGenerate parses an /api/generate body into Params.
//
// As in Ollama, stream defaults to true, an empty prompt only loads the
// model (Params.LoadOnly), and raw mode cannot be combined with a system
// prompt; format is structured output, as on /api/chat. Refused: images,
// a non-empty template or suffix. context
// (Ollama's token memory of earlier calls) is ignored: token ids depend on
// whichever provider served the previous call.
func ParseGenerate(body []byte) (Params, *apierr.Error) {
	o, p, e := parseRequest(body, protocol.KindGenerate)
	if e != nil {
		return p, e
	}
	r := &p.Request
	if r.Prompt, e = o.OptString("prompt", "prompt"); e != nil {
		return p, e
	}
	if r.System, e = o.OptString("system", "system"); e != nil {
		return p, e
	}
	if r.Raw, e = o.OptBool("raw", "raw", false); e != nil {
		return p, e
	}
	// The Go client always sends "template" and "suffix", empty when unset.
	for _, key := range []string{"template", "suffix"} {
		if s, e := o.OptString(key, key); e != nil {
			return p, e
		} else if s != "" {
			return p, jsonfield.Invalid(jsonfield.CodeUnsupportedValue, key, "'%s' is not supported on this network: providers apply each model's own template", key)
		}
	}
	if o.NonEmpty("images") {
		return p, jsonfield.Invalid(jsonfield.CodeUnsupportedValue, "images", "images are not supported yet on this network")
	}
	if r.Raw && r.System != "" {
		return p, jsonfield.Invalid(jsonfield.CodeInvalidValue, "raw", "raw mode does not support a system prompt")
	}
	p.LoadOnly = r.Prompt == ""
	p.Unload = p.LoadOnly && isZeroKeepAlive(o)
	return p, nil
}

// parseRequest decodes an /api/chat or /api/generate body into o and reads
// the members both share into p; the caller reads the rest of o.
func parseRequest(body []byte, kind protocol.Kind) (o jsonfield.Object, p Params, e *apierr.Error) {
	if o, e = jsonfield.DecodeBody(body); e != nil {
		return o, p, e
	}
	p.Request.Kind = kind
	return o, p, parseCommon(o, &p)
}

// parseCommon reads the members /api/chat and /api/generate share.
func parseCommon(o jsonfield.Object, p *Params) *apierr.Error {
	raw, ok := o.Get("model")
	if !ok {
		return jsonfield.Invalid(jsonfield.CodeMissing, "model", "model is required")
	}
	model, e := jsonfield.AsString(raw, "model")
	if e != nil {
		return e
	}
	if model == "" {
		return jsonfield.Invalid(jsonfield.CodeMissing, "model", "model is required")
	}
	p.Request.Model = model
	if p.Stream, e = o.OptBool("stream", "stream", true); e != nil {
		return e
	}
	// As in Ollama, top_logprobs (0 to 20) counts only with logprobs.
	opts := &p.Request.Options
	if opts.Logprobs, e = o.OptBool("logprobs", "logprobs", false); e != nil {
		return e
	}
	top, _, e := o.OptIntIn("top_logprobs", "top_logprobs", 0, maxTopLogprobs)
	if e != nil {
		return e
	}
	if opts.Logprobs {
		opts.TopLogprobs = int(top)
	}
	if raw, ok := o.Get("format"); ok {
		if p.Request.Format, e = parseFormat(raw); e != nil {
			return e
		}
	}
	if raw, ok := o.Get("options"); ok {
		opts, e := jsonfield.AsObject(raw, "options")
		if e != nil {
			return e
		}
		if e := parseOptions(opts, &p.Request.Options); e != nil {
			return e
		}
	}
	return nil
}

// parseOptions reads the options the network supports; Ollama's others
// (top_k, num_ctx, repeat_penalty, …) are the provider's business and are
// ignored.
func parseOptions(o jsonfield.Object, opts *protocol.Options) *apierr.Error {
	if raw, ok := o.Get("num_predict"); ok {
		n, e := jsonfield.AsInt(raw, "options.num_predict")
		if e != nil {
			return e
		}
		switch {
		case n > maxTokensLimit:
			return jsonfield.Invalid(jsonfield.CodeInvalidValue, "options.num_predict", "invalid value for 'options.num_predict': %d is above the maximum of %d", n, maxTokensLimit)
		case n > 0:
			opts.MaxTokens = int(n)
		case n < -2:
			return jsonfield.Invalid(jsonfield.CodeInvalidValue, "options.num_predict", "invalid value for 'options.num_predict': %d (use a positive number, or -1 for no limit)", n)
		}
		// 0, -1 (infinite) and -2 (fill the context) leave the limit to
		// the gateway's default: a request must have a bounded price.
	}
	var e *apierr.Error
	if opts.Temperature, e = o.OptFloatIn("temperature", "options.temperature", 0, math.MaxFloat64); e != nil {
		return e
	}
	if opts.TopP, e = o.OptFloatIn("top_p", "options.top_p", 0, 1); e != nil {
		return e
	}
	if raw, ok := o.Get("seed"); ok {
		seed, e := jsonfield.AsInt(raw, "options.seed")
		if e != nil {
			return e
		}
		// Ollama's default seed is -1, meaning "random"; any negative seed
		// is treated the same way.
		if seed >= 0 {
			opts.Seed = &seed
		}
	}
	if opts.Stop, e = parseStop(o); e != nil {
		return e
	}
	return nil
}

// parseStop reads options.stop: an array of strings, or one string (which
// Ollama's own parser refuses, but is unambiguous). Empty strings are
// dropped.
func parseStop(o jsonfield.Object) ([]string, *apierr.Error) {
	raw, ok := o.Get("stop")
	if !ok {
		return nil, nil
	}
	if raw[0] == '"' {
		s, e := jsonfield.AsString(raw, "options.stop")
		if e != nil || s == "" {
			return nil, e
		}
		return []string{s}, nil
	}
	items, e := jsonfield.AsArray(raw, "options.stop")
	if e != nil {
		return nil, e
	}
	var stop []string
	for i, item := range items {
		s, e := jsonfield.AsString(item, fmt.Sprintf("options.stop[%d]", i))
		if e != nil {
			return nil, e
		}
		if s != "" {
			stop = append(stop, s)
		}
	}
	return stop, nil
}

func parseMessage(raw json.RawMessage, param string) (protocol.ChatMessage, *apierr.Error) {
	var m protocol.ChatMessage
	o, e := jsonfield.AsObject(raw, param)
	if e != nil {
		return m, e
	}
	role, e := o.OptString("role", param+".role")
	if e != nil {
		return m, e
	}
	// Ollama lowercases roles when it decodes a message.
	switch role = strings.ToLower(role); role {
	case "system", "user", "assistant", "tool":
		m.Role = role
	case "":
		return m, jsonfield.Invalid(jsonfield.CodeMissing, param+".role", "%s.role is required", param)
	default:
		return m, jsonfield.Invalid(jsonfield.CodeInvalidValue, param+".role", "invalid role %q in %s: use system, user, assistant or tool", role, param)
	}
	if m.Content, e = o.OptString("content", param+".content"); e != nil {
		return m, e
	}
	if o.NonEmpty("images") {
		return m, jsonfield.Invalid(jsonfield.CodeUnsupportedValue, param+".images", "images are not supported yet on this network")
	}
	if raw, ok := o.Get("tool_calls"); ok && o.NonEmpty("tool_calls") {
		if m.ToolCalls, e = parseToolCalls(raw, param+".tool_calls"); e != nil {
			return m, e
		}
	}
	if m.ToolName, e = o.OptString("tool_name", param+".tool_name"); e != nil {
		return m, e
	}
	if m.ToolCallID, e = o.OptString("tool_call_id", param+".tool_call_id"); e != nil {
		return m, e
	}
	return m, nil
}

// isZeroKeepAlive reports keep_alive 0 ("0", "0s", 0), Ollama's way of
// asking to unload a model. Other values are ignored: providers manage
// their own memory.
func isZeroKeepAlive(o jsonfield.Object) bool {
	raw, ok := o.Get("keep_alive")
	if !ok {
		return false
	}
	var n float64
	if json.Unmarshal(raw, &n) == nil {
		return n == 0
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return false
	}
	if s == "0" {
		return true
	}
	d, err := time.ParseDuration(s)
	return err == nil && d == 0
}

// truncate shortens a raw value quoted in an error message.
func truncate(raw json.RawMessage) string {
	const limit = 40
	if len(raw) <= limit {
		return string(raw)
	}
	return string(raw[:limit]) + "…"
}
