package bench

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"
)

// SwapProxy is an Ollama API in front of a real Ollama that serves one
// model under another's name, the way a cheating provider's machine
// would: /api/tags lists only Claimed (as the upstream lists it), /api/show
// answers for Claimed as the upstream does, so an unmodified provider
// agent claims Claimed's name and identity digest, and every generation
// request for Claimed runs Actual. With Actual empty it swaps nothing (an
// honest machine behind a counting proxy).
//
// It counts the generation requests that reach it and those whose body
// contains Marker (consumer traffic, told from a verifier's canaries),
// with the time of the last.
type SwapProxy struct {
	Upstream        *url.URL
	Claimed, Actual string
	Marker          string

	once  sync.Once
	proxy *httputil.ReverseProxy

	mu         sync.Mutex
	calls      int
	marked     int
	lastMarked time.Time
}

// ProxyCounts is what a SwapProxy has seen.
type ProxyCounts struct {
	// Generations counts generation requests; Marked those that carried
	// the marker, the last at LastMarked.
	Generations, Marked int
	LastMarked          time.Time
}

// Counts reports the generation requests seen so far.
func (p *SwapProxy) Counts() ProxyCounts {
	p.mu.Lock()
	defer p.mu.Unlock()
	return ProxyCounts{Generations: p.calls, Marked: p.marked, LastMarked: p.lastMarked}
}

func (p *SwapProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.once.Do(func() { p.proxy = httputil.NewSingleHostReverseProxy(p.Upstream) })
	switch r.URL.Path {
	case "/api/tags":
		p.tags(w, r)
		return
	case "/api/generate", "/api/chat":
		body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
		if err != nil {
			http.Error(w, `{"error":"read body"}`, http.StatusBadRequest)
			return
		}
		p.mu.Lock()
		p.calls++
		if p.Marker != "" && bytes.Contains(body, []byte(p.Marker)) {
			p.marked++
			p.lastMarked = time.Now()
		}
		p.mu.Unlock()
		body = p.swap(body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		r.Header.Del("Content-Length")
	}
	p.proxy.ServeHTTP(w, r)
}

// swap rewrites a generation request for Claimed into one for Actual.
func (p *SwapProxy) swap(body []byte) []byte {
	if p.Actual == "" {
		return body
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return body
	}
	var model string
	if json.Unmarshal(m["model"], &model) != nil || !sameModel(model, p.Claimed) {
		return body
	}
	m["model"], _ = json.Marshal(p.Actual)
	out, err := json.Marshal(m)
	if err != nil {
		return body
	}
	return out
}

// tags answers /api/tags with the upstream's entry for Claimed only.
func (p *SwapProxy) tags(w http.ResponseWriter, r *http.Request) {
	u := *p.Upstream
	u.Path = "/api/tags"
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, u.String(), nil)
	if err != nil {
		http.Error(w, `{"error":"bad upstream"}`, http.StatusBadGateway)
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		http.Error(w, `{"error":"upstream unreachable"}`, http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	var tags struct {
		Models []map[string]json.RawMessage `json:"models"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&tags); err != nil {
		http.Error(w, `{"error":"upstream tags"}`, http.StatusBadGateway)
		return
	}
	kept := tags.Models[:0]
	for _, m := range tags.Models {
		var name string
		if json.Unmarshal(m["name"], &name) == nil && sameModel(name, p.Claimed) {
			kept = append(kept, m)
		}
	}
	tags.Models = kept
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(tags)
}

// sameModel compares Ollama model names, ":latest" being the default tag.
func sameModel(a, b string) bool {
	return strings.TrimSuffix(a, ":latest") == strings.TrimSuffix(b, ":latest")
}
