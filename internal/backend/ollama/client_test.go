package ollama

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/backend/backendtest"
	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// startSim serves a simulator over HTTP and returns its server and a client
// of it.
func startSim(t testing.TB, cfg sim.Config) (*sim.Server, *Client) {
	t.Helper()
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := sim.NewServer(s)
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return srv, New(ts.URL, nil)
}

func TestConformanceSim(t *testing.T) {
	_, c := startSim(t, sim.DefaultConfig())
	backendtest.Run(t, c, "sim")
}

// realOllama returns a client of the Ollama at OLLAMA_URL, or skips.
func realOllama(t *testing.T) *Client {
	t.Helper()
	u := os.Getenv("OLLAMA_URL")
	if u == "" {
		t.Skip("OLLAMA_URL not set: start one with shared/scripts/ollama-test-server.sh")
	}
	return New(u, nil)
}

func TestConformanceOllama(t *testing.T) {
	backendtest.Run(t, realOllama(t), "tiny")
}

// TestDigestMatchesOllama: the backend digests Models reports are exactly
// those of /api/tags, shown beside the identity providers attest.
func TestDigestMatchesOllama(t *testing.T) {
	c := realOllama(t)
	req, err := http.NewRequestWithContext(t.Context(), "GET", c.base+"/api/tags", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tags struct {
		Models []struct{ Name, Digest string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&tags); err != nil {
		t.Fatal(err)
	}
	// Ollama orders by modification time, which ties for models created
	// together: compare by name.
	digests := map[string]string{}
	for _, m := range tags.Models {
		digests[m.Name] = m.Digest
	}
	models, err := c.Models(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(models) != len(digests) {
		t.Fatalf("Models has %d entries, /api/tags %d", len(models), len(digests))
	}
	for _, m := range models {
		if want, ok := digests[m.Name]; !ok || m.BackendDigest != want || len(m.Digest) != 64 {
			t.Errorf("Models has %s %s (identity %s), /api/tags has digest %q", m.Name, m.BackendDigest, m.Digest, want)
		}
		if m.ContextLength <= 0 || m.Quantization == "" || m.Family == "" || m.SizeBytes <= 0 {
			t.Errorf("model lacks details: %+v", m)
		}
		t.Logf("%+v", m)
	}
}

func TestModelsFromSim(t *testing.T) {
	cfg := sim.DefaultConfig()
	cfg.Models = append(cfg.Models, sim.ModelConfig{Name: "other:7b", Weights: 9, Quantization: "Q4_0", ContextLength: 0})
	_, c := startSim(t, cfg)
	models, err := c.Models(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := []backend.Model{
		{Name: "sim", Digest: sim.Digest(1, "Q8_0"), BackendDigest: sim.Digest(1, "Q8_0"), Quantization: "Q8_0", Family: "sim", ParameterSize: "1B", ContextLength: 4096, SizeBytes: 1 << 20,
			Capabilities: []string{"completion", "tools"}},
		{Name: "other:7b", Digest: sim.Digest(9, "Q4_0"), BackendDigest: sim.Digest(9, "Q4_0"), Quantization: "Q4_0", Capabilities: []string{"completion", "tools"}},
	}
	if !reflect.DeepEqual(models, want) {
		t.Errorf("Models = %+v, want %+v", models, want)
	}
}

// TestRequestBody: only the options the request sets are sent, logprobs are
// top-level fields, and streaming is asked for explicitly.
func TestRequestBody(t *testing.T) {
	bodies := make(chan map[string]any, 1)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		_ = json.NewDecoder(r.Body).Decode(&m)
		m["path"] = r.URL.Path
		bodies <- m
		_, _ = io.WriteString(w, `{"done":true}`+"\n")
	}))
	defer ts.Close()
	c := New(ts.URL+"/", nil)
	temp, seed := 0.0, int64(3)
	for _, tc := range []struct {
		req  protocol.Request
		want string
	}{
		{protocol.Request{Kind: protocol.KindChat, Model: "m"},
			`{"messages":[],"model":"m","path":"/api/chat","stream":true}`},
		{protocol.Request{Kind: protocol.KindChat, Model: "m", Messages: []protocol.ChatMessage{{Role: "user", Content: "hi"}},
			Options: protocol.Options{MaxTokens: 5, Temperature: &temp, Seed: &seed, Stop: []string{"x"}, Logprobs: true, TopLogprobs: 2}},
			`{"logprobs":true,"messages":[{"content":"hi","role":"user"}],"model":"m","options":{"num_predict":5,"seed":3,"stop":["x"],"temperature":0},"path":"/api/chat","stream":true,"top_logprobs":2}`},
		{protocol.Request{Kind: protocol.KindGenerate, Model: "m", Prompt: "p", System: "s", Raw: true, Options: protocol.Options{TopLogprobs: 4}},
			`{"model":"m","path":"/api/generate","prompt":"p","raw":true,"stream":true,"system":"s"}`},
	} {
		if _, err := c.Generate(t.Context(), tc.req, func(backend.Delta) error { return nil }); err != nil {
			t.Fatal(err)
		}
		got, _ := json.Marshal(<-bodies)
		if string(got) != tc.want {
			t.Errorf("body\n%s\nwant\n%s", got, tc.want)
		}
	}
	if _, err := c.Generate(t.Context(), protocol.Request{Kind: "edit"}, nil); !errors.Is(err, backend.ErrBadRequest) {
		t.Errorf("unknown kind: %v", err)
	}
}

// serveText answers every request with status and body.
func serveText(t *testing.T, status int, body string) *Client {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(ts.Close)
	return New(ts.URL, nil)
}

func TestErrors(t *testing.T) {
	req := protocol.Request{Kind: protocol.KindGenerate, Model: "m", Prompt: "p"}
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   error
		msg    string
	}{
		{"404", 404, `{"error":"model \"m\" not found, try pulling it first"}`, backend.ErrModelNotFound, `model "m" not found`},
		{"400", 400, `{"error":"invalid options"}`, backend.ErrBadRequest, "invalid options"},
		{"500", 500, `{"error":"llama runner process has terminated"}`, backend.ErrUnavailable, "runner process"},
		{"502 text", 502, "bad gateway", backend.ErrUnavailable, "bad gateway"},
		{"error line", 200, `{"response":"a","done":false}` + "\n" + `{"error":"out of memory"}` + "\n", backend.ErrUnavailable, "out of memory"},
		{"ended early", 200, `{"response":"a","done":false}` + "\n", backend.ErrUnavailable, "ended early"},
		{"garbage", 200, "<html>\n", backend.ErrUnavailable, "bad stream line"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := serveText(t, tc.status, tc.body).Generate(t.Context(), req, func(backend.Delta) error { return nil })
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err = %v, want %v with %q", err, tc.want, tc.msg)
			}
		})
	}
	for _, status := range []int{404, 500} {
		t.Run(fmt.Sprintf("tags %d", status), func(t *testing.T) {
			if _, err := serveText(t, status, "").Models(t.Context()); !errors.Is(err, backend.ErrUnavailable) {
				t.Errorf("err = %v, want ErrUnavailable", err)
			}
		})
	}
}

func TestConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := New(addr, nil) // bare host:port, as OLLAMA_HOST gives it
	if _, err := c.Models(t.Context()); !errors.Is(err, backend.ErrUnavailable) {
		t.Errorf("Models: %v", err)
	}
	_, err = c.Generate(t.Context(), protocol.Request{Kind: protocol.KindChat, Model: "m"}, nil)
	if !errors.Is(err, backend.ErrUnavailable) {
		t.Errorf("Generate: %v", err)
	}
}

// TestLongLine: a line over the limit fails fast instead of buffering.
func TestLongLine(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := []byte(`{"response":"` + strings.Repeat("a", 1<<20))
		for range 2 * maxLine >> 20 {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	defer ts.Close()
	start := time.Now()
	_, err := New(ts.URL, nil).Generate(t.Context(), protocol.Request{Kind: protocol.KindGenerate, Model: "m"}, func(backend.Delta) error { return nil })
	if !errors.Is(err, backend.ErrUnavailable) || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("err = %v, want a line-too-long error", err)
	}
	t.Logf("failed after %v", time.Since(start))
}

// TestConnectionReused: jobs one after another, streamed or not, share one
// connection to the backend: the rest of each response is read after done,
// so the connection goes back to the pool instead of being closed.
func TestConnectionReused(t *testing.T) {
	s, err := sim.New(sim.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int64
	ts := httptest.NewUnstartedServer(sim.NewServer(s))
	ts.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	ts.Start()
	defer ts.Close()
	c := New(ts.URL, nil)
	model := sim.DefaultConfig().Models[0].Name
	for i := range 10 {
		req := protocol.Request{Kind: protocol.KindChat, Model: model, Buffered: i%2 == 0,
			Messages: []protocol.ChatMessage{{Role: "user", Content: fmt.Sprintf("hello %d", i)}}, Options: protocol.Options{MaxTokens: 8}}
		if _, err := c.Generate(t.Context(), req, func(backend.Delta) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("10 jobs opened %d connections to the backend, want 1", n)
	}
}

// TestNoLogprobsFromVersion: models of an Ollama older than 0.12.11 are
// marked as returning no log-probabilities; current, source builds
// ("0.0.0") and unreadable versions are not.
func TestNoLogprobsFromVersion(t *testing.T) {
	for version, want := range map[string]bool{"0.6.5": true, "0.12.10": true, "v0.12.11": false, "0.13.5-rc1": false, "0.0.0": false, "": false, "x": false} {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/api/version":
				fmt.Fprintf(w, `{"version":%q}`, version)
			case "/api/tags":
				io.WriteString(w, `{"models":[{"name":"m:latest","digest":"abc"}]}`)
			case "/api/show":
				io.WriteString(w, `{"modelfile":"FROM /x/blobs/sha256-`+strings.Repeat("1", 64)+`\n"}`)
			}
		}))
		models, err := New(ts.URL, nil).Models(t.Context())
		ts.Close()
		if err != nil || len(models) != 1 || models[0].NoLogprobs != want {
			t.Errorf("version %q: %+v, %v; want NoLogprobs %v", version, models, err, want)
		}
	}
}
