package bench

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// TestSwapProxy: the proxy lists only the claimed model, runs the actual
// one for generation requests that name the claimed one, passes the rest
// through and counts the marked requests.
func TestSwapProxy(t *testing.T) {
	var models []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/tags":
			io.WriteString(w, `{"models":[{"name":"tiny:latest","digest":"aa"},{"name":"tiny-q4sim:latest","digest":"bb"}]}`)
		case "/api/generate", "/api/chat":
			var b struct {
				Model string `json:"model"`
			}
			json.NewDecoder(r.Body).Decode(&b)
			models = append(models, b.Model)
			io.WriteString(w, `{"done":true}`)
		default:
			io.WriteString(w, r.URL.Path)
		}
	}))
	defer up.Close()
	u, _ := url.Parse(up.URL)
	p := &SwapProxy{Upstream: u, Claimed: "tiny", Actual: "tiny-q4sim", Marker: "MARK"}
	srv := httptest.NewServer(p)
	defer srv.Close()
	get := func(method, path, body string) string {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if tags := get(http.MethodGet, "/api/tags", ""); !strings.Contains(tags, `"tiny:latest"`) || strings.Contains(tags, "q4sim") {
		t.Errorf("tags: %s", tags)
	}
	get(http.MethodPost, "/api/generate", `{"model":"tiny:latest","prompt":"MARK hi"}`)
	get(http.MethodPost, "/api/chat", `{"model":"tiny","messages":[]}`)
	get(http.MethodPost, "/api/generate", `{"model":"other","prompt":"x"}`)
	if show := get(http.MethodPost, "/api/show", `{"model":"tiny"}`); show != "/api/show" {
		t.Errorf("show passed through as %q", show)
	}
	if want := []string{"tiny-q4sim", "tiny-q4sim", "other"}; strings.Join(models, ",") != strings.Join(want, ",") {
		t.Errorf("upstream ran %v, want %v", models, want)
	}
	if c := p.Counts(); c.Generations != 3 || c.Marked != 1 {
		t.Errorf("counts %+v, want 3 generations, 1 marked", c)
	}
}
