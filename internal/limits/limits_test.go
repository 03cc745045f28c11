package limits

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func request(t *testing.T, h http.Handler, path, key, remote string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest("POST", path, strings.NewReader("{}"))
	r.RemoteAddr = remote
	if key != "" {
		r.Header.Set("Authorization", "Bearer "+key)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// knownKeys recognises every token that starts with "ig-".
func knownKeys(_ context.Context, tok string) bool { return strings.HasPrefix(tok, "ig-") }

func TestRateLimits(t *testing.T) {
	l := New(Config{KeyRate: 1, KeyBurst: 2, IPRate: 10, IPBurst: 3})
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	l.now = func() time.Time { return now }
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	h := l.Wrap(ok, func(r *http.Request) bool { return r.URL.Path == "/v1/providers/connect" }, knownKeys)
	const ip = "203.0.113.7:5555"
	// The key's burst of 2, then 429 with Retry-After and OpenAI's format.
	for i := range 2 {
		if w := request(t, h, "/v1/chat/completions", "ig-a", ip); w.Code != 200 {
			t.Fatalf("request %d: %d", i, w.Code)
		}
	}
	w := request(t, h, "/v1/chat/completions", "ig-a", ip)
	var e struct {
		Error struct{ Message, Type, Code string }
	}
	if w.Code != 429 || json.Unmarshal(w.Body.Bytes(), &e) != nil || e.Error.Code != "rate_limited" || e.Error.Type != "rate_limit_error" || w.Header().Get("Retry-After") != "1" {
		t.Fatalf("over the key's rate: %d %s %v", w.Code, w.Body, w.Header())
	}
	// The Ollama API answers in Ollama's format.
	w = request(t, h, "/api/chat", "ig-a", ip)
	var oe struct{ Error string }
	if w.Code != 429 || json.Unmarshal(w.Body.Bytes(), &oe) != nil || !strings.Contains(oe.Error, "Rate limit exceeded for this API key") {
		t.Fatalf("Ollama format: %d %s", w.Code, w.Body)
	}
	// Another key from the same address still has the address's budget
	// (3 in a burst; 2 used, the refused ones took none).
	if w := request(t, h, "/v1/chat/completions", "ig-b", ip); w.Code != 200 {
		t.Fatalf("another key: %d %s", w.Code, w.Body)
	}
	if w := request(t, h, "/v1/chat/completions", "ig-c", ip); w.Code != 429 || !strings.Contains(w.Body.String(), "client address") {
		t.Fatalf("over the address's burst: %d %s", w.Code, w.Body)
	}
	// Loopback clients are not limited by address, and exempt paths at all.
	for range 5 {
		if w := request(t, h, "/v1/chat/completions", fmt.Sprint("ig-", time.Now().UnixNano()), "127.0.0.1:1234"); w.Code != 200 {
			t.Fatalf("loopback: %d", w.Code)
		}
		if w := request(t, h, "/v1/providers/connect", "ig-a", ip); w.Code != 200 {
			t.Fatalf("exempt path: %d", w.Code)
		}
	}
	// A second later the key has a token again.
	now = now.Add(time.Second)
	if w := request(t, h, "/v1/chat/completions", "ig-a", "127.0.0.1:1"); w.Code != 200 {
		t.Fatalf("after a second: %d %s", w.Code, w.Body)
	}
	// Idle entries go after a while.
	now = now.Add(idleAfter + 2*time.Minute)
	request(t, h, "/v1/models", "", "127.0.0.1:1")
	if n := len(l.keys.m) + len(l.ips.m); n != 0 {
		t.Errorf("%d idle entries kept", n)
	}
}

func TestConcurrencyCap(t *testing.T) {
	l := New(Config{KeyConcurrent: 2})
	release := make(chan struct{})
	var started sync.WaitGroup
	h := l.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started.Done()
		<-release
	}), nil, knownKeys)
	var done sync.WaitGroup
	for range 2 {
		started.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			request(t, h, "/v1/chat/completions", "ig-k", "127.0.0.1:1")
		}()
	}
	started.Wait()
	if w := request(t, h, "/v1/chat/completions", "ig-k", "127.0.0.1:1"); w.Code != 429 || !strings.Contains(w.Body.String(), "at most 2 at once") {
		t.Fatalf("third in flight: %d %s", w.Code, w.Body)
	}
	close(release)
	done.Wait()
	started.Add(1)
	if w := request(t, h, "/v1/chat/completions", "ig-k", "127.0.0.1:1"); w.Code != 200 {
		t.Fatalf("after the others ended: %d", w.Code)
	}
}

// TestBodyDeadline: a client that trickles its body past the deadline is
// cut off; one that sends it in time gets an answer that streams for
// longer than the deadline.
func TestBodyDeadline(t *testing.T) {
	h := BodyDeadline(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, "body: "+err.Error(), http.StatusRequestTimeout)
			return
		}
		for i := range 6 {
			fmt.Fprintf(w, "chunk %d\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(100 * time.Millisecond)
		}
	}), 300*time.Millisecond, nil)
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Post(srv.URL, "application/json", strings.NewReader(`{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "chunk 5") {
		t.Fatalf("a stream longer than the deadline was cut: %q", b)
	}
	// Trickle: headers announce 100 bytes, only a few arrive.
	c, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"a\":")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	status, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.Contains(status, "408") {
		t.Fatalf("trickled body: %q %v", status, err)
	}
}

// TestUnknownKeysMakeNoState: tokens the gateway does not recognise get
// no entry, whether the request is admitted or refused by its address.
func TestUnknownKeysMakeNoState(t *testing.T) {
	l := New(Config{KeyRate: 1, IPRate: 1, IPBurst: 1})
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	h := l.Wrap(ok, nil, knownKeys)
	for i := range 100 {
		request(t, h, "/v1/chat/completions", fmt.Sprint("made-up-", i), "203.0.113.9:1")
	}
	if len(l.keys.m) != 0 {
		t.Fatalf("%d entries for unknown tokens", len(l.keys.m))
	}
	if w := request(t, h, "/v1/chat/completions", "ig-real", "203.0.113.10:1"); w.Code != 200 || len(l.keys.m) != 1 {
		t.Fatalf("a known key: %d, %d entries", w.Code, len(l.keys.m))
	}
}

// TestFullTableEvictsIdle: a full address table forgets its least
// recently seen idle entry instead of refusing new clients; entries with
// requests in flight stay.
func TestFullTableEvictsIdle(t *testing.T) {
	l := New(Config{IPRate: 1, IPBurst: 1, IPConcurrent: 1})
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	l.now = func() time.Time { return now }
	busy, _ := l.admit("", "busy")
	defer busy()
	for i := range maxEntries - 1 {
		release, ref := l.admit("", fmt.Sprint("a", i))
		if ref != nil {
			t.Fatalf("entry %d: %s", i, ref.msg)
		}
		release()
	}
	release, ref := l.admit("", "newcomer")
	if ref != nil {
		t.Fatalf("full table: %s", ref.msg)
	}
	release()
	if len(l.ips.m) != maxEntries || l.ips.m["busy"] == nil || l.ips.m["a0"] != nil || l.ips.m["newcomer"] == nil {
		t.Fatalf("after eviction: %d entries, busy kept %v, oldest idle kept %v", len(l.ips.m), l.ips.m["busy"] != nil, l.ips.m["a0"] != nil)
	}
}

func TestAddressBlock(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":            "192.0.2.1",
		"::ffff:192.0.2.1":     "192.0.2.1",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"2001:db8:1:2::ffff":   "2001:db8:1:2::/64",
		"2001:db8:1:3::1":      "2001:db8:1:3::/64",
	} {
		if got := AddressBlock(net.ParseIP(in)); got != want {
			t.Errorf("AddressBlock(%s) = %s, want %s", in, got, want)
		}
	}
}
