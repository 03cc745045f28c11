package web

import (
	"crypto/tls"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"regexp"
	"strings"
	"testing"
)

func TestContributePagePolicy(t *testing.T) {
	f := newFixture(t, false)
	for _, tc := range []struct {
		name    string
		query   string
		tls     bool
		host    string
		status  int
		connect string // the CSP's connect-src sources
		inPage  []string
	}{
		{"default server", "", false, "gw.example:8420", 200, "'self' ws://gw.example:8420 http://127.0.0.1:11434", []string{`data-ollama="http://127.0.0.1:11434"`}},
		{"chosen server", "?ollama=" + url.QueryEscape("http://192.168.1.20:11434/"), false, "gw.example:8420", 200,
			"'self' ws://gw.example:8420 http://192.168.1.20:11434", []string{`data-ollama="http://192.168.1.20:11434"`}},
		{"case folded", "?ollama=" + url.QueryEscape("HTTPS://Ollama.Example"), false, "gw.example", 200,
			"'self' ws://gw.example https://ollama.example", nil},
		{"ipv6", "?ollama=" + url.QueryEscape("http://[::1]:11434"), false, "gw.example", 200, "'self' ws://gw.example http://[::1]:11434", nil},
		{"https gateway", "", true, "gw.example", 200, "'self' wss://gw.example http://127.0.0.1:11434", nil},
		{"bad host header leaves only self", "", false, "gw.example;script-src *", 200, "'self' http://127.0.0.1:11434", nil},
		{"refused server", "?ollama=" + url.QueryEscape("javascript:alert(1)"), false, "gw.example", 400,
			"'self' ws://gw.example http://127.0.0.1:11434", []string{"must start with http:// or https://", "uses http://127.0.0.1:11434 instead"}},
		{"policy injection", "?ollama=" + url.QueryEscape("http://x.example; script-src *"), false, "gw.example", 400,
			"'self' ws://gw.example http://127.0.0.1:11434", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/contribute"+tc.query, nil)
			req.Host = tc.host
			if tc.tls {
				req.TLS = &tls.ConnectionState{}
			}
			rec := httptest.NewRecorder()
			f.ui.ServeHTTP(rec, req)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			csp := rec.Header().Get("Content-Security-Policy")
			want := "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src " + tc.connect +
				"; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
			if csp != want {
				t.Errorf("CSP\n got %s\nwant %s", csp, want)
			}
			body := rec.Body.String()
			wantAll(t, "contribute", body, append(tc.inPage, `<script type="module" src="/ui/static/contribute/main.js">`,
				`href="/ui/static/contribute/contribute.css"`, `aria-current="page">Provide</a>`)...)
			if strings.Contains(body, "<script>") || strings.Contains(body, " on") && regexp.MustCompile(`\son[a-z]+=`).MatchString(body) {
				t.Error("the page has inline script, which its policy forbids")
			}
			if rec.Header().Get("Cache-Control") != "no-store" || rec.Header().Get("X-Frame-Options") != "DENY" {
				t.Errorf("headers: %v", rec.Header())
			}
		})
	}
}

func TestOtherPagesLoadNoScript(t *testing.T) {
	f := newFixture(t, false)
	code, body := f.get(t, "/ui/")
	if code != 200 || strings.Contains(body, "<script") {
		t.Errorf("the overview loads a script (status %d)", code)
	}
}

// TestContributeModules checks the page's scripts: served as JavaScript
// (module scripts need it), and importing only each other — no
// third-party code, nothing from another origin.
func TestContributeModules(t *testing.T) {
	f := newFixture(t, false)
	names, err := fs.Glob(files, "static/contribute/*.js")
	if err != nil || len(names) < 5 {
		t.Fatalf("embedded modules: %v %v", names, err)
	}
	importRe := regexp.MustCompile(`(?m)^\s*import\b[^"']*["']([^"']+)["']`)
	for _, n := range names {
		b, err := fs.ReadFile(files, n)
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		f.ui.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ui/"+n, nil))
		if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/javascript") || rec.Body.String() != string(b) {
			t.Errorf("%s: served with %d %q", n, rec.Code, rec.Header().Get("Content-Type"))
		}
		for _, m := range importRe.FindAllStringSubmatch(string(b), -1) {
			spec := m[1]
			if !strings.HasPrefix(spec, "./") || !strings.HasSuffix(spec, ".js") {
				t.Errorf("%s imports %q: only sibling modules are allowed", n, spec)
				continue
			}
			if _, err := fs.Stat(files, path.Join("static/contribute", spec)); err != nil {
				t.Errorf("%s imports %q, which is not embedded", n, spec)
			}
		}
		if regexp.MustCompile(`\beval\(|new Function\(`).Match(b) {
			t.Errorf("%s evaluates strings as code", n)
		}
	}
}

func TestParseOllamaOrigin(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want "" for refused
	}{
		{"http://127.0.0.1:11434", "http://127.0.0.1:11434"},
		{" http://localhost:11434/ ", "http://localhost:11434"},
		{"https://my-box.lan", "https://my-box.lan"},
		{"http://[fe80::1]:8080", "http://[fe80::1]:8080"},
		{"127.0.0.1:11434", ""},
		{"ftp://127.0.0.1", ""},
		{"http://user:pw@127.0.0.1", ""},
		{"http://127.0.0.1:11434/api", ""},
		{"http://127.0.0.1:11434?x=1", ""},
		{"http://127.0.0.1:11434#x", ""},
		{"http://127.0.0.1:0", ""},
		{"http://127.0.0.1:65536", ""},
		{"http://127.0.0.1:011434", ""},
		{"http://-bad.example", ""},
		{"http://a_b.example", ""},
		{"http://[1.2.3.4]", ""},
		{"http://[fe80::1%25eth0]", ""},
		{"http://" + strings.Repeat("a", 300), ""},
		{"http://x'y", ""},
		{"", ""},
	} {
		got, err := ParseOllamaOrigin(tc.in)
		if (err == nil) != (tc.want != "") || got != tc.want {
			t.Errorf("ParseOllamaOrigin(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
