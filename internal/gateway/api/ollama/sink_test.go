package ollama

import (
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/gateway/sink"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// fixedNow makes created_at deterministic; a non-UTC zone checks that
// output is in UTC.
func fixedNow() time.Time {
	return time.Date(2024, 5, 6, 9, 8, 7, 123456789, time.FixedZone("X", 2*3600))
}

const stamp = `"created_at":"2024-05-06T07:08:07.123456789Z"`

func testMeta() sink.Meta {
	return sink.Meta{RequestID: "req-1", Model: "m", Created: time.Unix(1700000000, 0)}
}

func testFinal() sink.Final {
	return sink.Final{
		FinishReason: "length",
		Usage:        protocol.Usage{PromptTokens: 5, CompletionTokens: 3},
		Total:        900 * time.Millisecond, FirstToken: 200 * time.Millisecond, Eval: 700 * time.Millisecond,
	}
}

const counters = `"total_duration":900000000,"load_duration":0,"prompt_eval_count":5,"prompt_eval_duration":200000000,"eval_count":3,"eval_duration":700000000`

// play drives s like the relay: Begin, deltas, End — or Fail after
// failAfter deltas (failAfter < 0: before Begin).
func play(t *testing.T, s sink.Sink, failAfter int, fail *apierr.Error) {
	t.Helper()
	if failAfter < 0 {
		s.Fail(fail)
		return
	}
	if err := s.Begin(testMeta()); err != nil {
		t.Fatalf("Begin: %v", err)
	}
	for i, text := range []string{"Hel", "lo <b>", " world"} {
		if fail != nil && i == failAfter {
			s.Fail(fail)
			return
		}
		if err := s.Delta(sink.Delta{Text: text}); err != nil {
			t.Fatalf("Delta: %v", err)
		}
	}
	if err := s.End(testFinal()); err != nil {
		t.Fatalf("End: %v", err)
	}
}

func check(t *testing.T, rec *httptest.ResponseRecorder, status int, contentType, body string) {
	t.Helper()
	if rec.Code != status || rec.Header().Get("Content-Type") != contentType {
		t.Errorf("status %d content-type %q, want %d %q", rec.Code, rec.Header().Get("Content-Type"), status, contentType)
	}
	if got := rec.Body.String(); got != body {
		t.Errorf("body mismatch\n got: %s\nwant: %s", got, body)
	}
}

func TestChatSinkStream(t *testing.T) {
	rec := httptest.NewRecorder()
	play(t, newSink(rec, Params{Stream: true}, true, fixedNow), 0, nil)
	head := `{"model":"m",` + stamp + `,"message":{"role":"assistant","content":`
	check(t, rec, http.StatusOK, "application/x-ndjson", ""+
		head+`"Hel"},"done":false}`+"\n"+
		head+`"lo <b>"},"done":false}`+"\n"+
		head+`" world"},"done":false}`+"\n"+
		head+`""},"done_reason":"length","done":true,`+counters+"}\n")
	if rec.Header().Get("X-Request-Id") != "req-1" || !rec.Flushed {
		t.Errorf("headers %v flushed %v", rec.Header(), rec.Flushed)
	}
}

func TestGenerateSinkStream(t *testing.T) {
	rec := httptest.NewRecorder()
	play(t, newSink(rec, Params{Stream: true}, false, fixedNow), 0, nil)
	head := `{"model":"m",` + stamp + `,"response":`
	check(t, rec, http.StatusOK, "application/x-ndjson", ""+
		head+`"Hel","done":false}`+"\n"+
		head+`"lo <b>","done":false}`+"\n"+
		head+`" world","done":false}`+"\n"+
		head+`"","done":true,"done_reason":"length",`+counters+"}\n")
}

func TestSinkNonStream(t *testing.T) {
	rec := httptest.NewRecorder()
	play(t, newSink(rec, Params{}, true, fixedNow), 0, nil)
	check(t, rec, http.StatusOK, "application/json",
		`{"model":"m",`+stamp+`,"message":{"role":"assistant","content":"Hello <b> world"},"done_reason":"length","done":true,`+counters+"}\n")

	rec = httptest.NewRecorder()
	play(t, newSink(rec, Params{}, false, fixedNow), 0, nil)
	check(t, rec, http.StatusOK, "application/json",
		`{"model":"m",`+stamp+`,"response":"Hello <b> world","done":true,"done_reason":"length",`+counters+"}\n")
}

// TestSinkLogprobs: log-probabilities in Ollama's exact shape (token,
// logprob, bytes, top_logprobs cut to what was asked), on each streamed
// line and gathered on the non-streaming one; none unless asked.
func TestSinkLogprobs(t *testing.T) {
	lp := func(tok string, l float64) protocol.TokenLogprob {
		return protocol.TokenLogprob{Token: tok, Logprob: l, Top: []protocol.TopLogprob{{Token: tok, Logprob: l}, {Token: "é", Logprob: -2}, {Token: "z", Logprob: -3}}}
	}
	run := func(p Params, chat bool) string {
		rec := httptest.NewRecorder()
		s := newSink(rec, p, chat, fixedNow)
		if err := s.Begin(testMeta()); err != nil {
			t.Fatal(err)
		}
		for _, d := range []sink.Delta{{Text: "a", Logprobs: []protocol.TokenLogprob{lp("a", -0.5)}}, {Text: "b", Logprobs: []protocol.TokenLogprob{lp("b", math.Inf(-1))}}} {
			if err := s.Delta(d); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.End(testFinal()); err != nil {
			t.Fatal(err)
		}
		return rec.Body.String()
	}
	asked := Params{Stream: true, Request: protocol.Request{Options: protocol.Options{Logprobs: true, TopLogprobs: 2}}}
	a := `{"token":"a","logprob":-0.5,"bytes":[97],"top_logprobs":[{"token":"a","logprob":-0.5,"bytes":[97]},{"token":"é","logprob":-2,"bytes":[195,169]}]}`
	b := `{"token":"b","logprob":-9999,"bytes":[98],"top_logprobs":[{"token":"b","logprob":-9999,"bytes":[98]},{"token":"é","logprob":-2,"bytes":[195,169]}]}`
	head := `{"model":"m",` + stamp + `,"response":`
	want := head + `"a","done":false,"logprobs":[` + a + `]}` + "\n" +
		head + `"b","done":false,"logprobs":[` + b + `]}` + "\n" +
		head + `"","done":true,"done_reason":"length",` + counters + "}\n"
	if got := run(asked, false); got != want {
		t.Errorf("generate stream\n got: %s\nwant: %s", got, want)
	}
	asked.Stream = false
	want = `{"model":"m",` + stamp + `,"message":{"role":"assistant","content":"ab"},"done_reason":"length","done":true,"logprobs":[` + a + `,` + b + `],` + counters + "}\n"
	if got := run(asked, true); got != want {
		t.Errorf("chat\n got: %s\nwant: %s", got, want)
	}
	if got := run(Params{}, true); strings.Contains(got, "logprobs") {
		t.Errorf("not asked, yet: %s", got)
	}
}

func TestSinkFail(t *testing.T) {
	rec := httptest.NewRecorder()
	play(t, newSink(rec, Params{Stream: true}, true, fixedNow), 1, apierr.Upstream("the provider disconnected"))
	check(t, rec, http.StatusOK, "application/x-ndjson",
		`{"model":"m",`+stamp+`,"message":{"role":"assistant","content":"Hel"},"done":false}`+"\n"+
			`{"error":"the provider disconnected"}`+"\n")

	for _, stream := range []bool{true, false} {
		rec = httptest.NewRecorder()
		play(t, newSink(rec, Params{Stream: stream}, false, fixedNow), -1, apierr.Overloaded("all providers are busy"))
		check(t, rec, http.StatusTooManyRequests, "application/json", `{"error":"all providers are busy"}`+"\n")
	}

	rec = httptest.NewRecorder()
	play(t, newSink(rec, Params{}, false, fixedNow), 2, apierr.Upstream("the provider disconnected"))
	check(t, rec, http.StatusBadGateway, "application/json", `{"error":"the provider disconnected"}`+"\n")
}

func TestSinkOutOfOrder(t *testing.T) {
	s := NewGenerateSink(httptest.NewRecorder(), Params{Stream: true})
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
	if s.End(testFinal()) == nil {
		t.Error("second End succeeded")
	}
}

func TestWriteLoaded(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteLoaded(rec, Params{Stream: true, LoadOnly: true, Request: protocol.Request{Kind: protocol.KindGenerate, Model: "m"}}, fixedNow())
	check(t, rec, http.StatusOK, "application/json", `{"model":"m",`+stamp+`,"response":"","done":true,"done_reason":"load"}`+"\n")

	rec = httptest.NewRecorder()
	WriteLoaded(rec, Params{LoadOnly: true, Unload: true, Request: protocol.Request{Kind: protocol.KindChat, Model: "m"}}, fixedNow())
	check(t, rec, http.StatusOK, "application/json", `{"model":"m",`+stamp+`,"message":{"role":"assistant","content":""},"done_reason":"unload","done":true}`+"\n")
}

func TestCatalogGolden(t *testing.T) {
	m := Model{Name: "llama3.2:1b", Digest: "sha256:abc123", Family: "llama", ParameterSize: "1.2B", Quantization: "Q8_0",
		ContextLength: 131072, SizeBytes: 1321098329, ModifiedAt: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)}
	rec := httptest.NewRecorder()
	WriteTags(rec, []Model{m})
	check(t, rec, http.StatusOK, "application/json", `{"models":[{"name":"llama3.2:1b","model":"llama3.2:1b","modified_at":"2024-01-02T03:04:05Z",`+
		`"size":1321098329,"digest":"abc123","details":{"parent_model":"","format":"gguf","family":"llama","families":["llama"],`+
		`"parameter_size":"1.2B","quantization_level":"Q8_0"}}]}`+"\n")

	rec = httptest.NewRecorder()
	WriteTags(rec, nil)
	check(t, rec, http.StatusOK, "application/json", `{"models":[]}`+"\n")

	rec = httptest.NewRecorder()
	WriteShow(rec, m)
	check(t, rec, http.StatusOK, "application/json", `{"modelfile":"# Modelfile generated by idlegrid: the model is served by the network's providers\n`+
		`# digest: sha256:abc123\nFROM llama3.2:1b\n","parameters":"","template":"",`+
		`"details":{"parent_model":"","format":"gguf","family":"llama","families":["llama"],"parameter_size":"1.2B","quantization_level":"Q8_0"},`+
		`"model_info":{"general.architecture":"llama","llama.context_length":131072},"capabilities":["completion"],"modified_at":"2024-01-02T03:04:05Z"}`+"\n")

	// A provider's own Ollama digest shows beside the identity.
	m.BackendDigest = "sha256:def456"
	rec = httptest.NewRecorder()
	WriteTags(rec, []Model{m})
	if b := rec.Body.String(); !strings.Contains(b, `"digest":"abc123","backend_digest":"def456"`) {
		t.Errorf("tags: %s", b)
	}
	rec = httptest.NewRecorder()
	WriteShow(rec, m)
	if b := rec.Body.String(); !strings.Contains(b, `# digest: sha256:abc123\n# backend digest: sha256:def456 (a provider's own Ollama digest)\nFROM`) {
		t.Errorf("show: %s", b)
	}

	rec = httptest.NewRecorder()
	WriteVersion(rec, "1.2.3")
	check(t, rec, http.StatusOK, "application/json", `{"version":"1.2.3"}`+"\n")
}

// failingWriter fails every write, like a consumer that went away.
type failingWriter struct{ *httptest.ResponseRecorder }

func (failingWriter) Write([]byte) (int, error) { return 0, http.ErrHandlerTimeout }

func TestSinkWriteErrorIsReturned(t *testing.T) {
	s := NewChatSink(failingWriter{httptest.NewRecorder()}, Params{Stream: true})
	if err := s.Begin(testMeta()); err != nil {
		t.Fatal(err) // only headers so far
	}
	if err := s.Delta(sink.Delta{Text: "x"}); err == nil {
		t.Error("Delta on a dead connection succeeded")
	}
	s = NewGenerateSink(failingWriter{httptest.NewRecorder()}, Params{})
	if err := s.Begin(testMeta()); err != nil {
		t.Fatal(err)
	}
	if err := s.End(testFinal()); err == nil {
		t.Error("End on a dead connection succeeded")
	}
}

// TestChatSinkToolCalls: tool calls are Ollama's message.tool_calls, the
// arguments an object and index counting the answer's calls: on the line
// that carries them when streaming, in the one message otherwise.
func TestChatSinkToolCalls(t *testing.T) {
	calls := []protocol.ToolCall{{ID: "call_1", Name: "get_weather", Arguments: `{"city":"Paris"}`}}
	second := []protocol.ToolCall{{Name: "f", Arguments: `{}`}}
	const first = `"tool_calls":[{"id":"call_1","function":{"index":0,"name":"get_weather","arguments":{"city":"Paris"}}}]`
	const next = `"tool_calls":[{"function":{"index":1,"name":"f","arguments":{}}}]`
	for _, stream := range []bool{true, false} {
		w := httptest.NewRecorder()
		s := newSink(w, Params{Stream: stream, Request: protocol.Request{Kind: protocol.KindChat, Model: "m"}}, true, fixedNow)
		if err := s.Begin(testMeta()); err != nil {
			t.Fatal(err)
		}
		for _, d := range []sink.Delta{{ToolCalls: calls}, {ToolCalls: second}} {
			if err := s.Delta(d); err != nil {
				t.Fatal(err)
			}
		}
		f := testFinal()
		f.FinishReason = "stop"
		if err := s.End(f); err != nil {
			t.Fatal(err)
		}
		want := `{"model":"m",` + stamp + `,"message":{"role":"assistant","content":"",` + first[:len(first)-1] + `,` + next[len(`"tool_calls":[`):] + `},"done_reason":"stop","done":true,` + counters + "}\n"
		if stream {
			want = `{"model":"m",` + stamp + `,"message":{"role":"assistant","content":"",` + first + `},"done":false}` + "\n" +
				`{"model":"m",` + stamp + `,"message":{"role":"assistant","content":"",` + next + `},"done":false}` + "\n" +
				`{"model":"m",` + stamp + `,"message":{"role":"assistant","content":""},"done_reason":"stop","done":true,` + counters + "}\n"
		}
		if got := w.Body.String(); got != want {
			t.Errorf("stream=%v:\n%s\nwant\n%s", stream, got, want)
		}
	}
}
