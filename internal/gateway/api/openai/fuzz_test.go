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
	if p.Request.ImageCount() > protocol.MaxImages || p.N == 1 || p.N > MaxChoices || p.N < 0 {
		t.Fatalf("accepted out-of-range images or n %+v", p)
	}
}

func FuzzParseChat(f *testing.F) {
	for _, body := range []string{
		`{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,aGk="}}]}],"n":3}`,
		`{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}`,
		`{"model":"m","messages":[{"role":"developer","content":[{"type":"text","text":"a"},{"type":"image_url"}]}],"n":null}`,
		`{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{"include_usage":true},"stop":["a","b"],"temperature":1.5,"logprobs":true,"top_logprobs":20}`,
		`{"model":"m","messages":[{"role":"tool","content":"x"}],"tools":[{}]}`,
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
