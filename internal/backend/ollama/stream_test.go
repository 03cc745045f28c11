package ollama

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

func TestParseLine(t *testing.T) {
	for _, tc := range []struct {
		line string
		want event
		err  bool
	}{
		{`{"model":"m","message":{"role":"assistant","content":" hi"},"done":false}`, event{text: " hi"}, false},
		{`{"model":"m","response":"yo","done":false}`, event{text: "yo"}, false},
		{`{"model":"m","response":"","done":true,"done_reason":"length","prompt_eval_count":3,"prompt_eval_duration":1000,"eval_count":5,"eval_duration":2000}`,
			event{done: true, result: backend.Result{Usage: protocol.Usage{PromptTokens: 3, CompletionTokens: 5}, FinishReason: "length", PromptEval: time.Microsecond, Eval: 2 * time.Microsecond}}, false},
		{`{"done":true,"done_reason":"load"}`, event{done: true, result: backend.Result{FinishReason: "stop"}}, false},
		{`{"done":true,"eval_count":-4,"eval_duration":-1}`, event{done: true, result: backend.Result{FinishReason: "stop"}}, false},
		{`{"error":"boom"}`, event{err: "boom"}, false},
		{`{"error":""}`, event{err: "unknown error"}, false},
		{`{"response":"a","logprobs":[{"token":"a","logprob":-0.5,"bytes":[97],"top_logprobs":[{"token":"a","logprob":-0.5},{"token":"b","logprob":-1}]}]}`,
			event{text: "a", logprobs: []protocol.TokenLogprob{{Token: "a", Logprob: -0.5, Top: []protocol.TopLogprob{{Token: "a", Logprob: -0.5}, {Token: "b", Logprob: -1}}}}}, false},
		{`{"eval_count":1e30}`, event{}, true},
		{`{"error":{"message":"x"}}`, event{}, true},
		{`[1,2]`, event{}, true},
		{`{"response":`, event{}, true},
	} {
		got, err := parseLine([]byte(tc.line))
		if (err != nil) != tc.err {
			t.Errorf("parseLine(%s): err %v", tc.line, err)
			continue
		}
		if !tc.err && !equalEvent(got, tc.want) {
			t.Errorf("parseLine(%s) = %+v, want %+v", tc.line, got, tc.want)
		}
	}
}

func equalEvent(a, b event) bool {
	if a.text != b.text || a.done != b.done || a.result != b.result || a.err != b.err || len(a.logprobs) != len(b.logprobs) {
		return false
	}
	for i := range a.logprobs {
		x, y := a.logprobs[i], b.logprobs[i]
		if x.Token != y.Token || x.Logprob != y.Logprob || len(x.Top) != len(y.Top) {
			return false
		}
		for j := range x.Top {
			if x.Top[j] != y.Top[j] {
				return false
			}
		}
	}
	return true
}

// FuzzParseLine: no input makes the parser panic, and what it accepts is
// well formed. Its corpus is checked in under testdata/fuzz/FuzzParseLine.
func FuzzParseLine(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","message":{"role":"assistant","content":" hi"},"done":false}`,
		`{"response":"","done":true,"done_reason":"stop","prompt_eval_count":3,"eval_count":5,"eval_duration":9}`,
		`{"error":"boom"}`,
		`{"response":"a","logprobs":[{"token":"a","logprob":-0.5,"top_logprobs":[{"token":"b","logprob":-1}]}]}`,
		`{"message":{"role":"assistant","content":"","tool_calls":[{"id":"call_1","function":{"index":0,"name":"f","arguments":{"city":"Paris"}}}]},"done":false}`,
		`{"message":{"content":"","tool_calls":[{"function":{"name":"","arguments":[1]}}]},"done":false}`,
		"", "null", "\xff", `{"done":true,"done_reason":"length"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := parseLine(b)
		if err != nil {
			return
		}
		if fr := ev.result.FinishReason; ev.done && fr != "stop" && fr != "length" {
			t.Fatalf("finish reason %q", fr)
		}
		if ev.result.PromptEval < 0 || ev.result.Eval < 0 {
			t.Fatalf("negative duration in %+v", ev.result)
		}
		// The stream reader must not panic on it either.
		_, _ = readStream(context.Background(), strings.NewReader(string(b)+"\n"), len(b)%2 == 0, func(backend.Delta) error { return nil })
	})
}

func TestReadStreamStopsOnCancel(t *testing.T) {
	// The whole stream, done line included, is already buffered: a
	// cancelled generation must still not report success.
	stream := `{"response":"a"}` + "\n" + `{"response":"b"}` + "\n" + `{"done":true}` + "\n"
	ctx, cancel := context.WithCancel(t.Context())
	_, err := readStream(ctx, strings.NewReader(stream), false, func(backend.Delta) error { cancel(); return nil })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

// TestNoLogprobsFromServer: a server that streams text without
// log-probabilities when they were asked (Ollama before 0.12.11) fails the
// generation with ErrNoLogprobs (a bad request) before emitting anything;
// asked nothing, the same stream is fine, and a server that has them is
// read as before.
func TestNoLogprobsFromServer(t *testing.T) {
	old := `{"response":"a"}` + "\n" + `{"response":"b"}` + "\n" + `{"done":true,"eval_count":2}` + "\n"
	emitted := 0
	count := func(backend.Delta) error { emitted++; return nil }
	_, err := readStream(t.Context(), strings.NewReader(old), true, count)
	if !errors.Is(err, backend.ErrNoLogprobs) || !errors.Is(err, backend.ErrBadRequest) || emitted != 0 {
		t.Errorf("asked: err %v after %d deltas, want ErrNoLogprobs before any", err, emitted)
	}
	if _, err := readStream(t.Context(), strings.NewReader(old), false, count); err != nil || emitted != 2 {
		t.Errorf("not asked: err %v, %d deltas", err, emitted)
	}
	current := `{"response":"a","logprobs":[{"token":"a","logprob":-1}]}` + "\n" + `{"response":"","done":true}` + "\n"
	emitted = 0
	if _, err := readStream(t.Context(), strings.NewReader(current), true, count); err != nil || emitted != 1 {
		t.Errorf("with logprobs: err %v, %d deltas", err, emitted)
	}
}
