package ollama

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"

	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
)

// object is a JSON object whose members are decoded one at a time, so that
// each error names its member (messages[2].images, options.temperature) —
// a struct decode would only say "cannot unmarshal string into float64".
// The helpers mirror the openai package's; each API package keeps its own
// so that neither depends on the other.
type object map[string]json.RawMessage

// decodeBody parses a request body that must be a JSON object.
func decodeBody(body []byte) (object, *apierr.Error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, invalid(codeInvalidJSON, "", "the request body is empty: send a JSON object with the request parameters and Content-Type: application/json")
	}
	var o object
	if err := json.Unmarshal(body, &o); err != nil {
		if !json.Valid(body) {
			return nil, invalid(codeInvalidJSON, "", "could not parse the JSON body of your request (%v): the API expects a valid JSON object", err)
		}
		return nil, invalid(codeInvalidJSON, "", "the request body must be a JSON object, not %s", kindOf(bytes.TrimSpace(body)))
	}
	if o == nil {
		return nil, invalid(codeInvalidJSON, "", "the request body must be a JSON object, not null")
	}
	return o, nil
}

// get returns a member's raw value. JSON null counts as absent: SDKs and
// LangChain send null for every optional field they leave unset.
func (o object) get(key string) (json.RawMessage, bool) {
	raw, ok := o[key]
	if !ok {
		return nil, false
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, false
	}
	return raw, true
}

// kindOf names a JSON value's type for error messages.
func kindOf(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

func typeError(param, want string, raw json.RawMessage) *apierr.Error {
	return invalid(codeInvalidType, param, "invalid type for '%s': expected %s, but got %s instead", param, want, kindOf(raw))
}

func asString(raw json.RawMessage, param string) (string, *apierr.Error) {
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", typeError(param, "a string", raw)
	}
	return s, nil
}

func asBool(raw json.RawMessage, param string) (bool, *apierr.Error) {
	switch string(raw) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, typeError(param, "a boolean", raw)
}

func asFloat(raw json.RawMessage, param string) (float64, *apierr.Error) {
	if kindOf(raw) != "a number" {
		return 0, typeError(param, "a number", raw)
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, invalid(codeInvalidVal, param, "invalid value for '%s': %s is not a representable number", param, raw)
	}
	return f, nil
}

// asInt accepts integral numbers, including forms like 100.0 or 1e3 that
// some JSON encoders produce for whole numbers.
func asInt(raw json.RawMessage, param string) (int64, *apierr.Error) {
	if kindOf(raw) != "a number" {
		return 0, typeError(param, "an integer", raw)
	}
	if i, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
		return i, nil
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || f != math.Trunc(f) {
		return 0, typeError(param, "an integer", raw)
	}
	if f < math.MinInt64 || f >= math.MaxInt64 {
		return 0, invalid(codeInvalidVal, param, "invalid value for '%s': %s is out of range", param, raw)
	}
	return int64(f), nil
}

func asArray(raw json.RawMessage, param string) ([]json.RawMessage, *apierr.Error) {
	var a []json.RawMessage
	if len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &a) != nil {
		return nil, typeError(param, "an array", raw)
	}
	return a, nil
}

func asObject(raw json.RawMessage, param string) (object, *apierr.Error) {
	var o object
	if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &o) != nil {
		return nil, typeError(param, "an object", raw)
	}
	return o, nil
}

// optString reads an optional string member ("" when absent).
func (o object) optString(key, param string) (string, *apierr.Error) {
	raw, ok := o.get(key)
	if !ok {
		return "", nil
	}
	return asString(raw, param)
}

// optBool reads an optional boolean member (def when absent).
func (o object) optBool(key, param string, def bool) (bool, *apierr.Error) {
	raw, ok := o.get(key)
	if !ok {
		return def, nil
	}
	return asBool(raw, param)
}

// optFloatIn reads an optional number member within [lo, hi].
func (o object) optFloatIn(key, param string, lo, hi float64) (*float64, *apierr.Error) {
	raw, ok := o.get(key)
	if !ok {
		return nil, nil
	}
	f, e := asFloat(raw, param)
	if e != nil {
		return nil, e
	}
	if f < lo || f > hi {
		return nil, invalid(codeInvalidVal, param, "invalid value for '%s': %v is outside the allowed range %v to %v", param, f, lo, hi)
	}
	return &f, nil
}

// nonEmpty reports whether a member is present and not an empty array,
// object or string — the test for "did the client really use tools".
func (o object) nonEmpty(key string) bool {
	raw, ok := o.get(key)
	if !ok {
		return false
	}
	switch string(raw) {
	case "[]", "{}", `""`:
		return false
	}
	if raw[0] == '[' || raw[0] == '{' {
		// Whitespace inside an empty container, e.g. "[ ]".
		var v []any
		if json.Unmarshal(raw, &v) == nil && len(v) == 0 {
			return false
		}
		var m map[string]any
		if json.Unmarshal(raw, &m) == nil && len(m) == 0 {
			return false
		}
	}
	return true
}
