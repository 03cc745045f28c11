package openai

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/gateway/sink"
)

// TestChatChoicesStream: chunks of two choices interleave with their
// indexes; the finish chunks come per choice, then usage (summed) and
// [DONE] after the last.
func TestChatChoicesStream(t *testing.T) {
	rec := httptest.NewRecorder()
	cancelled := false
	ss := NewChatChoices(rec, Params{Stream: true, IncludeUsage: true, N: 2}, testMeta(), func() { cancelled = true })
	steps := []func() error{
		func() error { return ss[1].Begin(sink.Meta{RequestID: "req-1-n1"}) },
		func() error { return ss[1].Delta(sink.Delta{Text: "B"}) },
		func() error { return ss[0].Begin(sink.Meta{RequestID: "req-1"}) },
		func() error { return ss[0].Delta(sink.Delta{Text: "A"}) },
		func() error { return ss[1].End(testFinal()) },
		func() error { return ss[0].End(testFinal()) },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	env := `"id":"req-1","object":"chat.completion.chunk","created":1700000000,"model":"m","system_fingerprint":null`
	want := strings.Join([]string{
		`{` + env + `,"choices":[{"index":1,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}`,
		`{` + env + `,"choices":[{"index":1,"delta":{"content":"B"},"logprobs":null,"finish_reason":null}],"usage":null}`,
		`{` + env + `,"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}`,
		`{` + env + `,"choices":[{"index":0,"delta":{"content":"A"},"logprobs":null,"finish_reason":null}],"usage":null}`,
		`{` + env + `,"choices":[{"index":1,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}`,
		`{` + env + `,"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}`,
		`{` + env + `,"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":6,"total_tokens":16}}`,
		`[DONE]`,
	}, "\n\ndata: ")
	check(t, rec, http.StatusOK, "text/event-stream", "data: "+want+"\n\n")
	if cancelled {
		t.Error("a successful response cancelled its choices")
	}
}

// TestChatChoicesBuffered: one body with the choices in index order once
// every choice ended; a failure of any choice fails the response, cancels
// the others, and their later calls are refused.
func TestChatChoicesBuffered(t *testing.T) {
	rec := httptest.NewRecorder()
	ss := NewChatChoices(rec, Params{N: 2}, testMeta(), func() {})
	for _, i := range []int{1, 0} {
		if err := ss[i].Begin(testMeta()); err != nil {
			t.Fatal(err)
		}
		if err := ss[i].Delta(sink.Delta{Text: string(rune('A' + i))}); err != nil {
			t.Fatal(err)
		}
		if err := ss[i].End(testFinal()); err != nil {
			t.Fatal(err)
		}
	}
	check(t, rec, http.StatusOK, "application/json", `{"id":"req-1","object":"chat.completion","created":1700000000,"model":"m","choices":[`+
		`{"index":0,"message":{"role":"assistant","content":"A","refusal":null},"logprobs":null,"finish_reason":"stop"},`+
		`{"index":1,"message":{"role":"assistant","content":"B","refusal":null},"logprobs":null,"finish_reason":"stop"}],`+
		`"usage":{"prompt_tokens":10,"completion_tokens":6,"total_tokens":16},"system_fingerprint":null}`+"\n")

	rec = httptest.NewRecorder()
	cancelled := 0
	ss = NewChatChoices(rec, Params{N: 2}, testMeta(), func() { cancelled++ })
	if err := ss[0].Begin(testMeta()); err != nil {
		t.Fatal(err)
	}
	if err := ss[0].End(testFinal()); err != nil {
		t.Fatal(err)
	}
	ss[1].Fail(apierr.Upstream("the provider failed"))
	ss[0].Fail(apierr.Upstream("again"))
	if cancelled != 1 || rec.Code != http.StatusBadGateway || !strings.Contains(rec.Body.String(), "the provider failed") {
		t.Errorf("after a failed choice: cancelled %d, %d %s", cancelled, rec.Code, rec.Body)
	}
	if err := ss[1].Begin(testMeta()); err == nil {
		t.Error("a choice began after the response failed")
	}
}

func check(t *testing.T, rec *httptest.ResponseRecorder, status int, contentType, body string) {
	t.Helper()
	if rec.Code != status || rec.Header().Get("Content-Type") != contentType {
		t.Errorf("status %d %q, want %d %q", rec.Code, rec.Header().Get("Content-Type"), status, contentType)
	}
	if got := rec.Body.String(); got != body {
		t.Errorf("body\n%s\nwant\n%s", got, body)
	}
}
