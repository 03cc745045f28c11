package openai

import (
	"github.com/idlegrid/idlegrid/internal/gateway/api/jsonfield"
	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// ParseCompletion parses a legacy /v1/completions body into Params: a
// KindGenerate request with the model's template applied (Raw=false).
//
// Decisions where the legacy API is richer than the network:
//   - prompt is a string or an array of exactly one string; an absent or
//     null prompt is "" (OpenAI then generates as from a new document);
//     token-id prompts and several prompts are refused (one job yields one
//     choice);
//   - suffix (insertion), echo, best_of > 1 and n > 1 are refused;
//   - logprobs is the legacy integer 0–5: it requests log-probabilities
//     with that many alternatives per token.
//
// Unlike OpenAI, an absent max_tokens is not 16: it stays 0 so that the
// gateway applies its own default.
func ParseCompletion(body []byte) (Params, *apierr.Error) {
	o, p, e := parseRequest(body, protocol.KindGenerate)
	if e != nil {
		return p, e
	}
	if p.Request.Prompt, e = parsePrompt(o); e != nil {
		return p, e
	}
	if e := refuseLegacyFeatures(o); e != nil {
		return p, e
	}
	if p.N > 1 {
		return p, jsonfield.Invalid(jsonfield.CodeUnsupportedValue, "n", "n > 1 is not supported on /v1/completions: make several requests, or use /v1/chat/completions, which supports it")
	}
	n, ok, e := o.OptIntIn("logprobs", "logprobs", 0, maxLegacyLogprobs)
	if e != nil {
		return p, e
	}
	p.Request.Options.Logprobs = ok
	p.Request.Options.TopLogprobs = int(n)
	return p, nil
}

func parsePrompt(o jsonfield.Object) (string, *apierr.Error) {
	raw, ok := o.Get("prompt")
	if !ok {
		return "", nil
	}
	if raw[0] == '"' {
		return jsonfield.AsString(raw, "prompt")
	}
	if raw[0] != '[' {
		return "", jsonfield.TypeError("prompt", "a string or an array with one string", raw)
	}
	items, e := jsonfield.AsArray(raw, "prompt")
	if e != nil {
		return "", e
	}
	if len(items) != 1 {
		return "", jsonfield.Invalid(jsonfield.CodeUnsupportedValue, "prompt", "only one prompt per request is supported on this network, got %d: send one request per prompt", len(items))
	}
	if items[0][0] != '"' {
		// [1, 2, 3] or [[1, 2]]: token ids depend on each provider's
		// tokenizer, which the gateway does not know.
		return "", jsonfield.Invalid(jsonfield.CodeUnsupportedValue, "prompt", "token-id prompts are not supported on this network: send the prompt as text")
	}
	return jsonfield.AsString(items[0], "prompt[0]")
}

func refuseLegacyFeatures(o jsonfield.Object) *apierr.Error {
	if s, e := o.OptString("suffix", "suffix"); e != nil {
		return e
	} else if s != "" {
		return jsonfield.Invalid(jsonfield.CodeUnsupportedValue, "suffix", "suffix (text insertion) is not supported on this network")
	}
	if echo, e := o.OptBool("echo", "echo", false); e != nil {
		return e
	} else if echo {
		return jsonfield.Invalid(jsonfield.CodeUnsupportedValue, "echo", "echo is not supported on this network: the prompt is not returned with the completion")
	}
	if raw, ok := o.Get("best_of"); ok {
		n, e := jsonfield.AsInt(raw, "best_of")
		if e != nil {
			return e
		}
		if n > 1 {
			return jsonfield.Invalid(jsonfield.CodeUnsupportedValue, "best_of", "best_of > 1 is not supported on this network: send best_of=1 (or omit it)")
		}
		if n < 1 {
			return jsonfield.Invalid(jsonfield.CodeInvalidValue, "best_of", "invalid value for 'best_of': %d is below the minimum of 1", n)
		}
	}
	return nil
}
