// Package jsonfield reads JSON request bodies one member at a time, for API
// parsers that name the offending member in every error, as OpenAI's
// "param" does (messages[2].content[0], options.temperature). A struct
// decode would only say "cannot unmarshal string into float64", and would
// not tell an absent member from a null one.
//
// The openai and ollama packages both parse this way; the helpers live here
// so that the two APIs report type and range errors with the same codes and
// wording without either package depending on the other.
package jsonfield

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"

	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
)

// Error codes in apierr.Error.Code that both APIs use, modelled on the codes
// OpenAI returns so that clients that branch on them keep working. Ollama
// clients only see the message, but the gateway's logs and metrics see the
// code.
const (
	CodeInvalidJSON      = "invalid_json"
	CodeInvalidType      = "invalid_type"
	CodeInvalidValue     = "invalid_value"
	CodeMissing          = "missing_required_parameter"
	CodeUnsupportedValue = "unsupported_value"
)

// Invalid is apierr.Invalid with a specific code instead of the generic one.
func Invalid(code, param, format string, args ...any) *apierr.Error {
	e := apierr.Invalid(param, format, args...)
	e.Code = code
	return e
}

// Object is a JSON object whose members are decoded one at a time, each
// with the param name its errors should carry.
type Object map[string]json.RawMessage

// DecodeBody parses a request body that must be a JSON object.
func DecodeBody(body []byte) (Object, *apierr.Error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, Invalid(CodeInvalidJSON, "", "the request body is empty: send a JSON object with the request parameters and Content-Type: application/json")
	}
	var o Object
	if err := json.Unmarshal(body, &o); err != nil {
		if !json.Valid(body) {
			return nil, Invalid(CodeInvalidJSON, "", "could not parse the JSON body of your request (%v): the API expects a valid JSON object", err)
		}
		return nil, Invalid(CodeInvalidJSON, "", "the request body must be a JSON object, not %s", KindOf(bytes.TrimSpace(body)))
	}
	if o == nil {
		return nil, Invalid(CodeInvalidJSON, "", "the request body must be a JSON object, not null")
	}
	return o, nil
}

// Get returns a member's raw value, without surrounding white space. JSON
// null counts as absent: SDKs and LangChain send null for every optional
// field they leave unset.
func (o Object) Get(key string) (json.RawMessage, bool) {
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

// KindOf names a JSON value's type for error messages ("a string", "an
// array", …).
func KindOf(raw json.RawMessage) string {
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

// TypeError reports that param holds raw where want ("a string", "an array
// of strings", …) was expected.
func TypeError(param, want string, raw json.RawMessage) *apierr.Error {
	return Invalid(CodeInvalidType, param, "invalid type for '%s': expected %s, but got %s instead", param, want, KindOf(raw))
}

// AsString decodes raw as a string.
func AsString(raw json.RawMessage, param string) (string, *apierr.Error) {
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", TypeError(param, "a string", raw)
	}
	return s, nil
}

// AsBool decodes raw as a boolean; "true" as a string is a type error.
func AsBool(raw json.RawMessage, param string) (bool, *apierr.Error) {
	switch string(raw) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, TypeError(param, "a boolean", raw)
}

// AsFloat decodes raw as a finite number.
func AsFloat(raw json.RawMessage, param string) (float64, *apierr.Error) {
	if KindOf(raw) != "a number" {
		return 0, TypeError(param, "a number", raw)
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, Invalid(CodeInvalidValue, param, "invalid value for '%s': %s is not a representable number", param, raw)
	}
	return f, nil
}

// AsInt accepts integral numbers, including forms like 100.0 or 1e3 that
// some JSON encoders produce for whole numbers.
func AsInt(raw json.RawMessage, param string) (int64, *apierr.Error) {
	if KindOf(raw) != "a number" {
		return 0, TypeError(param, "an integer", raw)
	}
	if i, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
		return i, nil
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || f != math.Trunc(f) {
		return 0, TypeError(param, "an integer", raw)
	}
	if f < math.MinInt64 || f >= math.MaxInt64 {
		return 0, Invalid(CodeInvalidValue, param, "invalid value for '%s': %s is out of range", param, raw)
	}
	return int64(f), nil
}

// AsArray decodes raw as an array, leaving its elements raw so that each
// can be read with its own param (messages[0], messages[1], …).
func AsArray(raw json.RawMessage, param string) ([]json.RawMessage, *apierr.Error) {
	var a []json.RawMessage
	if len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &a) != nil {
		return nil, TypeError(param, "an array", raw)
	}
	return a, nil
}

// AsObject decodes raw as an object.
func AsObject(raw json.RawMessage, param string) (Object, *apierr.Error) {
	var o Object
	if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &o) != nil {
		return nil, TypeError(param, "an object", raw)
	}
	return o, nil
}

// OptString reads an optional string member ("" when absent); errors name
// param.
func (o Object) OptString(key, param string) (string, *apierr.Error) {
	raw, ok := o.Get(key)
	if !ok {
		return "", nil
	}
	return AsString(raw, param)
}

// OptBool reads an optional boolean member (def when absent); errors name
// param.
func (o Object) OptBool(key, param string, def bool) (bool, *apierr.Error) {
	raw, ok := o.Get(key)
	if !ok {
		return def, nil
	}
	return AsBool(raw, param)
}

// OptFloatIn reads an optional number member within [lo, hi] (nil when
// absent); errors name param.
func (o Object) OptFloatIn(key, param string, lo, hi float64) (*float64, *apierr.Error) {
	raw, ok := o.Get(key)
	if !ok {
		return nil, nil
	}
	f, e := AsFloat(raw, param)
	if e != nil {
		return nil, e
	}
	if f < lo || f > hi {
		return nil, Invalid(CodeInvalidValue, param, "invalid value for '%s': %v is outside the allowed range %v to %v", param, f, lo, hi)
	}
	return &f, nil
}

// OptIntIn reads an optional integer member within [lo, hi]; ok is false
// when it is absent. Errors name param.
func (o Object) OptIntIn(key, param string, lo, hi int64) (n int64, ok bool, e *apierr.Error) {
	raw, ok := o.Get(key)
	if !ok {
		return 0, false, nil
	}
	i, e := AsInt(raw, param)
	if e != nil {
		return 0, false, e
	}
	if i < lo || i > hi {
		return 0, false, Invalid(CodeInvalidValue, param, "invalid value for '%s': %d is outside the allowed range %d to %d", param, i, lo, hi)
	}
	return i, true, nil
}

// NonEmpty reports whether a member is present and not an empty array,
// object or string — the test for "did the client really use tools", since
// clients send "tools": [] when they have none.
func (o Object) NonEmpty(key string) bool {
	raw, ok := o.Get(key)
	if !ok {
		return false
	}
	switch string(raw) {
	case "[]", "{}", `""`:
		return false
	}
	if raw[0] == '[' || raw[0] == '{' {
		// White space inside an empty container, e.g. "[ ]".
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
