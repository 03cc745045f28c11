package bench

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"testing"

	"github.com/idlegrid/idlegrid/internal/backend/sim"
)

// TestPortkeyPeer relays one chat completion through the installed Portkey
// gateway to the simulator and gets the simulator's answer. It needs Node
// and a Portkey already installed in the cache (`idlegrid bench overhead`
// installs it), so that tests never download anything.
func TestPortkeyPeer(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not on PATH")
	}
	dir, err := portkeyDir()
	if err != nil {
		t.Skip(err)
	}
	if _, err := os.Stat(portkeyEntry(dir)); err != nil {
		t.Skipf("Portkey %s is not installed in %s: `idlegrid bench overhead` installs it", PortkeyVersion, dir)
	}
	cfg := sim.DefaultConfig()
	cfg.Models[0].FirstToken, cfg.Models[0].TokensPerSecond = 0, 0
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	upstream := httptest.NewServer(sim.NewServer(s))
	defer upstream.Close()
	peer, err := startPortkey(t.Context(), upstream.URL, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
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
}
