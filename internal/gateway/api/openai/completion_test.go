package openai

import (
	"reflect"
	"testing"

	"github.com/idlegrid/idlegrid/internal/gateway/api/jsonfield"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

func genReq(prompt string, o protocol.Options) protocol.Request {
	return protocol.Request{Kind: protocol.KindGenerate, Model: "m", Prompt: prompt, Options: o}
}

func TestParseCompletionValid(t *testing.T) {
	tests := []struct {
		name string
		body string
		want Params
	}{
		{"string prompt", `{"model":"m","prompt":"Once"}`, Params{Request: genReq("Once", protocol.Options{})}},
		{"one-string array", `{"model":"m","prompt":["Once"]}`, Params{Request: genReq("Once", protocol.Options{})}},
		{"absent prompt", `{"model":"m"}`, Params{Request: genReq("", protocol.Options{})}},
		{"nulls and neutral legacy values", `{"model":"m","prompt":"p","suffix":null,"echo":false,"best_of":1,"n":1,
			"logprobs":null,"suffix":"","stream":null,"stop":null,"presence_penalty":0,"logit_bias":null}`,
			Params{Request: genReq("p", protocol.Options{})}},
		{"sampling, stop array, logprobs", `{"model":"m","prompt":"p","max_tokens":5,"temperature":0,"top_p":0.9,
			"seed":42,"stop":["\n","."],"logprobs":2,"stream":true,"stream_options":{"include_usage":true},"user":"u"}`,
			Params{Stream: true, IncludeUsage: true, User: "u", Request: genReq("p", protocol.Options{
				MaxTokens: 5, Temperature: ptr(0.0), TopP: ptr(0.9), Seed: ptr(int64(42)),
				Stop: []string{"\n", "."}, Logprobs: true, TopLogprobs: 2})}},
		{"logprobs 0", `{"model":"m","prompt":"p","logprobs":0}`,
			Params{Request: genReq("p", protocol.Options{Logprobs: true})}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, e := ParseCompletion([]byte(tt.body))
			if e != nil {
				t.Fatalf("ParseCompletion: %+v", e)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseCompletion =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestParseCompletionErrors(t *testing.T) {
	tests := []errCase{
		{"empty body", ``, "", jsonfield.CodeInvalidJSON},
		{"malformed JSON", `{"model":`, "", jsonfield.CodeInvalidJSON},
		{"body is string", `"hi"`, "", jsonfield.CodeInvalidJSON},
		{"missing model", `{"prompt":"p"}`, "model", jsonfield.CodeMissing},
		{"model wrong type", `{"model":["m"],"prompt":"p"}`, "model", jsonfield.CodeInvalidType},
		{"prompt wrong type", `{"model":"m","prompt":5}`, "prompt", jsonfield.CodeInvalidType},
		{"token ids", `{"model":"m","prompt":[1,2,3]}`, "prompt", jsonfield.CodeUnsupportedValue},
		{"nested token ids", `{"model":"m","prompt":[[1,2]]}`, "prompt", jsonfield.CodeUnsupportedValue},
		{"several prompts", `{"model":"m","prompt":["a","b"]}`, "prompt", jsonfield.CodeUnsupportedValue},
		{"empty prompt array", `{"model":"m","prompt":[]}`, "prompt", jsonfield.CodeUnsupportedValue},
		{"suffix", `{"model":"m","prompt":"p","suffix":"end"}`, "suffix", jsonfield.CodeUnsupportedValue},
		{"suffix wrong type", `{"model":"m","prompt":"p","suffix":1}`, "suffix", jsonfield.CodeInvalidType},
		{"echo", `{"model":"m","prompt":"p","echo":true}`, "echo", jsonfield.CodeUnsupportedValue},
		{"best_of", `{"model":"m","prompt":"p","best_of":3}`, "best_of", jsonfield.CodeUnsupportedValue},
		{"best_of zero", `{"model":"m","prompt":"p","best_of":0}`, "best_of", jsonfield.CodeInvalidValue},
		{"n > 1", `{"model":"m","prompt":"p","n":4}`, "n", jsonfield.CodeUnsupportedValue},
		{"logprobs too many", `{"model":"m","prompt":"p","logprobs":6}`, "logprobs", jsonfield.CodeInvalidValue},
		{"logprobs bool", `{"model":"m","prompt":"p","logprobs":true}`, "logprobs", jsonfield.CodeInvalidType},
		{"temperature out of range", `{"model":"m","prompt":"p","temperature":3}`, "temperature", jsonfield.CodeInvalidValue},
		{"stop oversized", `{"model":"m","prompt":"p","stop":["1","2","3","4","5"]}`, "stop", jsonfield.CodeInvalidValue},
		{"max_tokens fractional", `{"model":"m","prompt":"p","max_tokens":1.5}`, "max_tokens", jsonfield.CodeInvalidType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, e := ParseCompletion([]byte(tt.body))
			checkErr(t, e, tt)
		})
	}
}
