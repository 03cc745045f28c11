package ollama

import (
	"net/http"
	"testing"

	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// checkParsed is the property every parser keeps on any input: either a
// usable request or a 400 that says what is wrong.
func checkParsed(t *testing.T, p Params, e *apierr.Error, kind protocol.Kind) {
	t.Helper()
	if e != nil {
		if e.Status != http.StatusBadRequest || e.Message == "" || e.Code == "" {
			t.Fatalf("bad error %+v", e)
		}
		return
	}
	if p.Request.Model == "" || p.Request.Kind != kind {
		t.Fatalf("accepted an unusable request %+v", p)
	}
	if p.Request.Options.MaxTokens < 0 || (p.Unload && !p.LoadOnly) {
		t.Fatalf("inconsistent params %+v", p)
	}
	if !p.LoadOnly && kind == protocol.KindChat && len(p.Request.Messages) == 0 {
		t.Fatalf("a chat without messages is not LoadOnly: %+v", p)
	}
	if !p.LoadOnly && kind == protocol.KindGenerate && p.Request.Prompt == "" {
		t.Fatalf("a generate without prompt is not LoadOnly: %+v", p)
	}
}

func FuzzParseChat(f *testing.F) {
	for _, body := range []string{
		`{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"m","messages":[{"role":"USER","content":"hi","images":null}],"stream":false,"options":{"num_predict":-1,"seed":-1,"stop":["a"]}}`,
		`{"model":"m","messages":[],"keep_alive":"0s"}`,
		`{"model":"m","messages":[{"role":"tool"}],"tools":[{}],"format":{"type":"object"}}`,
		`{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c","function":{"index":0,"name":"f","arguments":{"a":[1,{"b":null}]}}}]},{"role":"tool","tool_name":"f","content":"r"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","required":null,"properties":{"a":{"type":"array"}}}}}]}`,
		`{"model":"m","messages":[{"role":"user","content":"x"}],"format":"json"}`,
		`{"model":"m","messages":[{"role":"user","content":"x"}],"format":{"type":"object","required":"a"}}`,
		`{"model":"m","options":{"temperature":-1,"top_p":"x"}}`,
		`[]`, `null`, ``, `{"model":`,
	} {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, e := ParseChat(body)
		checkParsed(t, p, e, protocol.KindChat)
	})
}

func FuzzParseGenerate(f *testing.F) {
	for _, body := range []string{
		`{"model":"m","prompt":"Why?","suffix":"","system":"","template":"","options":null}`,
		`{"model":"m","prompt":"p","raw":true,"system":"s","context":[1,2]}`,
		`{"model":"m","keep_alive":0}`,
		`{"model":"m","prompt":"p","images":["aGk="],"format":"json"}`,
		`{"model":"m","prompt":"p","options":{"num_predict":1e12}}`,
		`"x"`, `{}`,
	} {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, e := ParseGenerate(body)
		checkParsed(t, p, e, protocol.KindGenerate)
	})
}
