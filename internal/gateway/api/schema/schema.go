// Package schema checks the JSON Schemas consumers send, as tool
// parameters and for structured output, before a provider sees them: a
// schema that is not valid JSON Schema (draft 2020-12, the default of
// OpenAI's and Ollama's structured output) is refused with the path of
// the problem inside it, instead of failing on some providers' model
// servers and not others.
package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/idlegrid/idlegrid/internal/gateway/api/jsonfield"
	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
)

// Param checks the request member param, which must be a JSON Schema
// object, and returns it compacted; else a 400 whose param is the path of
// the problem inside it ("tools[0].function.parameters/properties/a/type"),
// the same on both APIs.
func Param(raw json.RawMessage, param string) (json.RawMessage, *apierr.Error) {
	if _, e := jsonfield.AsObject(raw, param); e != nil {
		return nil, e
	}
	raw = withoutNulls(raw)
	if p := Check(raw); p != nil {
		at := param
		if p.Path != "" {
			at += "/" + p.Path
		}
		return nil, jsonfield.Invalid(jsonfield.CodeInvalidValue, at, "invalid JSON Schema in '%s': %s", param, p)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, jsonfield.TypeError(param, "a JSON Schema object", raw)
	}
	return buf.Bytes(), nil
}

// noLoader refuses every reference outside the schema: a consumer's schema
// must not make the gateway read files or fetch URLs.
type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("references outside the schema are not followed (%s)", url)
}

// Problem is an invalid schema: Path is the JSON-Pointer-like location of
// the offending value inside the schema ("properties/age/type"; "" for
// the schema itself) and Reason what is wrong with it.
type Problem struct {
	Path   string
	Reason string
}

func (p *Problem) Error() string {
	if p.Path == "" {
		return p.Reason
	}
	return p.Path + ": " + p.Reason
}

// withoutNulls drops members that are null, and "type" members that are
// "", at every depth: clients built on typed structs send unset keywords
// that way (Ollama's Go client: "required": null), and JSON Schema would
// reject them, though every model server reads them as absent. raw is
// returned as it is when it has none.
func withoutNulls(raw json.RawMessage) json.RawMessage {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil || !dropNulls(v) {
		return raw
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if enc.Encode(v) != nil {
		return raw
	}
	return bytes.TrimSpace(buf.Bytes())
}

// dropNulls removes null members (and empty "type" strings) from every
// object in v and reports whether it removed any.
func dropNulls(v any) bool {
	changed := false
	switch x := v.(type) {
	case map[string]any:
		for k, m := range x {
			if m == nil || k == "type" && m == "" {
				delete(x, k)
				changed = true
				continue
			}
			changed = dropNulls(m) || changed
		}
	case []any:
		for _, m := range x {
			changed = dropNulls(m) || changed
		}
	}
	return changed
}

// resource is the schema's own URL for the compiler; never fetched.
const resource = "urn:idlegrid:schema"

// Check compiles raw as a JSON Schema and returns the Problem that makes
// it invalid, nil when it is valid. The top level must be an object (or
// true/false, which JSON Schema allows but no backend does, so refused).
func Check(raw json.RawMessage) *Problem {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return &Problem{Reason: "a JSON Schema must be an object"}
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return &Problem{Reason: "not valid JSON: " + err.Error()}
	}
	c := jsonschema.NewCompiler()
	c.UseLoader(noLoader{})
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource(resource, doc); err != nil {
		return &Problem{Reason: err.Error()}
	}
	if _, err := c.Compile(resource); err != nil {
		return problem(err)
	}
	return nil
}

// problem turns a compile error into a Problem at the deepest location the
// metaschema names.
func problem(err error) *Problem {
	var sv *jsonschema.SchemaValidationError
	if errors.As(err, &sv) {
		var ve *jsonschema.ValidationError
		if errors.As(sv.Err, &ve) {
			leaf := deepest(ve)
			return &Problem{Path: strings.Join(leaf.InstanceLocation, "/"), Reason: leafReason(leaf)}
		}
	}
	msg := err.Error()
	// The compiler names the schema by its internal URL; consumers know it
	// as their schema.
	msg = strings.ReplaceAll(msg, resource+"#", "")
	msg = strings.ReplaceAll(msg, resource, "the schema")
	return &Problem{Reason: msg}
}

// deepest follows the first cause down to a leaf: the most specific
// complaint of the metaschema.
func deepest(ve *jsonschema.ValidationError) *jsonschema.ValidationError {
	for len(ve.Causes) > 0 {
		ve = ve.Causes[0]
	}
	return ve
}

func leafReason(ve *jsonschema.ValidationError) string {
	out := ve.Error()
	// ValidationError's text starts with the location and schema URL;
	// the Problem carries the location itself.
	if i := strings.LastIndex(out, ": "); i >= 0 {
		out = out[i+2:]
	}
	return strings.TrimSpace(out)
}
