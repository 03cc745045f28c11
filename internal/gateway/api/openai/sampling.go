package openai

import (
	"fmt"
	"math"

	"github.com/idlegrid/idlegrid/internal/gateway/api/jsonfield"
	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// parseRequest decodes a /v1/chat/completions or /v1/completions body into
// o and reads the members both share into p; the caller reads the rest of o.
func parseRequest(body []byte, kind protocol.Kind) (o jsonfield.Object, p Params, e *apierr.Error) {
	if o, e = jsonfield.DecodeBody(body); e != nil {
		return o, p, e
	}
	p.Request.Kind = kind
	return o, p, parseCommon(o, &p)
}

// parseCommon reads the members /v1/chat/completions and /v1/completions
// share: model, stream, stream_options, user, n, provider (routing
// preferences), max_tokens and the sampling options. Members neither endpoint uses are ignored, as OpenAI
// clients send many (presence_penalty, logit_bias, metadata, store, …)
// that have no equivalent on the network's backends.
func parseCommon(o jsonfield.Object, p *Params) *apierr.Error {
	raw, ok := o.Get("model")
	if !ok {
		return jsonfield.Invalid(jsonfield.CodeMissing, "model", "you must provide a model parameter")
	}
	model, e := jsonfield.AsString(raw, "model")
	if e != nil {
		return e
	}
	if model == "" {
		return jsonfield.Invalid(jsonfield.CodeMissing, "model", "you must provide a model parameter: 'model' is empty")
	}
	p.Request.Model = model

	if p.Stream, e = o.OptBool("stream", "stream", false); e != nil {
		return e
	}
	if raw, ok := o.Get("stream_options"); ok {
		so, e := jsonfield.AsObject(raw, "stream_options")
		if e != nil {
			return e
		}
		if raw, ok := so.Get("include_usage"); ok {
			inc, e := jsonfield.AsBool(raw, "stream_options.include_usage")
			if e != nil {
				return e
			}
			// Without streaming, usage is always in the body; OpenAI rejects
			// stream_options there, but some clients send it regardless,
			// so it is ignored rather than refused.
			p.IncludeUsage = inc && p.Stream
		}
	}
	if p.User, e = o.OptString("user", "user"); e != nil {
		return e
	}
	if p.N, e = parseN(o); e != nil {
		return e
	}
	if p.Provider, p.ProviderObject, e = parseProvider(o); e != nil {
		return e
	}

	opts := &p.Request.Options
	if n, ok, e := o.OptIntIn("max_tokens", "max_tokens", 1, maxTokensLimit); e != nil {
		return e
	} else if ok {
		opts.MaxTokens = int(n)
	}
	if opts.Temperature, e = o.OptFloatIn("temperature", "temperature", 0, 2); e != nil {
		return e
	}
	if opts.TopP, e = o.OptFloatIn("top_p", "top_p", 0, 1); e != nil {
		return e
	}
	if seed, ok, e := o.OptIntIn("seed", "seed", math.MinInt64, math.MaxInt64); e != nil {
		return e
	} else if ok {
		opts.Seed = &seed
	}
	if opts.Stop, e = parseStop(o); e != nil {
		return e
	}
	return nil
}

// parseN reads n, 1 to MaxChoices, as Params.N (0 for one choice): each
// choice is a job of its own, with its own receipt.
func parseN(o jsonfield.Object) (int, *apierr.Error) {
	raw, ok := o.Get("n")
	if !ok {
		return 0, nil
	}
	n, e := jsonfield.AsInt(raw, "n")
	if e != nil {
		return 0, e
	}
	switch {
	case n > MaxChoices:
		return 0, jsonfield.Invalid(jsonfield.CodeInvalidValue, "n", "invalid value for 'n': %d is above this network's maximum of %d (each choice is a job of its own, billed as such)", n, MaxChoices)
	case n < 1:
		return 0, jsonfield.Invalid(jsonfield.CodeInvalidValue, "n", "invalid value for 'n': %d is below the minimum of 1", n)
	}
	if n == 1 {
		return 0, nil
	}
	return int(n), nil
}

// parseStop reads stop as a string or an array of up to four strings.
// Empty strings are dropped: they would match immediately on backends that
// accept them and carry no meaning.
func parseStop(o jsonfield.Object) ([]string, *apierr.Error) {
	raw, ok := o.Get("stop")
	if !ok {
		return nil, nil
	}
	if raw[0] == '"' {
		s, e := jsonfield.AsString(raw, "stop")
		if e != nil || s == "" {
			return nil, e
		}
		return []string{s}, nil
	}
	if raw[0] != '[' {
		return nil, jsonfield.TypeError("stop", "a string or an array of strings", raw)
	}
	items, e := jsonfield.AsArray(raw, "stop")
	if e != nil {
		return nil, e
	}
	if len(items) > maxStopSequences {
		return nil, jsonfield.Invalid(jsonfield.CodeInvalidValue, "stop", "invalid value for 'stop': at most %d stop sequences are allowed, got %d", maxStopSequences, len(items))
	}
	var stop []string
	for i, item := range items {
		s, e := jsonfield.AsString(item, fmt.Sprintf("stop[%d]", i))
		if e != nil {
			return nil, e
		}
		if s != "" {
			stop = append(stop, s)
		}
	}
	return stop, nil
}

// parseMaxCompletionTokens applies max_completion_tokens, which replaced
// max_tokens in the chat API and therefore wins when both are sent.
func parseMaxCompletionTokens(o jsonfield.Object, opts *protocol.Options) *apierr.Error {
	n, ok, e := o.OptIntIn("max_completion_tokens", "max_completion_tokens", 1, maxTokensLimit)
	if e != nil {
		return e
	}
	if ok {
		opts.MaxTokens = int(n)
	}
	return nil
}
