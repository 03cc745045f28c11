package openai

import (
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
	var p Params
	o, e := decodeBody(body)
	if e != nil {
		return p, e
	}
	p.Request.Kind = protocol.KindGenerate
	if e := parseCommon(o, &p); e != nil {
		return p, e
	}
	if p.Request.Prompt, e = parsePrompt(o); e != nil {
		return p, e
	}
	if e := refuseLegacyFeatures(o); e != nil {
		return p, e
	}
	n, ok, e := o.optIntIn("logprobs", 0, maxLegacyLogprobs)
	if e != nil {
		return p, e
	}
	p.Request.Options.Logprobs = ok
	p.Request.Options.TopLogprobs = int(n)
	return p, nil
}

func parsePrompt(o object) (string, *apierr.Error) {
	raw, ok := o.get("prompt")
	if !ok {
		return "", nil
	}
	if raw[0] == '"' {
		return asString(raw, "prompt")
	}
	if raw[0] != '[' {
		return "", typeError("prompt", "a string or an array with one string", raw)
	}
	items, e := asArray(raw, "prompt")
	if e != nil {
		return "", e
	}
	if len(items) != 1 {
		return "", invalid(codeUnsupportedVal, "prompt", "only one prompt per request is supported on this network, got %d: send one request per prompt", len(items))
	}
	if items[0][0] != '"' {
		// [1, 2, 3] or [[1, 2]]: token ids depend on each provider's
		// tokenizer, which the gateway does not know.
		return "", invalid(codeUnsupportedVal, "prompt", "token-id prompts are not supported on this network: send the prompt as text")
	}
	return asString(items[0], "prompt[0]")
}

func refuseLegacyFeatures(o object) *apierr.Error {
	if s, e := o.optString("suffix"); e != nil {
		return e
	} else if s != "" {
		return invalid(codeUnsupportedVal, "suffix", "suffix (text insertion) is not supported on this network")
	}
	if echo, e := o.optBool("echo"); e != nil {
		return e
	} else if echo {
		return invalid(codeUnsupportedVal, "echo", "echo is not supported on this network: the prompt is not returned with the completion")
	}
	if raw, ok := o.get("best_of"); ok {
		n, e := asInt(raw, "best_of")
		if e != nil {
			return e
		}
		if n > 1 {
			return invalid(codeUnsupportedVal, "best_of", "best_of > 1 is not supported on this network: send best_of=1 (or omit it)")
		}
		if n < 1 {
			return invalid(codeInvalidValue, "best_of", "invalid value for 'best_of': %d is below the minimum of 1", n)
		}
	}
	return nil
}
