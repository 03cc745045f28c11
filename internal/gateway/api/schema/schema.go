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
)

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
