package ollama

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/gateway/sink"
)

// Models the fake relay treats specially.
const (
	modelFailMid   = "fail-mid"   // fails after the first delta
	modelFailEarly = "fail-early" // fails before Begin
)

// fakeRelay drives a sink like the gateway's relay with a deterministic
// script: "Hel", "lo", " world", then End.
func fakeRelay(s sink.Sink, p Params) {
	if p.Request.Model == modelFailEarly {
		s.Fail(apierr.ModelNotFound(p.Request.Model))
		return
	}
	if s.Begin(sink.Meta{RequestID: "req-42", Model: p.Request.Model, Created: time.Now()}) != nil {
		return
	}
	for i, text := range []string{"Hel", "lo", " world"} {
		if p.Request.Model == modelFailMid && i == 1 {
			s.Fail(apierr.Upstream("the provider disconnected"))
			return
		}
		if s.Delta(sink.Delta{Text: text}) != nil {
			return
		}
	}
	_ = s.End(testFinal())
}

func catalogue() []Model {
	return []Model{
		{Name: "llama3.2:1b", Digest: "sha256:abc", Family: "llama", ParameterSize: "1.2B", Quantization: "Q8_0", ContextLength: 8192, SizeBytes: 1 << 30, ModifiedAt: time.Unix(1700000000, 0)},
		{Name: "qwen2.5:0.5b", Digest: "def", Family: "qwen2"},
	}
}

// newTestServer serves the Ollama API the way the gateway core wires this
// package.
func newTestServer(t *testing.T) *httptest.Server {
	t.Helper()
	handle := func(parse func([]byte) (Params, *apierr.Error), newSink func(http.ResponseWriter, Params) sink.Sink) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			p, e := parse(body)
			if e != nil {
				apierr.WriteOllama(w, e)
				return
			}
			if p.LoadOnly {
				WriteLoaded(w, p, time.Now())
				return
			}
			fakeRelay(newSink(w, p), p)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/chat", handle(ParseChat, NewChatSink))
	mux.HandleFunc("POST /api/generate", handle(ParseGenerate, NewGenerateSink))
	mux.HandleFunc("GET /api/tags", func(w http.ResponseWriter, r *http.Request) { WriteTags(w, catalogue()) })
	mux.HandleFunc("GET /api/version", func(w http.ResponseWriter, r *http.Request) { WriteVersion(w, "0.9.9") })
	mux.HandleFunc("POST /api/show", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		name, e := ParseShow(body)
		if e != nil {
			apierr.WriteOllama(w, e)
			return
		}
		for _, m := range catalogue() {
			if m.Name == name {
				WriteShow(w, m)
				return
			}
		}
		apierr.WriteOllama(w, apierr.ModelNotFound(name))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func newClient(t *testing.T) (*api.Client, context.Context) {
	t.Helper()
	srv := newTestServer(t)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return api.NewClient(u, http.DefaultClient), ctx
}

func checkMetrics(t *testing.T, m api.Metrics) {
	t.Helper()
	if m.PromptEvalCount != 5 || m.EvalCount != 3 || m.TotalDuration != 900*time.Millisecond || m.EvalDuration != 700*time.Millisecond || m.PromptEvalDuration != 200*time.Millisecond {
		t.Errorf("metrics %+v", m)
	}
}

func TestOllamaClientChat(t *testing.T) {
	client, ctx := newClient(t)
	for _, stream := range []bool{true, false} {
		var got []api.ChatResponse
		err := client.Chat(ctx, &api.ChatRequest{
			Model:    "llama3.2:1b",
			Messages: []api.Message{{Role: "system", Content: "be brief"}, {Role: "user", Content: "hi"}},
			Stream:   &stream,
			Options:  map[string]any{"temperature": 0.2, "num_predict": 10, "top_k": 40},
		}, func(r api.ChatResponse) error { got = append(got, r); return nil })
		if err != nil {
			t.Fatalf("stream=%v: %v", stream, err)
		}
		want := 1
		if stream {
			want = 4
		}
		if len(got) != want {
			t.Fatalf("stream=%v: %d responses, want %d", stream, len(got), want)
		}
		var text strings.Builder
		for _, r := range got {
			text.WriteString(r.Message.Content)
			if r.Model != "llama3.2:1b" || r.Message.Role != "assistant" || r.CreatedAt.IsZero() {
				t.Errorf("response %+v", r)
			}
		}
		last := got[len(got)-1]
		if text.String() != "Hello world" || !last.Done || last.DoneReason != "length" {
			t.Errorf("stream=%v: text %q last %+v", stream, text.String(), last)
		}
		checkMetrics(t, last.Metrics)
	}
}

func TestOllamaClientGenerate(t *testing.T) {
	client, ctx := newClient(t)
	for _, stream := range []bool{true, false} {
		var text strings.Builder
		var last api.GenerateResponse
		err := client.Generate(ctx, &api.GenerateRequest{Model: "llama3.2:1b", Prompt: "Why?", System: "be brief", Stream: &stream},
			func(r api.GenerateResponse) error { text.WriteString(r.Response); last = r; return nil })
		if err != nil {
			t.Fatalf("stream=%v: %v", stream, err)
		}
		if text.String() != "Hello world" || !last.Done || last.DoneReason != "length" {
			t.Errorf("stream=%v: text %q last %+v", stream, text.String(), last)
		}
		checkMetrics(t, last.Metrics)
	}

	// An empty prompt is the client's way to load a model.
	var loaded api.GenerateResponse
	if err := client.Generate(ctx, &api.GenerateRequest{Model: "llama3.2:1b"}, func(r api.GenerateResponse) error { loaded = r; return nil }); err != nil {
		t.Fatal(err)
	}
	if !loaded.Done || loaded.DoneReason != "load" || loaded.Response != "" {
		t.Errorf("load response %+v", loaded)
	}
}

func TestOllamaClientErrors(t *testing.T) {
	client, ctx := newClient(t)
	noop := func(api.ChatResponse) error { return nil }
	msgs := []api.Message{{Role: "user", Content: "hi"}}

	// Ollama's client v0.6.5 returns a streamed request's {"error": …}
	// body as a plain error with the message, whatever the status.
	err := client.Chat(ctx, &api.ChatRequest{Model: modelFailEarly, Messages: msgs}, noop)
	if err == nil || !strings.Contains(err.Error(), "does not exist on this network") {
		t.Errorf("fail before Begin: %v", err)
	}
	var text strings.Builder
	err = client.Chat(ctx, &api.ChatRequest{Model: modelFailMid, Messages: msgs}, func(r api.ChatResponse) error {
		text.WriteString(r.Message.Content)
		return nil
	})
	if err == nil || err.Error() != "the provider disconnected" || text.String() != "Hel" {
		t.Errorf("fail mid-stream: %v after %q", err, text.String())
	}
	err = client.Chat(ctx, &api.ChatRequest{Model: "m", Messages: msgs, Format: []byte(`{"type":"object","properties":{"a":{"type":"strin"}}}`)}, noop)
	if err == nil || !strings.Contains(err.Error(), "properties/a/type") {
		t.Errorf("format with an invalid schema: %v", err)
	}

	// Non-streamed calls (show, tags, …) return api.StatusError.
	_, err = client.Show(ctx, &api.ShowRequest{Model: "nope"})
	var se api.StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusNotFound || !strings.Contains(se.ErrorMessage, `"nope" does not exist`) {
		t.Errorf("show unknown: %#v", err)
	}
}

func TestOllamaClientCatalogue(t *testing.T) {
	client, ctx := newClient(t)
	list, err := client.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Models) != 2 {
		t.Fatalf("models %+v", list.Models)
	}
	m := list.Models[0]
	if m.Name != "llama3.2:1b" || m.Model != "llama3.2:1b" || m.Digest != "abc" || m.Size != 1<<30 || !m.ModifiedAt.Equal(time.Unix(1700000000, 0)) ||
		m.Details.Family != "llama" || m.Details.Format != "gguf" || m.Details.QuantizationLevel != "Q8_0" || m.Details.ParameterSize != "1.2B" {
		t.Errorf("model %+v", m)
	}

	show, err := client.Show(ctx, &api.ShowRequest{Model: "llama3.2:1b"})
	if err != nil {
		t.Fatal(err)
	}
	if show.Details.Family != "llama" || show.ModelInfo["general.architecture"] != "llama" || show.ModelInfo["llama.context_length"] != float64(8192) ||
		!strings.Contains(show.Modelfile, "FROM llama3.2:1b") || len(show.Capabilities) != 1 || show.Capabilities[0] != "completion" {
		t.Errorf("show %+v", show)
	}

	v, err := client.Version(ctx)
	if err != nil || v != "0.9.9" {
		t.Errorf("version %q, %v", v, err)
	}
}
