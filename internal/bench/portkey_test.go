package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/gateway/api/apitypes"
	"github.com/idlegrid/idlegrid/internal/gateway/client"
)

// needPortkey skips t unless Node and the pinned Portkey are there. With
// IDLEGRID_PORTKEY_INSTALL=1 it installs Portkey first, with the bench's
// own install (cached, so once per machine), and skips with npm's error
// when that fails (no registry); without it tests download nothing.
func needPortkey(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not on PATH")
	}
	dir, err := portkeyDir()
	if err != nil {
		t.Skip(err)
	}
	if portkeyInstalled(dir) {
		return
	}
	if os.Getenv("IDLEGRID_PORTKEY_INSTALL") != "1" {
		t.Skipf("Portkey %s is not installed in %s: `idlegrid bench overhead` installs it, and so does this test with IDLEGRID_PORTKEY_INSTALL=1", PortkeyVersion, dir)
	}
	portkeyInstall.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		_, portkeyInstallErr = installPortkey(ctx, func(s string) { t.Log(s) })
	})
	if portkeyInstallErr != nil {
		t.Skipf("IDLEGRID_PORTKEY_INSTALL=1, but Portkey %s could not be installed (no npm registry?): %v", PortkeyVersion, portkeyInstallErr)
	}
}

// portkeyInstall makes needPortkey try npm once per test binary: a second
// test skips at once when the registry is out of reach.
var (
	portkeyInstall    sync.Once
	portkeyInstallErr error
)

// instantSim serves the simulator with no first-token delay and no token
// pacing.
func instantSim(t *testing.T) http.Handler {
	t.Helper()
	cfg := sim.DefaultConfig()
	cfg.Models[0].FirstToken, cfg.Models[0].TokensPerSecond = 0, 0
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return sim.NewServer(s)
}

// TestPortkeyPeer runs the bench's Portkey in front of the simulator: an
// answer through it is the simulator's, a stream through it is the
// simulator's stream passed on event by event (what the time to first
// token through Portkey measures), and the node process listens on
// loopback only. It needs Node and Portkey (see needPortkey).
func TestPortkeyPeer(t *testing.T) {
	needPortkey(t)
	simHandler := instantSim(t)
	upstream := httptest.NewServer(simHandler)
	defer upstream.Close()
	peer, err := startPortkey(t.Context(), upstream.URL, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()

	t.Run("answer", func(t *testing.T) {
		body := []byte(`{"model":"sim","messages":[{"role":"user","content":"hi"}],"max_tokens":4,"seed":1}`)
		answer := func(base string, p *portkeyPeer) string {
			req, _ := http.NewRequestWithContext(t.Context(), "POST", base+"/v1/chat/completions", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer x")
			if p != nil {
				p.header(req.Header)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			var out struct {
				Choices []struct {
					Message struct{ Content string } `json:"message"`
				} `json:"choices"`
			}
			if err := json.Unmarshal(b, &out); err != nil || resp.StatusCode != 200 || len(out.Choices) != 1 {
				t.Fatalf("%s: %d %s (%v)", base, resp.StatusCode, b, err)
			}
			return out.Choices[0].Message.Content
		}
		if direct, via := answer(upstream.URL, nil), answer(peer.URL, peer); direct == "" || via != direct {
			t.Errorf("through Portkey %q, directly %q", via, direct)
		}
	})

	t.Run("stream", func(t *testing.T) {
		// The gated upstream holds its stream after the first event until
		// the first content has come through Portkey: a Portkey that
		// buffered the stream would never pass it on, and the guard below
		// ends the wait.
		release := make(chan struct{})
		var once sync.Once
		open := func() { once.Do(func() { close(release) }) }
		gated := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			simHandler.ServeHTTP(&gatedWriter{ResponseWriter: w, release: release, gone: r.Context().Done()}, r)
		}))
		defer gated.Close()
		defer open()
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		req := map[string]any{"model": "sim", "stream": true, "max_tokens": 8, "seed": 1, "temperature": 0,
			"messages": []map[string]string{{"role": "user", "content": "hi"}}}
		stream := func(base string, header http.Header, onContent func()) (string, error) {
			resp, err := client.New(base, "x").Do(ctx, "POST", "/v1/chat/completions", req, header)
			if err != nil {
				return "", err
			}
			defer resp.Body.Close()
			if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || !strings.HasPrefix(ct, "text/event-stream") {
				b, _ := io.ReadAll(resp.Body)
				return "", fmt.Errorf("%s: %d %q: %s", base, resp.StatusCode, ct, b)
			}
			var text strings.Builder
			err = client.ReadChatStream(resp.Body, client.DefaultMaxLine, func(ch apitypes.ChatChunk) error {
				for _, c := range ch.Choices {
					if s := c.Delta.Text(); s != "" {
						text.WriteString(s)
						onContent()
					}
				}
				return nil
			}, resp.StatusCode, "")
			return text.String(), err
		}
		direct, err := stream(upstream.URL, nil, func() {})
		if err != nil {
			t.Fatal(err)
		}
		header := http.Header{}
		portkeyRoute(header, gated.URL+"/v1")
		via, err := stream(peer.URL, header, open)
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Portkey passed no content on while the upstream held the rest of its stream: it buffers streams (%v)", err)
		}
		if err != nil {
			t.Fatal(err)
		}
		if direct == "" || via != direct {
			t.Errorf("streamed through Portkey %q, directly %q", via, direct)
		}
	})

	t.Run("loopback", func(t *testing.T) {
		if runtime.GOOS != "linux" {
			t.Skipf("reading a process's listening sockets needs Linux's /proc, not %s", runtime.GOOS)
		}
		addrs, err := listeningSockets(peer.Pid())
		if err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse(peer.URL)
		port, _ := strconv.Atoi(u.Port())
		own := false
		for _, a := range addrs {
			if !a.Addr().IsLoopback() {
				t.Errorf("Portkey (pid %d) listens on %s, not on loopback", peer.Pid(), a)
			}
			own = own || int(a.Port()) == port
		}
		if !own {
			t.Errorf("Portkey's listening sockets %v do not include its own port %d", addrs, port)
		}
	})
}

// gatedWriter passes the first flush of a response on and holds the
// second until release is closed (or the request is gone).
type gatedWriter struct {
	http.ResponseWriter
	flushes       int
	release, gone <-chan struct{}
}

func (w *gatedWriter) Flush() {
	if w.flushes++; w.flushes == 2 {
		select {
		case <-w.release:
		case <-w.gone:
		}
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// listeningSockets returns the local addresses of the TCP sockets in
// LISTEN state that process pid holds: its socket inodes (the
// socket:[inode] links in /proc/pid/fd) looked up in the tcp and tcp6
// tables of its network namespace.
func listeningSockets(pid int) ([]netip.AddrPort, error) {
	proc := filepath.Join("/proc", strconv.Itoa(pid))
	fds, err := os.ReadDir(filepath.Join(proc, "fd"))
	if err != nil {
		return nil, err
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join(proc, "fd", fd.Name()))
		if inode, ok := strings.CutPrefix(target, "socket:["); err == nil && ok {
			inodes[strings.TrimSuffix(inode, "]")] = true
		}
	}
	var out []netip.AddrPort
	for _, table := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(filepath.Join(proc, "net", table))
		if errors.Is(err, fs.ErrNotExist) {
			continue // no IPv6
		}
		if err != nil {
			return nil, err
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		for _, line := range lines[1:] {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" || !inodes[f[9]] {
				continue
			}
			a, err := procAddr(f[1])
			if err != nil {
				return nil, fmt.Errorf("%s: %q: %w", table, line, err)
			}
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("process %d has no listening TCP socket among its %d sockets", pid, len(inodes))
	}
	return out, nil
}

// procAddr decodes a /proc/net/tcp address: the IP as 32-bit words in
// host byte order, in hex, a colon and the port in hex.
func procAddr(s string) (netip.AddrPort, error) {
	ipHex, portHex, ok := strings.Cut(s, ":")
	raw, err := hex.DecodeString(ipHex)
	if !ok || err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("address %q", s)
	}
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("port of %q: %w", s, err)
	}
	ip := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(ip[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	addr, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(addr.Unmap(), uint16(port)), nil
}

// TestOverheadPortkeyTTFT runs the bench at a tiny size with its Portkey
// peer: Portkey gets its row in the non-streaming table and its time to
// first token on the same line as direct and idlegrid.
func TestOverheadPortkeyTTFT(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a network and Portkey; skipped with -short")
	}
	needPortkey(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var out strings.Builder
	res, err := Overhead(ctx, OverheadConfig{Requests: 40, Concurrency: []int{1}, Streams: 2, StreamTokens: 5, StreamRate: 200,
		RPSDuration: 100 * time.Millisecond, Peer: true, Out: &out})
	t.Log(out.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.NonStreaming) != 1 || len(res.NonStreaming[0].Peer.Dist) != 40 {
		t.Fatalf("no Portkey row: %+v", res.NonStreaming)
	}
	if len(res.TTFT.Peer.Dist) != 20 || len(res.TTFTOpenAI.Dist) != 20 || len(res.TTFT.Direct.Dist) != 20 || len(res.TTFT.Via.Dist) != 20 {
		t.Fatalf("time to first token: %d through Portkey, %d of the upstream's OpenAI stream, %d direct, %d via",
			len(res.TTFT.Peer.Dist), len(res.TTFTOpenAI.Dist), len(res.TTFT.Direct.Dist), len(res.TTFT.Via.Dist))
	}
	var line string
	for l := range strings.Lines(out.String()) {
		if strings.HasPrefix(l, "time to first token") {
			line = l
		}
	}
	if !strings.Contains(line, "| added p50") || !strings.Contains(line, "| Portkey "+PortkeyVersion+" p50") {
		t.Errorf("time to first token line: %q", line)
	}
	if s := res.Summary(); !strings.Contains(s, "(Portkey added p50 ") {
		t.Errorf("summary has no Portkey time to first token: %s", s)
	}
}
