package sim

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func newTestServer(t *testing.T, cfg Config) (*Server, *httptest.Server) {
	t.Helper()
	srv := NewServer(newSim(t, cfg))
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return srv, ts
}

func do(t *testing.T, method, url, body string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func TestServerTagsAndShow(t *testing.T) {
	_, ts := newTestServer(t, fastConfig())
	resp, body := do(t, "GET", ts.URL+"/api/tags", "")
	var tags struct {
		Models []map[string]any `json:"models"`
	}
	if err := json.Unmarshal(body, &tags); err != nil || resp.StatusCode != 200 || len(tags.Models) != 1 {
		t.Fatalf("tags: %d %s (%v)", resp.StatusCode, body, err)
	}
	m := tags.Models[0]
	for _, key := range []string{"name", "model", "modified_at", "size", "digest", "details"} {
		if _, ok := m[key]; !ok {
			t.Errorf("tags entry lacks %q: %s", key, body)
		}
	}
	d := m["details"].(map[string]any)
	if m["name"] != "sim" || m["digest"] != Digest(1, "Q8_0") || d["format"] != "gguf" || d["quantization_level"] != "Q8_0" || d["family"] != "sim" {
		t.Errorf("tags entry %s", body)
	}

	resp, body = do(t, "POST", ts.URL+"/api/show", `{"model":"sim:latest"}`)
	var show struct {
		ModelInfo map[string]any `json:"model_info"`
	}
	if err := json.Unmarshal(body, &show); err != nil || resp.StatusCode != 200 {
		t.Fatalf("show: %d %s (%v)", resp.StatusCode, body, err)
	}
	arch, _ := show.ModelInfo["general.architecture"].(string)
	if show.ModelInfo[arch+".context_length"] != 4096.0 {
		t.Errorf("show model_info %v", show.ModelInfo)
	}
	if resp, body := do(t, "POST", ts.URL+"/api/show", `{"model":"nope"}`); resp.StatusCode != 404 || string(body) != `{"error":"model 'nope' not found"}`+"\n" {
		t.Errorf("show unknown: %d %s", resp.StatusCode, body)
	}
	if resp, body := do(t, "GET", ts.URL+"/api/version", ""); resp.StatusCode != 200 || !strings.Contains(string(body), `"version"`) {
		t.Errorf("version: %d %s", resp.StatusCode, body)
	}
}

// line is a streamed chunk as a generic Ollama client decodes it.
type line struct {
	Model      string `json:"model"`
	CreatedAt  string `json:"created_at"`
	Message    *struct{ Role, Content string }
	Response   *string
	Done       bool           `json:"done"`
	DoneReason string         `json:"done_reason"`
	Error      string         `json:"error"`
	Logprobs   []apiLogprob   `json:"logprobs"`
	Raw        map[string]any `json:"-"`
}

func readLines(t *testing.T, body []byte) []line {
	t.Helper()
	var out []line
	for _, s := range strings.Split(strings.TrimSuffix(string(body), "\n"), "\n") {
		var l line
		if err := json.Unmarshal([]byte(s), &l); err != nil {
			t.Fatalf("line %q: %v", s, err)
		}
		if err := json.Unmarshal([]byte(s), &l.Raw); err != nil {
			t.Fatal(err)
		}
		out = append(out, l)
	}
	return out
}

func TestServerStreams(t *testing.T) {
	_, ts := newTestServer(t, fastConfig())
	for _, tc := range []struct{ path, body string }{
		{"/api/chat", `{"model":"sim","messages":[{"role":"user","content":"hi"}],"options":{"num_predict":5,"temperature":0,"seed":1,"top_p":0.9,"stop":["zzz"]}}`},
		{"/api/generate", `{"model":"sim","prompt":"hi","system":"s","options":{"num_predict":5}}`},
	} {
		resp, body := do(t, "POST", ts.URL+tc.path, tc.body)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
			t.Fatalf("%s: %d %q", tc.path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		lines := readLines(t, body)
		last := lines[len(lines)-1]
		if !last.Done || last.DoneReason == "" {
			t.Fatalf("%s: last line %s", tc.path, body)
		}
		for _, key := range []string{"total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count", "eval_duration"} {
			if _, ok := last.Raw[key]; !ok {
				t.Errorf("%s: final line lacks %q", tc.path, key)
			}
		}
		if last.Raw["eval_count"] != float64(len(lines)-1) {
			t.Errorf("%s: eval_count %v for %d chunks", tc.path, last.Raw["eval_count"], len(lines)-1)
		}
		for _, l := range lines {
			if l.Model != "sim" || l.CreatedAt == "" {
				t.Errorf("%s: line lacks model or created_at: %+v", tc.path, l)
			}
			if chat := tc.path == "/api/chat"; chat != (l.Message != nil) || chat == (l.Response != nil) {
				t.Errorf("%s: wrong text field in %+v", tc.path, l)
			}
		}
	}
}

func TestServerNonStreaming(t *testing.T) {
	_, ts := newTestServer(t, fastConfig())
	_, streamed := do(t, "POST", ts.URL+"/api/generate", `{"model":"sim","prompt":"abc","options":{"num_predict":8}}`)
	var want strings.Builder
	for _, l := range readLines(t, streamed) {
		want.WriteString(*l.Response)
	}
	resp, body := do(t, "POST", ts.URL+"/api/generate", `{"model":"sim","prompt":"abc","stream":false,"options":{"num_predict":8}}`)
	lines := readLines(t, body)
	if resp.StatusCode != 200 || len(lines) != 1 || !lines[0].Done || *lines[0].Response != want.String() {
		t.Errorf("stream:false gave %d %s, want one object with %q", resp.StatusCode, body, want.String())
	}
}

func TestServerLogprobs(t *testing.T) {
	_, ts := newTestServer(t, fastConfig())
	_, body := do(t, "POST", ts.URL+"/api/chat", `{"model":"sim","messages":[{"role":"user","content":"hi"}],"logprobs":true,"top_logprobs":2,"options":{"num_predict":3}}`)
	lines := readLines(t, body)
	for _, l := range lines[:len(lines)-1] {
		if len(l.Logprobs) != 1 || l.Logprobs[0].Token != l.Message.Content || len(l.Logprobs[0].TopLogprobs) != 2 ||
			string(intsToBytes(l.Logprobs[0].Bytes)) != l.Logprobs[0].Token {
			t.Errorf("chunk logprobs %+v for %q", l.Logprobs, l.Message.Content)
		}
	}
	if resp, _ := do(t, "POST", ts.URL+"/api/chat", `{"model":"sim","logprobs":true,"top_logprobs":21}`); resp.StatusCode != 400 {
		t.Errorf("top_logprobs 21: status %d", resp.StatusCode)
	}
}

func intsToBytes(in []int) []byte {
	out := make([]byte, len(in))
	for i, b := range in {
		out[i] = byte(b)
	}
	return out
}

func TestServerErrors(t *testing.T) {
	_, ts := newTestServer(t, fastConfig())
	for _, tc := range []struct {
		path, body string
		status     int
		want       string
	}{
		{"/api/chat", `{"model":"x","messages":[]}`, 404, `{"error":"model \"x\" not found, try pulling it first"}`},
		{"/api/generate", `{"model":"x"}`, 404, `{"error":"model \"x\" not found, try pulling it first"}`},
		{"/api/chat", `{"model":"sim","messages":`, 400, ""},
		{"/api/chat", ``, 400, `{"error":"missing request body"}`},
		{"/api/chat", `{"messages":[]}`, 400, `{"error":"model is required"}`},
		{"/api/generate", `{"model":"sim","options":{"num_predict":"ten"}}`, 400, ""},
		{"/api/generate", `{"model":"sim","options":{"stop":"x"}}`, 400, ""},
	} {
		resp, body := do(t, "POST", ts.URL+tc.path, tc.body)
		var e struct{ Error string }
		if resp.StatusCode != tc.status || json.Unmarshal(body, &e) != nil || e.Error == "" ||
			(tc.want != "" && strings.TrimSpace(string(body)) != tc.want) {
			t.Errorf("%s %s: %d %s, want %d %s", tc.path, tc.body, resp.StatusCode, body, tc.status, tc.want)
		}
	}
}

func TestServerCORS(t *testing.T) {
	_, ts := newTestServer(t, fastConfig())
	resp, _ := do(t, "GET", ts.URL+"/api/tags", "")
	if resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("GET lacks CORS headers: %v", resp.Header)
	}
	req, _ := http.NewRequestWithContext(t.Context(), "OPTIONS", ts.URL+"/api/chat", nil)
	req.Header.Set("Origin", "https://gateway.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Private-Network", "true")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := resp.Header
	if resp.StatusCode != 204 || h.Get("Access-Control-Allow-Origin") != "*" || !strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") ||
		!strings.Contains(h.Get("Access-Control-Allow-Headers"), "Content-Type") || h.Get("Access-Control-Allow-Private-Network") != "true" {
		t.Errorf("preflight: %d %v", resp.StatusCode, h)
	}
}

// TestServeStopsStreams: cancelling Serve's context ends a stalled stream
// and Serve returns.
func TestServeStopsStreams(t *testing.T) {
	srv := NewServer(newSim(t, fastConfig()))
	srv.SetFaults(Faults{StallAfter: 1})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	req, _ := http.NewRequestWithContext(t.Context(), "POST", "http://"+ln.Addr().String()+"/api/generate", strings.NewReader(`{"model":"sim","prompt":"x"}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	if st := srv.Stats(); st.Cancelled != 1 || st.Active != 0 {
		t.Errorf("stats %+v, want the stalled stream cancelled", st)
	}
}
