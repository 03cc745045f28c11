package schema

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name, schema, path string
		ok                 bool
	}{
		{"object", `{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`, "", true},
		{"empty", `{}`, "", true},
		{"zod's draft-07 with definitions", `{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","properties":{"a":{"$ref":"#/definitions/x"}},"required":["a"],"additionalProperties":false,"definitions":{"x":{"type":"string","format":"date-time"}}}`, "", true},
		{"bad type", `{"type":"object","properties":{"age":{"type":"integr"}}}`, "properties/age/type", false},
		{"required not array", `{"type":"object","required":"city"}`, "required", false},
		{"not an object", `"json"`, "", false},
		{"remote ref", `{"$ref":"https://example.com/s.json"}`, "", false},
		{"file ref", `{"$ref":"file:///etc/passwd"}`, "", false},
		{"bad json", `{"type":`, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Check([]byte(tc.schema))
			if tc.ok {
				if p != nil {
					t.Fatalf("Check = %v, want valid", p)
				}
				return
			}
			if p == nil {
				t.Fatal("Check = nil, want a problem")
			}
			if p.Path != tc.path {
				t.Errorf("path = %q, want %q (%v)", p.Path, tc.path, p)
			}
			t.Log(p)
		})
	}
}

// TestParamDropsNulls: the unset keywords typed clients send as null (the
// Ollama Go client's "required": null) are dropped rather than refused.
func TestParamDropsNulls(t *testing.T) {
	got, e := Param([]byte(`{"type":"object","required":null,"properties":{"city":{"type":"string","description":"","enum":null}}}`), "tools[0].function.parameters")
	if e != nil {
		t.Fatalf("Param: %v", e.Message)
	}
	if want := `{"properties":{"city":{"description":"","type":"string"}},"type":"object"}`; string(got) != want {
		t.Errorf("Param = %s, want %s", got, want)
	}
	if _, e := Param([]byte(`{"type":"object","required":"city"}`), "format"); e == nil || e.Param != "format/required" {
		t.Errorf("Param of an invalid schema: %+v", e)
	}
}

// FuzzCheck: no schema makes Check or Param panic, and Param returns
// either a 400 naming a parameter under its own, or a valid compact schema
// that checks again.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{
		`{"type":"object","properties":{"a":{"type":"integer","minimum":0}},"required":["a"]}`,
		`{"type":"object","properties":{"a":{"type":"strin"}}}`,
		`{"$ref":"#/$defs/x","$defs":{"x":{"$ref":"#/$defs/x"}}}`,
		`{"$ref":"file:///etc/passwd"}`, `{"pattern":"(a+)+$"}`, `{"required":null,"type":""}`,
		`"json"`, `[]`, `{`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		Check(b)
		got, e := Param(b, "format")
		if e != nil {
			if e.Status != 400 || !strings.HasPrefix(e.Param, "format") {
				t.Fatalf("error %+v", e)
			}
			return
		}
		if p := Check(got); p != nil {
			t.Fatalf("Param returned %s, which does not check: %v", got, p)
		}
	})
}
