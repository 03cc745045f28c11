package openai

import (
	"net/http"
	"reflect"
	"testing"

	"github.com/idlegrid/idlegrid/internal/gateway/api/jsonfield"
	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

func ptr[T any](v T) *T { return &v }

func chatReq(msgs ...protocol.ChatMessage) protocol.Request {
	return protocol.Request{Kind: protocol.KindChat, Model: "m", Messages: msgs}
}

func user(s string) protocol.ChatMessage { return protocol.ChatMessage{Role: "user", Content: s} }

func TestParseChatValid(t *testing.T) {
	withOpts := func(r protocol.Request, o protocol.Options) protocol.Request { r.Options = o; return r }
	tests := []struct {
		name string
		body string
		want Params
	}{
		{"minimal", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
			Params{Request: chatReq(user("hi"))}},
		{"string and parts content, developer role", `{"model":"m","messages":[
			{"role":"developer","content":"be brief"},
			{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},
			{"role":"assistant","content":null},
			{"role":"system","content":[]}]}`,
			Params{Request: chatReq(
				protocol.ChatMessage{Role: "system", Content: "be brief"},
				user("a\nb"),
				protocol.ChatMessage{Role: "assistant"},
				protocol.ChatMessage{Role: "system"})}},
		{"only empty content", `{"model":"m","messages":[{"role":"user","content":""}]}`,
			Params{Request: chatReq(user(""))}},
		{"nulls mean absent", `{"model":"m","messages":[{"role":"user","content":"x","name":null}],
			"temperature":null,"top_p":null,"seed":null,"stop":null,"stream":null,"stream_options":null,
			"user":null,"n":null,"logprobs":null,"top_logprobs":null,"response_format":null,"tools":null,
			"tool_choice":null,"functions":null,"max_tokens":null,"max_completion_tokens":null}`,
			Params{Request: chatReq(user("x"))}},
		{"all sampling fields", `{"model":"m","messages":[{"role":"user","content":"x"}],
			"temperature":0.5,"top_p":1,"seed":-7,"stop":"END","max_tokens":10,"user":"u1","n":1,
			"logprobs":true,"top_logprobs":3,"response_format":{"type":"text"}}`,
			Params{User: "u1", Request: withOpts(chatReq(user("x")), protocol.Options{
				MaxTokens: 10, Temperature: ptr(0.5), TopP: ptr(1.0), Seed: ptr(int64(-7)),
				Stop: []string{"END"}, Logprobs: true, TopLogprobs: 3})}},
		{"max_completion_tokens wins", `{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":10,"max_completion_tokens":20}`,
			Params{Request: withOpts(chatReq(user("x")), protocol.Options{MaxTokens: 20})}},
		{"max_tokens as 100.0", `{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":100.0}`,
			Params{Request: withOpts(chatReq(user("x")), protocol.Options{MaxTokens: 100})}},
		{"stop array drops empty strings", `{"model":"m","messages":[{"role":"user","content":"x"}],"stop":["a","","b","c"]}`,
			Params{Request: withOpts(chatReq(user("x")), protocol.Options{Stop: []string{"a", "b", "c"}})}},
		{"empty stop string", `{"model":"m","messages":[{"role":"user","content":"x"}],"stop":""}`,
			Params{Request: chatReq(user("x"))}},
		{"stream with usage", `{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{"include_usage":true}}`,
			Params{Stream: true, IncludeUsage: true, Request: chatReq(user("x"))}},
		{"include_usage ignored without stream", `{"model":"m","messages":[{"role":"user","content":"x"}],"stream":false,"stream_options":{"include_usage":true}}`,
			Params{Request: chatReq(user("x"))}},
		{"unknown fields and empty tools ignored", `{"model":"m","messages":[{"role":"user","content":"x","tool_calls":[]}],
			"presence_penalty":0.5,"frequency_penalty":1,"logit_bias":{"1":2},"metadata":{"a":"b"},"store":true,
			"tools":[],"functions":[ ],"tool_choice":"none","parallel_tool_calls":false,"reasoning_effort":"low"}`,
			Params{Request: chatReq(user("x"))}},
		{"tools, named choice, history with a call and its result", `{"model":"m","messages":[
			{"role":"user","content":"weather?"},
			{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\": \"Paris\"}"}}]},
			{"role":"tool","tool_call_id":"call_1","content":"sunny"}],
			"tools":[{"type":"function","function":{"name":"get_weather","description":"d","strict":true,"parameters":{"type":"object", "properties":{"city":{"type":"string"}},"required":["city"]}}}],
			"tool_choice":{"type":"function","function":{"name":"get_weather"}},"parallel_tool_calls":false}`,
			Params{Request: protocol.Request{Kind: protocol.KindChat, Model: "m", Messages: []protocol.ChatMessage{
				user("weather?"),
				{Role: "assistant", ToolCalls: []protocol.ToolCall{{ID: "call_1", Name: "get_weather", Arguments: `{"city": "Paris"}`}}},
				{Role: "tool", Content: "sunny", ToolCallID: "call_1", ToolName: "get_weather"}},
				Tools: []protocol.Tool{{Type: "function", Function: protocol.ToolFunction{Name: "get_weather", Description: "d",
					Parameters: []byte(`{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`)}}},
				ToolChoice: "required", ToolChoiceFunction: "get_weather", ParallelToolCalls: ptr(false)}}},
		{"response_format json_object", `{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"}}`,
			Params{Request: protocol.Request{Kind: protocol.KindChat, Model: "m", Messages: []protocol.ChatMessage{user("x")}, Format: []byte(`"json"`)}}},
		{"response_format json_schema", `{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"p","strict":true,"schema":{"type":"object", "properties":{"a":{"type":"integer"}}}}}}`,
			Params{Request: protocol.Request{Kind: protocol.KindChat, Model: "m", Messages: []protocol.ChatMessage{user("x")}, Format: []byte(`{"type":"object","properties":{"a":{"type":"integer"}}}`)}}},
		{"top_logprobs 0 without logprobs", `{"model":"m","messages":[{"role":"user","content":"x"}],"top_logprobs":0}`,
			Params{Request: chatReq(user("x"))}},
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

// errCase is one bad request and the exact error it must produce.
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
	if e.Status != http.StatusBadRequest || e.Type != "invalid_request_error" || e.Param != tt.param || e.Code != tt.code {
		t.Errorf("%s: got status=%d type=%q param=%q code=%q (%s); want 400 invalid_request_error param=%q code=%q",
			tt.name, e.Status, e.Type, e.Param, e.Code, e.Message, tt.param, tt.code)
	}
	if e.Message == "" {
		t.Errorf("%s: empty message", tt.name)
	}
}

const okMsgs = `"messages":[{"role":"user","content":"x"}]`

func TestParseChatErrors(t *testing.T) {
	tests := []errCase{
		{"empty body", ``, "", jsonfield.CodeInvalidJSON},
		{"whitespace body", " \n", "", jsonfield.CodeInvalidJSON},
		{"malformed JSON", `{"model":"m",`, "", jsonfield.CodeInvalidJSON},
		{"body is array", `[1]`, "", jsonfield.CodeInvalidJSON},
		{"body is null", `null`, "", jsonfield.CodeInvalidJSON},
		{"missing model", `{` + okMsgs + `}`, "model", jsonfield.CodeMissing},
		{"null model", `{"model":null,` + okMsgs + `}`, "model", jsonfield.CodeMissing},
		{"empty model", `{"model":"",` + okMsgs + `}`, "model", jsonfield.CodeMissing},
		{"model not a string", `{"model":7,` + okMsgs + `}`, "model", jsonfield.CodeInvalidType},
		{"missing messages", `{"model":"m"}`, "messages", jsonfield.CodeMissing},
		{"messages not an array", `{"model":"m","messages":{}}`, "messages", jsonfield.CodeInvalidType},
		{"empty messages", `{"model":"m","messages":[]}`, "messages", codeEmptyArray},
		{"message not an object", `{"model":"m","messages":["hi"]}`, "messages[0]", jsonfield.CodeInvalidType},
		{"missing role", `{"model":"m","messages":[{"content":"x"}]}`, "messages[0].role", jsonfield.CodeMissing},
		{"role not a string", `{"model":"m","messages":[{"role":1,"content":"x"}]}`, "messages[0].role", jsonfield.CodeInvalidType},
		{"unknown role", `{"model":"m","messages":[{"role":"user","content":"x"},{"role":"robot","content":"x"}]}`, "messages[1].role", jsonfield.CodeInvalidValue},
		{"function role", `{"model":"m","messages":[{"role":"function","content":"x","name":"f"}]}`, "messages[0].role", jsonfield.CodeUnsupportedValue},
		{"tool message without tool_call_id", `{"model":"m","messages":[{"role":"tool","content":"x"}]}`, "messages[0].tool_call_id", jsonfield.CodeMissing},
		{"tool call without function", `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"1"}]}]}`, "messages[0].tool_calls[0].function", jsonfield.CodeMissing},
		{"tool call arguments not an object", `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"1","type":"function","function":{"name":"f","arguments":"[1]"}}]}]}`, "messages[0].tool_calls[0].function", jsonfield.CodeInvalidValue},
		{"tool calls on a user message", `{"model":"m","messages":[{"role":"user","content":"x","tool_calls":[{"id":"1","function":{"name":"f","arguments":"{}"}}]}]}`, "messages[0].tool_calls", jsonfield.CodeInvalidValue},
		{"content wrong type", `{"model":"m","messages":[{"role":"user","content":5}]}`, "messages[0].content", jsonfield.CodeInvalidType},
		{"image part", `{"model":"m","messages":[{"role":"user","content":"a"},{"role":"user","content":"b"},
			{"role":"user","content":[{"type":"image_url","image_url":{"url":"http://x"}}]}]}`, "messages[2].content[0]", jsonfield.CodeUnsupportedValue},
		{"part not an object", `{"model":"m","messages":[{"role":"user","content":["x"]}]}`, "messages[0].content[0]", jsonfield.CodeInvalidType},
		{"part without type", `{"model":"m","messages":[{"role":"user","content":[{"text":"x"}]}]}`, "messages[0].content[0].type", jsonfield.CodeMissing},
		{"text part without text", `{"model":"m","messages":[{"role":"user","content":[{"type":"text"}]}]}`, "messages[0].content[0].text", jsonfield.CodeMissing},
		{"text part text not string", `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":1}]}]}`, "messages[0].content[0].text", jsonfield.CodeInvalidType},
		{"n > 1", `{"model":"m",` + okMsgs + `,"n":2}`, "n", jsonfield.CodeUnsupportedValue},
		{"n = 0", `{"model":"m",` + okMsgs + `,"n":0}`, "n", jsonfield.CodeInvalidValue},
		{"n wrong type", `{"model":"m",` + okMsgs + `,"n":"1"}`, "n", jsonfield.CodeInvalidType},
		{"tool of another type", `{"model":"m",` + okMsgs + `,"tools":[{"type":"web_search"}]}`, "tools[0].type", jsonfield.CodeUnsupportedValue},
		{"tool without name", `{"model":"m",` + okMsgs + `,"tools":[{"type":"function","function":{}}]}`, "tools[0].function.name", jsonfield.CodeMissing},
		{"tool name with spaces", `{"model":"m",` + okMsgs + `,"tools":[{"type":"function","function":{"name":"get weather"}}]}`, "tools[0].function.name", jsonfield.CodeInvalidValue},
		{"tool parameters bad schema", `{"model":"m",` + okMsgs + `,"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"strin"}}}}}]}`,
			"tools[0].function.parameters/properties/a/type", jsonfield.CodeInvalidValue},
		{"functions", `{"model":"m",` + okMsgs + `,"functions":[{"name":"f"}]}`, "functions", jsonfield.CodeUnsupportedValue},
		{"tool_choice required without tools", `{"model":"m",` + okMsgs + `,"tool_choice":"required"}`, "tool_choice", jsonfield.CodeInvalidValue},
		{"tool_choice unknown", `{"model":"m",` + okMsgs + `,"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"any"}`, "tool_choice", jsonfield.CodeInvalidValue},
		{"tool_choice object without function", `{"model":"m",` + okMsgs + `,"tool_choice":{"type":"function"}}`, "tool_choice.function", jsonfield.CodeMissing},
		{"tool_choice names another function", `{"model":"m",` + okMsgs + `,"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"g"}}}`,
			"tool_choice.function.name", jsonfield.CodeInvalidValue},
		{"parallel_tool_calls wrong type", `{"model":"m",` + okMsgs + `,"tools":[{"type":"function","function":{"name":"f"}}],"parallel_tool_calls":"no"}`, "parallel_tool_calls", jsonfield.CodeInvalidType},
		{"top_logprobs without logprobs", `{"model":"m",` + okMsgs + `,"top_logprobs":2}`, "top_logprobs", jsonfield.CodeInvalidValue},
		{"top_logprobs out of range", `{"model":"m",` + okMsgs + `,"logprobs":true,"top_logprobs":21}`, "top_logprobs", jsonfield.CodeInvalidValue},
		{"logprobs wrong type", `{"model":"m",` + okMsgs + `,"logprobs":"yes"}`, "logprobs", jsonfield.CodeInvalidType},
		{"temperature too high", `{"model":"m",` + okMsgs + `,"temperature":2.5}`, "temperature", jsonfield.CodeInvalidValue},
		{"temperature negative", `{"model":"m",` + okMsgs + `,"temperature":-0.1}`, "temperature", jsonfield.CodeInvalidValue},
		{"temperature string", `{"model":"m",` + okMsgs + `,"temperature":"0.5"}`, "temperature", jsonfield.CodeInvalidType},
		{"top_p too high", `{"model":"m",` + okMsgs + `,"top_p":1.5}`, "top_p", jsonfield.CodeInvalidValue},
		{"seed fractional", `{"model":"m",` + okMsgs + `,"seed":1.5}`, "seed", jsonfield.CodeInvalidType},
		{"seed huge", `{"model":"m",` + okMsgs + `,"seed":1e300}`, "seed", jsonfield.CodeInvalidValue},
		{"max_tokens zero", `{"model":"m",` + okMsgs + `,"max_tokens":0}`, "max_tokens", jsonfield.CodeInvalidValue},
		{"max_tokens too large", `{"model":"m",` + okMsgs + `,"max_tokens":4294967296}`, "max_tokens", jsonfield.CodeInvalidValue},
		{"max_tokens string", `{"model":"m",` + okMsgs + `,"max_tokens":"10"}`, "max_tokens", jsonfield.CodeInvalidType},
		{"max_completion_tokens negative", `{"model":"m",` + okMsgs + `,"max_completion_tokens":-1}`, "max_completion_tokens", jsonfield.CodeInvalidValue},
		{"stop oversized", `{"model":"m",` + okMsgs + `,"stop":["a","b","c","d","e"]}`, "stop", jsonfield.CodeInvalidValue},
		{"stop element type", `{"model":"m",` + okMsgs + `,"stop":["a",1]}`, "stop[1]", jsonfield.CodeInvalidType},
		{"stop wrong type", `{"model":"m",` + okMsgs + `,"stop":true}`, "stop", jsonfield.CodeInvalidType},
		{"stream wrong type", `{"model":"m",` + okMsgs + `,"stream":"true"}`, "stream", jsonfield.CodeInvalidType},
		{"stream_options wrong type", `{"model":"m",` + okMsgs + `,"stream":true,"stream_options":true}`, "stream_options", jsonfield.CodeInvalidType},
		{"include_usage wrong type", `{"model":"m",` + okMsgs + `,"stream":true,"stream_options":{"include_usage":1}}`, "stream_options.include_usage", jsonfield.CodeInvalidType},
		{"user wrong type", `{"model":"m",` + okMsgs + `,"user":5}`, "user", jsonfield.CodeInvalidType},
		{"response_format unknown", `{"model":"m",` + okMsgs + `,"response_format":{"type":"yaml"}}`, "response_format.type", jsonfield.CodeInvalidValue},
		{"response_format schema without name", `{"model":"m",` + okMsgs + `,"response_format":{"type":"json_schema","json_schema":{}}}`, "response_format.json_schema.name", jsonfield.CodeMissing},
		{"response_format schema invalid", `{"model":"m",` + okMsgs + `,"response_format":{"type":"json_schema","json_schema":{"name":"p","strict":true,"schema":{"type":"object","required":"name"}}}}`,
			"response_format.json_schema.schema/required", jsonfield.CodeInvalidValue},
		{"response_format schema not an object", `{"model":"m",` + okMsgs + `,"response_format":{"type":"json_schema","json_schema":{"name":"p","schema":"object"}}}`,
			"response_format.json_schema.schema", jsonfield.CodeInvalidType},
		{"response_format without type", `{"model":"m",` + okMsgs + `,"response_format":{}}`, "response_format.type", jsonfield.CodeMissing},
		{"response_format string", `{"model":"m",` + okMsgs + `,"response_format":"text"}`, "response_format", jsonfield.CodeInvalidType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, e := ParseChat([]byte(tt.body))
			checkErr(t, e, tt)
		})
	}
}
