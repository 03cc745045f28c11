package schema

import "testing"

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name, schema, path string
		ok                 bool
	}{
		{"object", `{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`, "", true},
		{"empty", `{}`, "", true},
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
