package jsonfield

import (
	"encoding/json"
	"math"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
)

// checkErr checks that e is the 400 a parser returns for a bad member:
// param and code as wanted, and a message that quotes the param so that
// people see which member is wrong. An empty code means no error.
func checkErr(t *testing.T, e *apierr.Error, param, code string) {
	t.Helper()
	if code == "" {
		if e != nil {
			t.Fatalf("unexpected error %+v", e)
		}
		return
	}
	if e == nil {
		t.Fatalf("no error, want param=%q code=%q", param, code)
	}
	if e.Status != http.StatusBadRequest || e.Type != "invalid_request_error" || e.Param != param || e.Code != code {
		t.Errorf("got status=%d type=%q param=%q code=%q (%s); want 400 invalid_request_error param=%q code=%q",
			e.Status, e.Type, e.Param, e.Code, e.Message, param, code)
	}
	if e.Message == "" || (param != "" && !strings.Contains(e.Message, "'"+param+"'")) {
		t.Errorf("message %q does not name '%s'", e.Message, param)
	}
}

func TestInvalid(t *testing.T) {
	e := Invalid(CodeUnsupportedValue, "n", "n > %d is not supported", 1)
	want := apierr.Invalid("n", "n > 1 is not supported")
	want.Code = CodeUnsupportedValue
	if !reflect.DeepEqual(e, want) {
		t.Errorf("Invalid = %+v, want %+v", e, want)
	}
}

func TestDecodeBody(t *testing.T) {
	tests := []struct {
		name string
		body string
		want Object
		code string
	}{
		{"object", ` {"a":1,"b":null} `, Object{"a": json.RawMessage("1"), "b": json.RawMessage("null")}, ""},
		{"empty object", `{}`, Object{}, ""},
		{"empty", ``, nil, CodeInvalidJSON},
		{"white space", " \n\t", nil, CodeInvalidJSON},
		{"malformed", `{"a":`, nil, CodeInvalidJSON},
		{"trailing comma", `{"a":1,}`, nil, CodeInvalidJSON},
		{"array", `[{}]`, nil, CodeInvalidJSON},
		{"string", `"hi"`, nil, CodeInvalidJSON},
		{"null", `null`, nil, CodeInvalidJSON},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, e := DecodeBody([]byte(tt.body))
			checkErr(t, e, "", tt.code)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("DecodeBody = %v, want %v", got, tt.want)
			}
		})
	}
	// The error says what the body is, so that people see the mistake.
	if _, e := DecodeBody([]byte(`[1]`)); !strings.Contains(e.Message, "not an array") {
		t.Errorf("message %q does not name the body's type", e.Message)
	}
}

func TestGet(t *testing.T) {
	o := Object{"a": json.RawMessage(" 1 "), "null": json.RawMessage("null"), "spaced null": json.RawMessage(" null\n"), "empty": json.RawMessage("")}
	tests := []struct {
		key    string
		want   string
		wantOK bool
	}{
		{"a", "1", true},
		{"null", "", false},
		{"spaced null", "", false},
		{"empty", "", false},
		{"absent", "", false},
	}
	for _, tt := range tests {
		raw, ok := o.Get(tt.key)
		if string(raw) != tt.want || ok != tt.wantOK {
			t.Errorf("Get(%q) = %q, %v; want %q, %v", tt.key, raw, ok, tt.want, tt.wantOK)
		}
	}
}

func TestKindOf(t *testing.T) {
	for raw, want := range map[string]string{
		``:        "nothing",
		`"s"`:     "a string",
		`{}`:      "an object",
		`[]`:      "an array",
		`true`:    "a boolean",
		`false`:   "a boolean",
		`null`:    "null",
		`-1.5e3`:  "a number",
		`0`:       "a number",
		`"[1,2]"`: "a string",
	} {
		if got := KindOf(json.RawMessage(raw)); got != want {
			t.Errorf("KindOf(%s) = %q, want %q", raw, got, want)
		}
	}
}

func TestTypeError(t *testing.T) {
	e := TypeError("stop", "a string or an array of strings", json.RawMessage("true"))
	checkErr(t, e, "stop", CodeInvalidType)
	if want := "invalid type for 'stop': expected a string or an array of strings, but got a boolean instead"; e.Message != want {
		t.Errorf("message %q, want %q", e.Message, want)
	}
}

// valueCase is one raw value for an As* helper: the value it yields, or
// the code of its error (whose param is always "p").
type valueCase[T any] struct {
	raw  string
	want T
	code string
}

func runValueCases[T any](t *testing.T, as func(json.RawMessage, string) (T, *apierr.Error), tests []valueCase[T]) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			got, e := as(json.RawMessage(tt.raw), "p")
			checkErr(t, e, "p", tt.code)
			if tt.code == "" && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestAsString(t *testing.T) {
	runValueCases(t, AsString, []valueCase[string]{
		{raw: `"hi"`, want: "hi"},
		{raw: `""`, want: ""},
		{raw: `"a\u00e9\n"`, want: "aé\n"},
		{raw: `1`, code: CodeInvalidType},
		{raw: `["hi"]`, code: CodeInvalidType},
		{raw: `{"text":"hi"}`, code: CodeInvalidType},
		{raw: `true`, code: CodeInvalidType},
		{raw: ``, code: CodeInvalidType},
	})
}

func TestAsBool(t *testing.T) {
	runValueCases(t, AsBool, []valueCase[bool]{
		{raw: `true`, want: true},
		{raw: `false`, want: false},
		{raw: `"true"`, code: CodeInvalidType},
		{raw: `1`, code: CodeInvalidType},
		{raw: `0`, code: CodeInvalidType},
	})
}

func TestAsFloat(t *testing.T) {
	runValueCases(t, AsFloat, []valueCase[float64]{
		{raw: `0.5`, want: 0.5},
		{raw: `-2`, want: -2},
		{raw: `1e308`, want: 1e308},
		{raw: `1e400`, code: CodeInvalidValue},
		{raw: `-1e400`, code: CodeInvalidValue},
		{raw: `"0.5"`, code: CodeInvalidType},
		{raw: `true`, code: CodeInvalidType},
		{raw: `[1]`, code: CodeInvalidType},
	})
}

func TestAsInt(t *testing.T) {
	runValueCases(t, AsInt, []valueCase[int64]{
		{raw: `42`, want: 42},
		{raw: `-7`, want: -7},
		{raw: `100.0`, want: 100},
		{raw: `1e3`, want: 1000},
		{raw: `9223372036854775807`, want: math.MaxInt64},
		{raw: `-9223372036854775808`, want: math.MinInt64},
		{raw: `1e19`, code: CodeInvalidValue},
		{raw: `-1e19`, code: CodeInvalidValue},
		{raw: `9223372036854775808`, code: CodeInvalidValue},
		{raw: `1.5`, code: CodeInvalidType},
		{raw: `"1"`, code: CodeInvalidType},
		{raw: `false`, code: CodeInvalidType},
	})
}

func TestAsArray(t *testing.T) {
	runValueCases(t, AsArray, []valueCase[[]json.RawMessage]{
		{raw: `[]`, want: []json.RawMessage{}},
		{raw: `[1, "a", {}]`, want: []json.RawMessage{json.RawMessage("1"), json.RawMessage(`"a"`), json.RawMessage("{}")}},
		{raw: `{}`, code: CodeInvalidType},
		{raw: `"[]"`, code: CodeInvalidType},
		{raw: `1`, code: CodeInvalidType},
	})
}

func TestAsObject(t *testing.T) {
	runValueCases(t, AsObject, []valueCase[Object]{
		{raw: `{}`, want: Object{}},
		{raw: `{"a":[1]}`, want: Object{"a": json.RawMessage("[1]")}},
		{raw: `[]`, code: CodeInvalidType},
		{raw: `"{}"`, code: CodeInvalidType},
		{raw: `null`, code: CodeInvalidType},
	})
}

// members is the object the Opt* tests read; its errors must name the
// param the caller gives ("options.x"), not the key.
const members = `{"s":"text","b":true,"f":0.5,"i":3,"null":null,"num":1,"str":"1","big":1e400}`

func testObject(t *testing.T) Object {
	t.Helper()
	o, e := DecodeBody([]byte(members))
	if e != nil {
		t.Fatal(e)
	}
	return o
}

func TestOptString(t *testing.T) {
	o := testObject(t)
	tests := []struct {
		key, want, code string
	}{
		{key: "s", want: "text"},
		{key: "absent", want: ""},
		{key: "null", want: ""},
		{key: "num", code: CodeInvalidType},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			got, e := o.OptString(tt.key, "options.x")
			checkErr(t, e, "options.x", tt.code)
			if got != tt.want {
				t.Errorf("OptString(%q) = %q, want %q", tt.key, got, tt.want)
			}
		})
	}
}

func TestOptBool(t *testing.T) {
	o := testObject(t)
	tests := []struct {
		key       string
		def, want bool
		code      string
	}{
		{key: "b", want: true},
		{key: "absent", def: false, want: false},
		{key: "absent", def: true, want: true},
		{key: "null", def: true, want: true},
		{key: "str", code: CodeInvalidType},
		{key: "num", def: true, code: CodeInvalidType},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			got, e := o.OptBool(tt.key, "options.x", tt.def)
			checkErr(t, e, "options.x", tt.code)
			if tt.code == "" && got != tt.want {
				t.Errorf("OptBool(%q, def %v) = %v, want %v", tt.key, tt.def, got, tt.want)
			}
		})
	}
}

func TestOptFloatIn(t *testing.T) {
	o := testObject(t)
	tests := []struct {
		name   string
		key    string
		lo, hi float64
		want   *float64
		code   string
	}{
		{name: "inside", key: "f", lo: 0, hi: 1, want: ptr(0.5)},
		{name: "at lower bound", key: "f", lo: 0.5, hi: 1, want: ptr(0.5)},
		{name: "at upper bound", key: "num", lo: 0, hi: 1, want: ptr(1.0)},
		{name: "absent", key: "absent", lo: 0, hi: 1},
		{name: "null", key: "null", lo: 0, hi: 1},
		{name: "below", key: "f", lo: 1, hi: 2, code: CodeInvalidValue},
		{name: "above", key: "i", lo: 0, hi: 2, code: CodeInvalidValue},
		{name: "not finite", key: "big", lo: 0, hi: math.MaxFloat64, code: CodeInvalidValue},
		{name: "wrong type", key: "str", lo: 0, hi: 2, code: CodeInvalidType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, e := o.OptFloatIn(tt.key, "options.x", tt.lo, tt.hi)
			checkErr(t, e, "options.x", tt.code)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("OptFloatIn(%q) = %v, want %v", tt.key, got, tt.want)
			}
		})
	}
}

func TestOptIntIn(t *testing.T) {
	o := testObject(t)
	tests := []struct {
		name   string
		key    string
		lo, hi int64
		want   int64
		wantOK bool
		code   string
	}{
		{name: "inside", key: "i", lo: 1, hi: 5, want: 3, wantOK: true},
		{name: "at bounds", key: "i", lo: 3, hi: 3, want: 3, wantOK: true},
		{name: "full range", key: "num", lo: math.MinInt64, hi: math.MaxInt64, want: 1, wantOK: true},
		{name: "absent", key: "absent", lo: 1, hi: 5},
		{name: "null", key: "null", lo: 1, hi: 5},
		{name: "below", key: "num", lo: 2, hi: 5, code: CodeInvalidValue},
		{name: "above", key: "i", lo: 0, hi: 2, code: CodeInvalidValue},
		{name: "fractional", key: "f", lo: 0, hi: 5, code: CodeInvalidType},
		{name: "wrong type", key: "s", lo: 0, hi: 5, code: CodeInvalidType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, e := o.OptIntIn(tt.key, "options.x", tt.lo, tt.hi)
			checkErr(t, e, "options.x", tt.code)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("OptIntIn(%q) = %d, %v; want %d, %v", tt.key, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestNonEmpty(t *testing.T) {
	for raw, want := range map[string]bool{
		`null`:            false,
		`[]`:              false,
		`[ ]`:             false,
		"[\n]":            false,
		`{}`:              false,
		`{ }`:             false,
		`""`:              false,
		`[{}]`:            true,
		`[null]`:          true,
		`{"type":"none"}`: true,
		`"auto"`:          true,
		`0`:               true,
		`false`:           true,
	} {
		o := Object{"tools": json.RawMessage(raw)}
		if got := o.NonEmpty("tools"); got != want {
			t.Errorf("NonEmpty(%s) = %v, want %v", raw, got, want)
		}
	}
	if (Object{}).NonEmpty("tools") {
		t.Error("NonEmpty of an absent member is true")
	}
}

func ptr[T any](v T) *T { return &v }
