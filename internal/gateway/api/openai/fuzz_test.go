package openai

import (
	"net/http"
	"testing"

	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// checkParsed is the property every parser keeps on any input: either a
// usable request or a 400 that says which parameter is wrong.
func checkParsed(t *testing.T, p Params, e *apierr.Error, kind protocol.Kind) {
	t.Helper()
	if e != nil {
		if e.Status != http.StatusBadRequest || e.Type != "invalid_request_error" || e.Message == "" || e.Code == "" {
			t.Fatalf("bad error %+v", e)
		}
		return
	}
	if p.Request.Model == "" || p.Request.Kind != kind {
		t.Fatalf("accepted an unusable request %+v", p)
	}
	o := p.Request.Options
	if o.MaxTokens < 0 || o.TopLogprobs < 0 || len(o.Stop) > maxStopSequences || (p.IncludeUsage && !p.Stream) {
		t.Fatalf("accepted out-of-range options %+v", p)
	}
	if kind == protocol.KindChat && len(p.Request.Messages) == 0 {
		t.Fatalf("accepted a chat without messages %+v", p)
	}
}

func FuzzParseChat(f *testing.F) {
	for _, body := range []string{
		`{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"m","messages":[{"role":"developer","content":[{"type":"text","text":"a"},{"type":"image_url"}]}],"n":null}`,
		`{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{"include_usage":true},"stop":["a","b"],"temperature":1.5,"logprobs":true,"top_logprobs":20}`,
		`{"model":"m","messages":[{"role":"tool","content":"x"}],"tools":[{}]}`,
		`{"model":"m","messages":[{"role":"user","content":"w?"},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},{"role":"tool","tool_call_id":"c1","content":"ok"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"]}}}],"tool_choice":{"type":"function","function":{"name":"f"}},"parallel_tool_calls":false}`,
		`{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"$ref":"#/$defs/a","$defs":{"a":{"type":["string","null"]}}}}}],"tool_choice":"required"}`,
		`{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"p","strict":true,"schema":{"type":"object","properties":{"a":{"type":"strin"}}}}}}`,
		`{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"}}`,
		`{"model":"m","messages":[{"role":"user"}],"max_tokens":1e3,"max_completion_tokens":-1}`,
		`[]`, `null`, ``, `{"model":`,
	} {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, e := ParseChat(body)
		checkParsed(t, p, e, protocol.KindChat)
	})
}

func FuzzParseCompletion(f *testing.F) {
	for _, body := range []string{
		`{"model":"m","prompt":"Once"}`,
		`{"model":"m","prompt":["Once"],"logprobs":5,"echo":false,"best_of":1}`,
		`{"model":"m","prompt":[[1,2]],"suffix":"x"}`,
		`{"model":"m","prompt":null,"stop":"\n","seed":-9223372036854775808}`,
		`{"model":"m","prompt":"p","max_tokens":2147483648}`,
		`"x"`, `{}`,
	} {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, e := ParseCompletion(body)
		checkParsed(t, p, e, protocol.KindGenerate)
	})
}

func FuzzParseResponses(f *testing.F) {
	for _, body := range []string{
		`{"model":"m","input":"hi"}`,
		`{"model":"m","instructions":"be brief","input":[{"role":"developer","content":[{"type":"input_text","text":"a"}]},{"type":"message","role":"assistant","content":[{"type":"output_text","text":"b","annotations":[]}]}]}`,
		`{"model":"m","input":"x","stream":true,"max_output_tokens":16,"text":{"format":{"type":"text"},"verbosity":"low"},"metadata":{"k":"v"},"include":["message.output_text.logprobs"],"top_logprobs":2}`,
		`{"model":"m","input":[{"type":"function_call","call_id":"c","name":"f","arguments":"{}"}],"tools":[{"type":"function","name":"f"}]}`,
		`{"model":"m","input":[{"role":"user","content":[{"type":"input_image"}]}],"previous_response_id":"resp_1","store":false}`,
		`{"model":"m","input":[],"text":{"format":{"type":"json_schema"}}}`,
		`{"model":"m","tools":[{"type":"function","name":"f","parameters":{"type":"object"}}],"tool_choice":{"type":"function","name":"f"},"input":[{"type":"function_call","call_id":"c","name":"f","arguments":"{}"},{"type":"function_call_output","call_id":"c","output":[{"type":"input_text","text":"1"}]}],"text":{"format":{"type":"json_schema","name":"s","schema":{"type":"object"}}}}`,
		`{"input":"x"}`, `[]`, `null`, ``,
	} {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, e := ParseResponses(body)
		checkParsed(t, p, e, protocol.KindChat)
		if e == nil && (p.Responses == nil || p.Responses.Metadata == nil || len(p.Responses.Metadata) > maxMetadataPairs || p.IncludeUsage) {
			t.Fatalf("accepted without a usable response echo %+v", p)
		}
	})
}
