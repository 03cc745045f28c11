package openai

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/gateway/sink"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

func testMeta() sink.Meta {
	return sink.Meta{RequestID: "req-1", Model: "m", Created: time.Unix(1700000000, 0)}
}

func testFinal() sink.Final {
	return sink.Final{FinishReason: "stop", Usage: protocol.Usage{PromptTokens: 5, CompletionTokens: 3}}
}

// play drives s like the relay does: Begin, the deltas, then End — or Fail
// after failAfter deltas (failAfter < 0: before Begin).
func play(t *testing.T, s sink.Sink, deltas []sink.Delta, failAfter int, fail *apierr.Error) {
	t.Helper()
	if failAfter < 0 {
		s.Fail(fail)
		return
	}
	if err := s.Begin(testMeta()); err != nil {
		t.Fatalf("Begin: %v", err)
	}
	for i, d := range deltas {
		if fail != nil && i == failAfter {
			s.Fail(fail)
			return
		}
		if err := s.Delta(d); err != nil {
			t.Fatalf("Delta: %v", err)
		}
	}
	if fail != nil {
		s.Fail(fail)
		return
	}
	if err := s.End(testFinal()); err != nil {
		t.Fatalf("End: %v", err)
	}
}

func threeDeltas() []sink.Delta {
	return []sink.Delta{{Text: "Hel"}, {Text: "lo <b>"}, {Text: " world"}}
}

const chunkHead = `data: {"id":"req-1","object":"chat.completion.chunk","created":1700000000,"model":"m","system_fingerprint":null,"choices":[`

func checkSSEHeaders(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	want := map[string]string{
		"Content-Type":      "text/event-stream",
		"Cache-Control":     "no-cache",
		"Connection":        "keep-alive",
		"X-Accel-Buffering": "no",
		"X-Request-Id":      "req-1",
	}
	for k, v := range want {
		if got := rec.Header().Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	if rec.Code != http.StatusOK || !rec.Flushed {
		t.Errorf("status %d flushed %v, want 200 and flushed", rec.Code, rec.Flushed)
	}
}

func checkBody(t *testing.T, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("body mismatch\n got: %s\nwant: %s", got, want)
	}
}

func TestChatSinkStream(t *testing.T) {
	rec := httptest.NewRecorder()
	play(t, NewChatSink(rec, Params{Stream: true}), threeDeltas(), 0, nil)
	checkSSEHeaders(t, rec)
	checkBody(t, rec.Body.String(), ""+
		chunkHead+`{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]}`+"\n\n"+
		chunkHead+`{"index":0,"delta":{"content":"Hel"},"logprobs":null,"finish_reason":null}]}`+"\n\n"+
		chunkHead+`{"index":0,"delta":{"content":"lo <b>"},"logprobs":null,"finish_reason":null}]}`+"\n\n"+
		chunkHead+`{"index":0,"delta":{"content":" world"},"logprobs":null,"finish_reason":null}]}`+"\n\n"+
		chunkHead+`{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}`+"\n\n"+
		"data: [DONE]\n\n")
}

func TestChatSinkStreamUsage(t *testing.T) {
	rec := httptest.NewRecorder()
	play(t, NewChatSink(rec, Params{Stream: true, IncludeUsage: true}), threeDeltas(), 0, nil)
	checkSSEHeaders(t, rec)
	checkBody(t, rec.Body.String(), ""+
		chunkHead+`{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}`+"\n\n"+
		chunkHead+`{"index":0,"delta":{"content":"Hel"},"logprobs":null,"finish_reason":null}],"usage":null}`+"\n\n"+
		chunkHead+`{"index":0,"delta":{"content":"lo <b>"},"logprobs":null,"finish_reason":null}],"usage":null}`+"\n\n"+
		chunkHead+`{"index":0,"delta":{"content":" world"},"logprobs":null,"finish_reason":null}],"usage":null}`+"\n\n"+
		chunkHead+`{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}`+"\n\n"+
		chunkHead+`],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}`+"\n\n"+
		"data: [DONE]\n\n")
}

func TestChatSinkStreamFailAfterBegin(t *testing.T) {
	rec := httptest.NewRecorder()
	play(t, NewChatSink(rec, Params{Stream: true}), threeDeltas(), 1, apierr.Upstream("the provider disconnected"))
	checkSSEHeaders(t, rec)
	checkBody(t, rec.Body.String(), ""+
		chunkHead+`{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]}`+"\n\n"+
		chunkHead+`{"index":0,"delta":{"content":"Hel"},"logprobs":null,"finish_reason":null}]}`+"\n\n"+
		`data: {"error":{"message":"the provider disconnected","type":"server_error","param":null,"code":"provider_error"}}`+"\n\n")
}

func TestChatSinkFailBeforeBegin(t *testing.T) {
	for _, stream := range []bool{true, false} {
		rec := httptest.NewRecorder()
		play(t, NewChatSink(rec, Params{Stream: stream}), nil, -1, apierr.Overloaded("all providers are busy"))
		if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Content-Type") != "application/json" {
			t.Errorf("stream=%v: status %d content-type %q", stream, rec.Code, rec.Header().Get("Content-Type"))
		}
		checkBody(t, rec.Body.String(), `{"error":{"message":"all providers are busy","type":"rate_limit_error","param":null,"code":"providers_busy"}}`+"\n")
	}
}

func TestChatSinkNonStream(t *testing.T) {
	rec := httptest.NewRecorder()
	play(t, NewChatSink(rec, Params{}), threeDeltas(), 0, nil)
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" || rec.Header().Get("X-Request-Id") != "req-1" {
		t.Errorf("status %d headers %v", rec.Code, rec.Header())
	}
	checkBody(t, rec.Body.String(), `{"id":"req-1","object":"chat.completion","created":1700000000,"model":"m",`+
		`"choices":[{"index":0,"message":{"role":"assistant","content":"Hello <b> world","refusal":null},"logprobs":null,"finish_reason":"stop"}],`+
		`"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8},"system_fingerprint":null}`+"\n")
}

func TestChatSinkNonStreamFailAfterBegin(t *testing.T) {
	rec := httptest.NewRecorder()
	play(t, NewChatSink(rec, Params{}), threeDeltas(), 2, apierr.Upstream("the provider disconnected"))
	if rec.Code != http.StatusBadGateway || rec.Header().Get("X-Request-Id") != "req-1" {
		t.Errorf("status %d headers %v", rec.Code, rec.Header())
	}
	checkBody(t, rec.Body.String(), `{"error":{"message":"the provider disconnected","type":"server_error","param":null,"code":"provider_error"}}`+"\n")
}

func logprobDeltas() []sink.Delta {
	return []sink.Delta{
		{Text: "Hé", Logprobs: []protocol.TokenLogprob{
			{Token: "H", Logprob: -0.5, Top: []protocol.TopLogprob{{Token: "H", Logprob: -0.5}, {Token: "J", Logprob: -1}, {Token: "K", Logprob: -2}}},
			{Token: "é", Logprob: -0.25, Top: []protocol.TopLogprob{{Token: "é", Logprob: -0.25}, {Token: "é", Logprob: -3}}},
		}},
		{Text: "!", Logprobs: []protocol.TokenLogprob{{Token: "!", Logprob: -1}}},
	}
}

func TestChatSinkLogprobs(t *testing.T) {
	p := Params{Stream: true}
	p.Request.Options = protocol.Options{Logprobs: true, TopLogprobs: 2}
	rec := httptest.NewRecorder()
	play(t, NewChatSink(rec, p), logprobDeltas(), 0, nil)
	events := strings.Split(rec.Body.String(), "\n\n")
	checkBody(t, events[1], chunkHead+`{"index":0,"delta":{"content":"Hé"},"logprobs":{"content":[`+
		`{"token":"H","logprob":-0.5,"bytes":[72],"top_logprobs":[{"token":"H","logprob":-0.5,"bytes":[72]},{"token":"J","logprob":-1,"bytes":[74]}]},`+
		`{"token":"é","logprob":-0.25,"bytes":[195,169],"top_logprobs":[{"token":"é","logprob":-0.25,"bytes":[195,169]},{"token":"é","logprob":-3,"bytes":[195,169]}]}],`+
		`"refusal":null},"finish_reason":null}]}`)

	p.Stream = false
	rec = httptest.NewRecorder()
	play(t, NewChatSink(rec, p), logprobDeltas(), 0, nil)
	if want := `"logprobs":{"content":[{"token":"H",`; !strings.Contains(rec.Body.String(), want) ||
		!strings.Contains(rec.Body.String(), `{"token":"!","logprob":-1,"bytes":[33],"top_logprobs":[]}],"refusal":null}`) {
		t.Errorf("non-streaming logprobs missing: %s", rec.Body.String())
	}
}

const completionHead = `data: {"id":"req-1","object":"text_completion","created":1700000000,"model":"m","system_fingerprint":null,"choices":[`

func TestCompletionSinkStream(t *testing.T) {
	for _, inc := range []bool{false, true} {
		rec := httptest.NewRecorder()
		play(t, NewCompletionSink(rec, Params{Stream: true, IncludeUsage: inc}), threeDeltas(), 0, nil)
		checkSSEHeaders(t, rec)
		u := ""
		if inc {
			u = `,"usage":null`
		}
		want := "" +
			completionHead + `{"text":"Hel","index":0,"logprobs":null,"finish_reason":null}]` + u + "}\n\n" +
			completionHead + `{"text":"lo <b>","index":0,"logprobs":null,"finish_reason":null}]` + u + "}\n\n" +
			completionHead + `{"text":" world","index":0,"logprobs":null,"finish_reason":null}]` + u + "}\n\n" +
			completionHead + `{"text":"","index":0,"logprobs":null,"finish_reason":"stop"}]` + u + "}\n\n"
		if inc {
			want += completionHead + `],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}` + "\n\n"
		}
		checkBody(t, rec.Body.String(), want+"data: [DONE]\n\n")
	}
}

func TestCompletionSinkNonStream(t *testing.T) {
	rec := httptest.NewRecorder()
	play(t, NewCompletionSink(rec, Params{}), threeDeltas(), 0, nil)
	checkBody(t, rec.Body.String(), `{"id":"req-1","object":"text_completion","created":1700000000,"model":"m","system_fingerprint":null,`+
		`"choices":[{"text":"Hello <b> world","index":0,"logprobs":null,"finish_reason":"stop"}],`+
		`"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}`+"\n")
}

func TestCompletionSinkFail(t *testing.T) {
	rec := httptest.NewRecorder()
	play(t, NewCompletionSink(rec, Params{Stream: true}), threeDeltas(), 1, apierr.Upstream("the provider disconnected"))
	checkBody(t, rec.Body.String(), completionHead+`{"text":"Hel","index":0,"logprobs":null,"finish_reason":null}]}`+"\n\n"+
		`data: {"error":{"message":"the provider disconnected","type":"server_error","param":null,"code":"provider_error"}}`+"\n\n")

	rec = httptest.NewRecorder()
	play(t, NewCompletionSink(rec, Params{Stream: true}), nil, -1, apierr.Invalid("prompt", "prompt is too long"))
	if rec.Code != http.StatusBadRequest {
		t.Errorf("status %d", rec.Code)
	}
	checkBody(t, rec.Body.String(), `{"error":{"message":"prompt is too long","type":"invalid_request_error","param":"prompt","code":"invalid_request"}}`+"\n")
}

func TestCompletionSinkLogprobs(t *testing.T) {
	p := Params{}
	p.Request.Options = protocol.Options{Logprobs: true, TopLogprobs: 2}
	rec := httptest.NewRecorder()
	play(t, NewCompletionSink(rec, p), logprobDeltas(), 0, nil)
	want := `"logprobs":{"tokens":["H","é","!"],"token_logprobs":[-0.5,-0.25,-1],` +
		`"top_logprobs":[{"H":-0.5,"J":-1},{"é":-0.25},{}],"text_offset":[0,1,2]}`
	if !strings.Contains(rec.Body.String(), want) {
		t.Errorf("body %s\nlacks %s", rec.Body.String(), want)
	}

	p.Request.Options.TopLogprobs = 0
	p.Stream = true
	rec = httptest.NewRecorder()
	play(t, NewCompletionSink(rec, p), logprobDeltas(), 0, nil)
	events := strings.Split(rec.Body.String(), "\n\n")
	checkBody(t, events[1], completionHead+`{"text":"!","index":0,"logprobs":{"tokens":["!"],"token_logprobs":[-1],"top_logprobs":null,"text_offset":[2]},"finish_reason":null}]}`)
}

func TestSinkOutOfOrder(t *testing.T) {
	for _, s := range []sink.Sink{NewChatSink(httptest.NewRecorder(), Params{Stream: true}), NewCompletionSink(httptest.NewRecorder(), Params{}),
		NewResponsesSink(httptest.NewRecorder(), Params{Stream: true}), NewResponsesSink(httptest.NewRecorder(), Params{})} {
		if s.Delta(sink.Delta{Text: "x"}) == nil || s.End(testFinal()) == nil {
			t.Error("Delta/End before Begin succeeded")
		}
		if err := s.Begin(testMeta()); err != nil {
			t.Fatal(err)
		}
		if s.Begin(testMeta()) == nil {
			t.Error("second Begin succeeded")
		}
		if err := s.End(testFinal()); err != nil {
			t.Fatal(err)
		}
		if s.Delta(sink.Delta{Text: "x"}) == nil {
			t.Error("Delta after End succeeded")
		}
		s.Fail(apierr.Internal("late")) // must be ignored, not written
	}
}

// failingWriter fails every write, like a consumer that went away.
type failingWriter struct{ *httptest.ResponseRecorder }

func (failingWriter) Write([]byte) (int, error) { return 0, http.ErrHandlerTimeout }

func TestSinkWriteErrorIsReturned(t *testing.T) {
	s := NewChatSink(failingWriter{httptest.NewRecorder()}, Params{Stream: true})
	if err := s.Begin(testMeta()); err == nil {
		t.Error("Begin on a dead connection succeeded")
	}
	s = NewChatSink(failingWriter{httptest.NewRecorder()}, Params{})
	if err := s.Begin(testMeta()); err != nil {
		t.Fatal(err)
	}
	if err := s.End(testFinal()); err == nil {
		t.Error("End on a dead connection succeeded")
	}
}

// TestChatSinkToolCalls: a tool call is OpenAI's, streamed as a chunk with
// its index, id, type, name and empty arguments, then its arguments in
// fragments under the same index, and finish_reason tool_calls; not
// streamed, message.tool_calls with content null.
func TestChatSinkToolCalls(t *testing.T) {
	calls := []sink.Delta{{ToolCalls: []protocol.ToolCall{{ID: "call_1", Name: "get_weather", Arguments: `{"city":"Paris, France"}`}}}}
	rec := httptest.NewRecorder()
	play(t, NewChatSink(rec, Params{}), calls, 0, nil)
	checkBody(t, rec.Body.String(), `{"id":"req-1","object":"chat.completion","created":1700000000,"model":"m",`+
		`"choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris, France\"}"}}]},"logprobs":null,"finish_reason":"tool_calls"}],`+
		`"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8},"system_fingerprint":null}`+"\n")

	rec = httptest.NewRecorder()
	play(t, NewChatSink(rec, Params{Stream: true}), calls, 0, nil)
	head := `data: {"id":"req-1","object":"chat.completion.chunk","created":1700000000,"model":"m","system_fingerprint":null,"choices":[{"index":0,"delta":`
	tail := `,"logprobs":null,"finish_reason":null}]}` + "\n\n"
	checkBody(t, rec.Body.String(), head+`{"role":"assistant","content":"","refusal":null}`+tail+
		head+`{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]}`+tail+
		head+`{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":\"Paris, "}}]}`+tail+
		head+`{"tool_calls":[{"index":0,"function":{"arguments":"France\"}"}}]}`+tail+
		head+`{},"logprobs":null,"finish_reason":"tool_calls"}]}`+"\n\n"+
		"data: [DONE]\n\n")
}
