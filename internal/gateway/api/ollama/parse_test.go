package ollama

import (
	"net/http"
	"reflect"
	"testing"

	"github.com/idlegrid/idlegrid/internal/gateway/api/jsonfield"
	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

func ptr[T any](v T) *T { return &v }

func chat(o protocol.Options, msgs ...protocol.ChatMessage) protocol.Request {
	return protocol.Request{Kind: protocol.KindChat, Model: "m", Messages: msgs, Options: o}
}

func msg(role, content string) protocol.ChatMessage {
	return protocol.ChatMessage{Role: role, Content: content}
}

func TestParseChatValid(t *testing.T) {
	tests := []struct {
		name string
		body string
		want Params
	}{
		{"stream defaults to true", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
			Params{Stream: true, Request: chat(protocol.Options{}, msg("user", "hi"))}},
		{"Go client shape", `{"model":"m","messages":[{"role":"System","content":"s"},{"role":"user","content":"hi","images":null},{"role":"assistant","content":null,"tool_calls":[]}],
			"stream":false,"options":null,"format":"","keep_alive":"5m","think":true,"tools":[]}`,
			Params{Request: chat(protocol.Options{}, msg("system", "s"), msg("user", "hi"), msg("assistant", ""))}},
		{"options", `{"model":"m","messages":[{"role":"user","content":"x"}],"options":{"num_predict":64,"temperature":0.7,
			"top_p":0.9,"seed":3,"stop":["\n\n",""],"top_k":40,"num_ctx":4096,"repeat_penalty":1.1}}`,
			Params{Stream: true, Request: chat(protocol.Options{MaxTokens: 64, Temperature: ptr(0.7), TopP: ptr(0.9), Seed: ptr(int64(3)), Stop: []string{"\n\n"}}, msg("user", "x"))}},
		{"num_predict -1, seed -1, stop string", `{"model":"m","messages":[{"role":"user","content":"x"}],"options":{"num_predict":-1,"seed":-1,"stop":"END"}}`,
			Params{Stream: true, Request: chat(protocol.Options{Stop: []string{"END"}}, msg("user", "x"))}},
		{"num_predict -2 and 0", `{"model":"m","messages":[{"role":"user","content":"x"}],"options":{"num_predict":-2,"temperature":0}}`,
			Params{Stream: true, Request: chat(protocol.Options{Temperature: ptr(0.0)}, msg("user", "x"))}},
		{"tools, a call, its result and a schema format", `{"model":"m","stream":false,"messages":[{"role":"user","content":"weather?"},
			{"role":"assistant","content":"","tool_calls":[{"id":"call_1","function":{"index":0,"name":"get_weather","arguments":{"city": "Paris"}}}]},
			{"role":"tool","content":"sunny","tool_name":"get_weather"}],
			"tools":[{"type":"function","function":{"name":"get_weather","description":"d","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}],
			"format":{"type":"object", "properties":{"a":{"type":"integer"}}}}`,
			Params{Request: protocol.Request{Kind: protocol.KindChat, Model: "m", Messages: []protocol.ChatMessage{
				msg("user", "weather?"),
				{Role: "assistant", ToolCalls: []protocol.ToolCall{{ID: "call_1", Name: "get_weather", Arguments: `{"city":"Paris"}`}}},
				{Role: "tool", Content: "sunny", ToolName: "get_weather"}},
				Tools: []protocol.Tool{{Type: "function", Function: protocol.ToolFunction{Name: "get_weather", Description: "d",
					Parameters: []byte(`{"type":"object","properties":{"city":{"type":"string"}}}`)}}},
				Format: []byte(`{"type":"object","properties":{"a":{"type":"integer"}}}`)}}},
		{"format json", `{"model":"m","messages":[{"role":"user","content":"x"}],"format":"json"}`,
			Params{Stream: true, Request: protocol.Request{Kind: protocol.KindChat, Model: "m", Messages: []protocol.ChatMessage{msg("user", "x")}, Format: []byte(`"json"`)}}},
		{"no messages loads", `{"model":"m"}`,
			Params{Stream: true, LoadOnly: true, Request: chat(protocol.Options{})}},
		{"empty messages loads", `{"model":"m","messages":[]}`,
			Params{Stream: true, LoadOnly: true, Request: chat(protocol.Options{})}},
		{"keep_alive 0 unloads", `{"model":"m","messages":[],"keep_alive":0}`,
			Params{Stream: true, LoadOnly: true, Unload: true, Request: chat(protocol.Options{})}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, e := ParseChat([]byte(tt.body))
			if e != nil {
				t.Fatalf("ParseChat: %+v", e)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseChat =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestParseGenerateValid(t *testing.T) {
	gen := func(prompt, system string, raw bool, o protocol.Options) protocol.Request {
		return protocol.Request{Kind: protocol.KindGenerate, Model: "m", Prompt: prompt, System: system, Raw: raw, Options: o}
	}
	tests := []struct {
		name string
		body string
		want Params
	}{
		{"Go client shape", `{"model":"m","prompt":"Why?","suffix":"","system":"be brief","template":"","options":null}`,
			Params{Stream: true, Request: gen("Why?", "be brief", false, protocol.Options{})}},
		{"raw, no stream, context ignored", `{"model":"m","prompt":"[INST] x [/INST]","raw":true,"stream":false,"context":[1,2,3],"images":[]}`,
			Params{Request: gen("[INST] x [/INST]", "", true, protocol.Options{})}},
		{"options", `{"model":"m","prompt":"p","options":{"num_predict":5,"top_p":0.5}}`,
			Params{Stream: true, Request: gen("p", "", false, protocol.Options{MaxTokens: 5, TopP: ptr(0.5)})}},
		{"empty prompt loads", `{"model":"m","prompt":""}`,
			Params{Stream: true, LoadOnly: true, Request: gen("", "", false, protocol.Options{})}},
		{"unload", `{"model":"m","keep_alive":"0s"}`,
			Params{Stream: true, LoadOnly: true, Unload: true, Request: gen("", "", false, protocol.Options{})}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, e := ParseGenerate([]byte(tt.body))
			if e != nil {
				t.Fatalf("ParseGenerate: %+v", e)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseGenerate =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

type errCase struct {
	name  string
	body  string
	param string
	code  string
}

func checkErr(t *testing.T, e *apierr.Error, tt errCase) {
	t.Helper()
	if e == nil {
		t.Fatalf("%s: no error", tt.name)
	}
	if e.Status != http.StatusBadRequest || e.Type != "invalid_request_error" || e.Param != tt.param || e.Code != tt.code || e.Message == "" {
		t.Errorf("%s: got status=%d type=%q param=%q code=%q (%s); want 400 param=%q code=%q",
			tt.name, e.Status, e.Type, e.Param, e.Code, e.Message, tt.param, tt.code)
	}
}

const okMsgs = `"messages":[{"role":"user","content":"x"}]`

func TestParseChatErrors(t *testing.T) {
	tests := []errCase{
		{"empty body", ``, "", jsonfield.CodeInvalidJSON},
		{"malformed JSON", `{"model":"m"`, "", jsonfield.CodeInvalidJSON},
		{"body is array", `[]`, "", jsonfield.CodeInvalidJSON},
		{"missing model", `{` + okMsgs + `}`, "model", jsonfield.CodeMissing},
		{"empty model", `{"model":"",` + okMsgs + `}`, "model", jsonfield.CodeMissing},
		{"model wrong type", `{"model":1,` + okMsgs + `}`, "model", jsonfield.CodeInvalidType},
		{"messages wrong type", `{"model":"m","messages":"hi"}`, "messages", jsonfield.CodeInvalidType},
		{"message wrong type", `{"model":"m","messages":[1]}`, "messages[0]", jsonfield.CodeInvalidType},
		{"missing role", `{"model":"m","messages":[{"content":"x"}]}`, "messages[0].role", jsonfield.CodeMissing},
		{"unknown role", `{"model":"m","messages":[{"role":"user","content":"x"},{"role":"developer","content":"x"}]}`, "messages[1].role", jsonfield.CodeInvalidValue},
		{"unknown role", `{"model":"m","messages":[{"role":"function","content":"x"}]}`, "messages[0].role", jsonfield.CodeInvalidValue},
		{"content wrong type", `{"model":"m","messages":[{"role":"user","content":["x"]}]}`, "messages[0].content", jsonfield.CodeInvalidType},
		{"images", `{"model":"m","messages":[{"role":"user","content":"x","images":["aGk="]}]}`, "messages[0].images", jsonfield.CodeUnsupportedValue},
		{"tool call arguments a string", `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":"{}"}}]}]}`, "messages[0].tool_calls[0].function.arguments", jsonfield.CodeInvalidType},
		{"tool call without name", `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"function":{"arguments":{}}}]}]}`, "messages[0].tool_calls[0].function", jsonfield.CodeInvalidValue},
		{"tool without function", `{"model":"m",` + okMsgs + `,"tools":[{"type":"function"}]}`, "tools[0].function", jsonfield.CodeMissing},
		{"tool bad schema", `{"model":"m",` + okMsgs + `,"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"type":7}}}}}]}`, "tools[0].function.parameters/properties/a/type", jsonfield.CodeInvalidValue},
		{"format yaml", `{"model":"m",` + okMsgs + `,"format":"yaml"}`, "format", jsonfield.CodeInvalidValue},
		{"format bad schema", `{"model":"m",` + okMsgs + `,"format":{"type":"object","required":"a"}}`, "format/required", jsonfield.CodeInvalidValue},
		{"stream wrong type", `{"model":"m",` + okMsgs + `,"stream":"no"}`, "stream", jsonfield.CodeInvalidType},
		{"options wrong type", `{"model":"m",` + okMsgs + `,"options":[]}`, "options", jsonfield.CodeInvalidType},
		{"num_predict wrong type", `{"model":"m",` + okMsgs + `,"options":{"num_predict":"10"}}`, "options.num_predict", jsonfield.CodeInvalidType},
		{"num_predict below -2", `{"model":"m",` + okMsgs + `,"options":{"num_predict":-3}}`, "options.num_predict", jsonfield.CodeInvalidValue},
		{"num_predict huge", `{"model":"m",` + okMsgs + `,"options":{"num_predict":1e12}}`, "options.num_predict", jsonfield.CodeInvalidValue},
		{"temperature negative", `{"model":"m",` + okMsgs + `,"options":{"temperature":-1}}`, "options.temperature", jsonfield.CodeInvalidValue},
		{"temperature wrong type", `{"model":"m",` + okMsgs + `,"options":{"temperature":true}}`, "options.temperature", jsonfield.CodeInvalidType},
		{"top_p out of range", `{"model":"m",` + okMsgs + `,"options":{"top_p":2}}`, "options.top_p", jsonfield.CodeInvalidValue},
		{"seed fractional", `{"model":"m",` + okMsgs + `,"options":{"seed":0.5}}`, "options.seed", jsonfield.CodeInvalidType},
		{"stop element type", `{"model":"m",` + okMsgs + `,"options":{"stop":["a",2]}}`, "options.stop[1]", jsonfield.CodeInvalidType},
		{"stop wrong type", `{"model":"m",` + okMsgs + `,"options":{"stop":{}}}`, "options.stop", jsonfield.CodeInvalidType},
		{"logprobs wrong type", `{"model":"m",` + okMsgs + `,"logprobs":1}`, "logprobs", jsonfield.CodeInvalidType},
		{"top_logprobs above 20", `{"model":"m",` + okMsgs + `,"logprobs":true,"top_logprobs":21}`, "top_logprobs", jsonfield.CodeInvalidValue},
		{"top_logprobs negative", `{"model":"m",` + okMsgs + `,"top_logprobs":-1}`, "top_logprobs", jsonfield.CodeInvalidValue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, e := ParseChat([]byte(tt.body))
			checkErr(t, e, tt)
		})
	}
}

func TestParseGenerateErrors(t *testing.T) {
	tests := []errCase{
		{"empty body", ``, "", jsonfield.CodeInvalidJSON},
		{"malformed JSON", `{"model":"m",}`, "", jsonfield.CodeInvalidJSON},
		{"missing model", `{"prompt":"p"}`, "model", jsonfield.CodeMissing},
		{"prompt wrong type", `{"model":"m","prompt":["p"]}`, "prompt", jsonfield.CodeInvalidType},
		{"system wrong type", `{"model":"m","prompt":"p","system":1}`, "system", jsonfield.CodeInvalidType},
		{"raw wrong type", `{"model":"m","prompt":"p","raw":"yes"}`, "raw", jsonfield.CodeInvalidType},
		{"template", `{"model":"m","prompt":"p","template":"{{ .Prompt }}"}`, "template", jsonfield.CodeUnsupportedValue},
		{"suffix", `{"model":"m","prompt":"p","suffix":"end"}`, "suffix", jsonfield.CodeUnsupportedValue},
		{"images", `{"model":"m","prompt":"p","images":["aGk="]}`, "images", jsonfield.CodeUnsupportedValue},
		{"format array", `{"model":"m","prompt":"p","format":["json"]}`, "format", jsonfield.CodeInvalidValue},
		{"raw with system", `{"model":"m","prompt":"p","raw":true,"system":"s"}`, "raw", jsonfield.CodeInvalidValue},
		{"num_predict wrong type", `{"model":"m","prompt":"p","options":{"num_predict":true}}`, "options.num_predict", jsonfield.CodeInvalidType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, e := ParseGenerate([]byte(tt.body))
			checkErr(t, e, tt)
		})
	}
}

func TestParseShow(t *testing.T) {
	for body, want := range map[string]string{
		`{"model":"llama3.2:1b"}`:                   "llama3.2:1b",
		`{"name":"llama3.2:1b"}`:                    "llama3.2:1b",
		`{"model":"","name":"qwen","verbose":true}`: "qwen",
	} {
		if got, e := ParseShow([]byte(body)); e != nil || got != want {
			t.Errorf("ParseShow(%s) = %q, %v", body, got, e)
		}
	}
	for _, tt := range []errCase{
		{"empty body", ``, "", jsonfield.CodeInvalidJSON},
		{"no model", `{}`, "model", jsonfield.CodeMissing},
		{"model wrong type", `{"model":1}`, "model", jsonfield.CodeInvalidType},
	} {
		_, e := ParseShow([]byte(tt.body))
		checkErr(t, e, tt)
	}
}

// TestParseLogprobs: logprobs and top_logprobs are top-level, as in Ollama,
// and top_logprobs counts only with logprobs.
func TestParseLogprobs(t *testing.T) {
	for body, want := range map[string]protocol.Options{
		`{"model":"m",` + okMsgs + `,"logprobs":true,"top_logprobs":3}`: {Logprobs: true, TopLogprobs: 3},
		`{"model":"m",` + okMsgs + `,"logprobs":true}`:                  {Logprobs: true},
		`{"model":"m",` + okMsgs + `,"top_logprobs":3}`:                 {},
	} {
		p, e := ParseChat([]byte(body))
		if e != nil || p.Request.Options.Logprobs != want.Logprobs || p.Request.Options.TopLogprobs != want.TopLogprobs {
			t.Errorf("%s: %+v, %v", body, p.Request.Options, e)
		}
	}
	p, e := ParseGenerate([]byte(`{"model":"m","prompt":"p","logprobs":true,"top_logprobs":20}`))
	if e != nil || !p.Request.Options.Logprobs || p.Request.Options.TopLogprobs != 20 {
		t.Errorf("generate: %+v, %v", p.Request.Options, e)
	}
}
