package openai

import (
	"reflect"
	"testing"

	"github.com/idlegrid/idlegrid/internal/gateway/api/jsonfield"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

func TestParseResponsesValid(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		check func(p Params) bool
	}{
		{"string input", `{"model":"m","input":"hi"}`, func(p Params) bool {
			r := p.Responses
			return reflect.DeepEqual(p.Request.Messages, []protocol.ChatMessage{user("hi")}) && p.Request.Kind == protocol.KindChat &&
				r.Instructions == nil && r.MaxOutputTokens == 0 && string(r.ToolChoice) == `"auto"` && r.ParallelToolCalls && len(r.Metadata) == 0 && r.Metadata != nil &&
				r.Verbosity == "medium" && r.Truncation == "disabled" && !p.Stream && r.Store && r.PreviousResponseID == ""
		}},
		{"instructions come first as the system message", `{"model":"m","instructions":"be brief","input":[{"role":"user","content":"hi"}]}`, func(p Params) bool {
			return reflect.DeepEqual(p.Request.Messages, []protocol.ChatMessage{{Role: "system", Content: "be brief"}, user("hi")}) && *p.Responses.Instructions == "be brief"
		}},
		{"message items, parts and roles", `{"model":"m","input":[
			{"type":"message","role":"developer","content":[{"type":"input_text","text":"rules"}]},
			{"role":"user","content":[{"type":"input_text","text":"a"},{"type":"input_text","text":"b"}]},
			{"type":"message","role":"assistant","id":"msg_1","status":"completed","content":[{"type":"output_text","text":"c","annotations":[]}]},
			{"role":"assistant","content":[{"type":"refusal","refusal":"no"}]},
			{"role":"system","content":"s"}]}`, func(p Params) bool {
			return reflect.DeepEqual(p.Request.Messages, []protocol.ChatMessage{{Role: "system", Content: "rules"}, user("a\nb"),
				{Role: "assistant", Content: "c"}, {Role: "assistant", Content: "no"}, {Role: "system", Content: "s"}})
		}},
		{"sampling and limits", `{"model":"m","input":"x","max_output_tokens":50,"temperature":0,"top_p":0.5,"stream":true,"user":"u1","seed":7,"stop":"\n"}`, func(p Params) bool {
			o := p.Request.Options
			return o.MaxTokens == 50 && p.Responses.MaxOutputTokens == 50 && *o.Temperature == 0 && *o.TopP == 0.5 && p.Stream && p.User == "u1" && *o.Seed == 7 && o.Stop[0] == "\n"
		}},
		{"max_output_tokens wins over max_tokens", `{"model":"m","input":"x","max_tokens":9,"max_output_tokens":20}`, func(p Params) bool {
			return p.Request.Options.MaxTokens == 20
		}},
		{"stream_options are the chat API's", `{"model":"m","input":"x","stream":true,"stream_options":{"include_usage":true,"include_obfuscation":false}}`, func(p Params) bool {
			return p.Stream && !p.IncludeUsage
		}},
		{"harmless members", `{"model":"m","input":"x","store":true,"tools":[],"tool_choice":"none","parallel_tool_calls":false,"text":{"format":{"type":"text"},"verbosity":"low"},
			"truncation":"auto","reasoning":{"effort":"low"},"service_tier":"auto","include":["reasoning.encrypted_content"],"previous_response_id":null,"background":false,
			"metadata":{"k":"v"},"prompt_cache_key":"c","safety_identifier":"s"}`, func(p Params) bool {
			r := p.Responses
			return string(r.ToolChoice) == `"none"` && !r.ParallelToolCalls && r.Verbosity == "low" && r.Truncation == "auto" && r.Metadata["k"] == "v" && !p.Request.Options.Logprobs
		}},
		{"logprobs by include", `{"model":"m","input":"x","include":["message.output_text.logprobs"]}`, func(p Params) bool {
			return p.Request.Options.Logprobs && p.Request.Options.TopLogprobs == 0
		}},
		{"logprobs by top_logprobs", `{"model":"m","input":"x","top_logprobs":3}`, func(p Params) bool {
			return p.Request.Options.Logprobs && p.Request.Options.TopLogprobs == 3
		}},
		{"continuing a kept response, not keeping this one", `{"model":"m","input":"x","previous_response_id":"resp_1","store":false}`, func(p Params) bool {
			return p.Responses.PreviousResponseID == "resp_1" && !p.Responses.Store
		}},
		{"function tools and calls", `{"model":"m","tools":[{"type":"function","name":"get_weather","description":"d","parameters":{"type":"object","properties":{"city":{"type":"string"}}},"strict":true}],
			"tool_choice":{"type":"function","name":"get_weather"},"parallel_tool_calls":false,"input":[{"role":"user","content":"weather?"},
			{"type":"function_call","call_id":"call_1","name":"get_weather","arguments":"{\"city\":\"Paris\"}"},
			{"type":"function_call_output","call_id":"call_1","output":"sunny"}]}`, func(p Params) bool {
			r := p.Request
			return len(r.Tools) == 1 && r.Tools[0].Function.Name == "get_weather" && r.ToolChoice == "required" && r.ToolChoiceFunction == "get_weather" &&
				*r.ParallelToolCalls == false && len(r.Messages) == 3 && r.Messages[1].Role == "assistant" && r.Messages[1].ToolCalls[0].ID == "call_1" &&
				r.Messages[2].Role == "tool" && r.Messages[2].ToolCallID == "call_1" && r.Messages[2].ToolName == "get_weather" && r.Messages[2].Content == "sunny" &&
				string(p.Responses.ToolChoice) == `{"type":"function","name":"get_weather"}` && p.Responses.Tools[0].Strict
		}},
		{"structured output", `{"model":"m","input":"x","text":{"format":{"type":"json_schema","name":"s","schema":{"type":"object"},"strict":true}}}`, func(p Params) bool {
			return string(p.Request.Format) == `{"type":"object"}`
		}},
		{"json mode", `{"model":"m","input":"x","text":{"format":{"type":"json_object"}}}`, func(p Params) bool {
			return string(p.Request.Format) == `"json"`
		}},
		{"provider preferences", `{"model":"m","input":"x","provider":{"sort":"price"}}`, func(p Params) bool {
			return p.ProviderObject != nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, e := ParseResponses([]byte(tt.body))
			if e != nil {
				t.Fatalf("error %+v", e)
			}
			if !tt.check(p) {
				t.Fatalf("parsed %+v, responses %+v", p, p.Responses)
			}
		})
	}
}

func TestParseResponsesErrors(t *testing.T) {
	tests := []errCase{
		{"empty body", ``, "", jsonfield.CodeInvalidJSON},
		{"missing model", `{"input":"x"}`, "model", jsonfield.CodeMissing},
		{"missing input", `{"model":"m","instructions":"x"}`, "input", jsonfield.CodeMissing},
		{"input wrong type", `{"model":"m","input":5}`, "input", jsonfield.CodeInvalidType},
		{"empty input", `{"model":"m","input":[]}`, "input", codeEmptyArray},
		{"item not an object", `{"model":"m","input":["hi"]}`, "input[0]", jsonfield.CodeInvalidType},
		{"missing role", `{"model":"m","input":[{"content":"x"}]}`, "input[0].role", jsonfield.CodeMissing},
		{"unknown role", `{"model":"m","input":[{"role":"robot","content":"x"}]}`, "input[0].role", jsonfield.CodeInvalidValue},
		{"missing content", `{"model":"m","input":[{"role":"user"}]}`, "input[0].content", jsonfield.CodeMissing},
		{"content wrong type", `{"model":"m","input":[{"role":"user","content":{}}]}`, "input[0].content", jsonfield.CodeInvalidType},
		{"image part", `{"model":"m","input":[{"role":"user","content":[{"type":"input_text","text":"a"},{"type":"input_image","image_url":"data:"}]}]}`, "input[0].content[1].type", jsonfield.CodeUnsupportedValue},
		{"part without text", `{"model":"m","input":[{"role":"user","content":[{"type":"input_text"}]}]}`, "input[0].content[0].text", jsonfield.CodeMissing},
		{"function_call without call_id", `{"model":"m","input":[{"role":"user","content":"x"},{"type":"function_call","name":"f","arguments":"{}"}]}`, "input[1].call_id", jsonfield.CodeMissing},
		{"function_call bad arguments", `{"model":"m","input":[{"type":"function_call","call_id":"c","name":"f","arguments":"{"}]}`, "input[0]", jsonfield.CodeInvalidValue},
		{"function_call_output without output", `{"model":"m","input":[{"type":"function_call_output","call_id":"c"}]}`, "input[0].output", jsonfield.CodeMissing},
		{"item reference", `{"model":"m","input":[{"type":"item_reference","id":"msg_1"}]}`, "input[0].type", jsonfield.CodeUnsupportedValue},
		{"reasoning item", `{"model":"m","input":[{"type":"reasoning","summary":[]}]}`, "input[0].type", jsonfield.CodeUnsupportedValue},
		{"instructions wrong type", `{"model":"m","input":"x","instructions":["a"]}`, "instructions", jsonfield.CodeInvalidType},
		{"function tool without name", `{"model":"m","input":"x","tools":[{"type":"function","parameters":{}}]}`, "tools[0].name", jsonfield.CodeMissing},
		{"function tool bad schema", `{"model":"m","input":"x","tools":[{"type":"function","name":"f","parameters":{"type":"nope"}}]}`, "tools[0].parameters/type", jsonfield.CodeInvalidValue},
		{"built-in tools", `{"model":"m","input":"x","tools":[{"type":"web_search"}]}`, "tools[0].type", jsonfield.CodeUnsupportedValue},
		{"tools wrong type", `{"model":"m","input":"x","tools":{"a":1}}`, "tools", jsonfield.CodeInvalidType},
		{"tool_choice required without tools", `{"model":"m","input":"x","tool_choice":"required"}`, "tool_choice", jsonfield.CodeInvalidValue},
		{"tool_choice names a missing tool", `{"model":"m","input":"x","tools":[{"type":"function","name":"f"}],"tool_choice":{"type":"function","name":"g"}}`, "tool_choice.name", jsonfield.CodeInvalidValue},
		{"json_schema without schema", `{"model":"m","input":"x","text":{"format":{"type":"json_schema","name":"s"}}}`, "text.format.schema", jsonfield.CodeMissing},
		{"unknown format", `{"model":"m","input":"x","text":{"format":{"type":"yaml"}}}`, "text.format.type", jsonfield.CodeInvalidValue},
		{"format without type", `{"model":"m","input":"x","text":{"format":{}}}`, "text.format.type", jsonfield.CodeMissing},
		{"bad verbosity", `{"model":"m","input":"x","text":{"verbosity":"loud"}}`, "text.verbosity", jsonfield.CodeInvalidValue},
		{"previous_response_id not a string", `{"model":"m","input":"x","previous_response_id":1}`, "previous_response_id", jsonfield.CodeInvalidType},
		{"conversation", `{"model":"m","input":"x","conversation":"conv_1"}`, "conversation", codeUnsupportedParameter},
		{"prompt template", `{"model":"m","input":"x","prompt":{"id":"pmpt_1"}}`, "prompt", codeUnsupportedParameter},
		{"background", `{"model":"m","input":"x","background":true}`, "background", codeUnsupportedParameter},
		{"store not a boolean", `{"model":"m","input":"x","store":"yes"}`, "store", jsonfield.CodeInvalidType},
		{"max_output_tokens zero", `{"model":"m","input":"x","max_output_tokens":0}`, "max_output_tokens", jsonfield.CodeInvalidValue},
		{"temperature too high", `{"model":"m","input":"x","temperature":3}`, "temperature", jsonfield.CodeInvalidValue},
		{"top_logprobs too high", `{"model":"m","input":"x","top_logprobs":21}`, "top_logprobs", jsonfield.CodeInvalidValue},
		{"include not strings", `{"model":"m","input":"x","include":[1]}`, "include[0]", jsonfield.CodeInvalidType},
		{"metadata value not a string", `{"model":"m","input":"x","metadata":{"a":"b","k":1}}`, "metadata.k", jsonfield.CodeInvalidType},
		{"metadata too many pairs", `{"model":"m","input":"x","metadata":{"1":"","2":"","3":"","4":"","5":"","6":"","7":"","8":"","9":"","10":"","11":"","12":"","13":"","14":"","15":"","16":"","17":""}}`, "metadata", jsonfield.CodeInvalidValue},
		{"bad truncation", `{"model":"m","input":"x","truncation":"middle"}`, "truncation", jsonfield.CodeInvalidValue},
		{"n above one", `{"model":"m","input":"x","n":2}`, "n", jsonfield.CodeUnsupportedValue},
	}
	for _, tt := range tests {
		_, e := ParseResponses([]byte(tt.body))
		checkErr(t, e, tt)
	}
}

// TestResponsesConversation: a kept conversation goes between the
// instructions and the input, and what is kept of a response leaves its
// instructions out (OpenAI does not carry them over) and adds the answer.
func TestResponsesConversation(t *testing.T) {
	history := []protocol.ChatMessage{user("a"), {Role: "assistant", Content: "b"}}
	for _, tt := range []struct {
		body string
		want []protocol.ChatMessage
	}{
		{`{"model":"m","input":"c"}`, []protocol.ChatMessage{user("a"), {Role: "assistant", Content: "b"}, user("c")}},
		{`{"model":"m","instructions":"i","input":"c"}`, []protocol.ChatMessage{{Role: "system", Content: "i"}, user("a"), {Role: "assistant", Content: "b"}, user("c")}},
	} {
		p, e := ParseResponses([]byte(tt.body))
		if e != nil {
			t.Fatal(e.Message)
		}
		p.Continue(history)
		if !reflect.DeepEqual(p.Request.Messages, tt.want) {
			t.Errorf("%s continued: %+v", tt.body, p.Request.Messages)
		}
		kept := p.Conversation("d", nil)
		if want := append(append([]protocol.ChatMessage{}, history...), user("c"), protocol.ChatMessage{Role: "assistant", Content: "d"}); !reflect.DeepEqual(kept, want) {
			t.Errorf("%s kept: %+v", tt.body, kept)
		}
	}
}
