package node_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/node"
	"github.com/idlegrid/idlegrid/internal/tstest"
)

// TestIdlePolicy: a provider whose GPU another program starts using (a fake
// nvidia-smi) pauses and the gateway routes around it; when the program
// exits it resumes after the quiet period; its owner pauses and resumes it
// through the control endpoint.
func TestIdlePolicy(t *testing.T) {
	keyFile, register := stakedProvider(t, "idle")
	tn := startNet(t, netOptions{genesis: register})
	// Only the provider under test may serve.
	if err := tn.Provider.Pause("not under test"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	apps := filepath.Join(dir, "apps")
	smi := filepath.Join(dir, "nvidia-smi")
	script := "#!/bin/sh\ncase \"$1\" in\n  --query-gpu=*) echo 'NVIDIA RTX 4090, 24564, 9000, 90' ;;\n  --query-compute-apps=*) cat '" + apps + "' ;;\nesac\n"
	if err := os.WriteFile(smi, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	game := "4242, /usr/bin/ollama, 8000\n977, /opt/game/Game.x86_64, 3000\n"
	if err := os.WriteFile(apps, []byte(game), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := node.StartProvider(node.ProviderConfig{
		Gateway: tn.URL, KeyFile: keyFile, Backend: tn.Backend, Slots: 4,
		Idle: &node.IdleConfig{GPU: true, GPUCommand: smi, GPUUtilization: 30, GPUMemoryMiB: 256,
			Interval: 20 * time.Millisecond, ResumeAfter: 300 * time.Millisecond},
		PauseFile: filepath.Join(dir, "paused.json"), ControlAddr: "127.0.0.1:0",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop() })
	if err := p.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	chat := func() (int, string) {
		status, b := post(t, tn.URL+"/v1/chat/completions", testAPIKey, `{"model":"sim","max_tokens":2,"messages":[{"role":"user","content":"hi"}]}`)
		return status, string(b)
	}
	// Paused from the start: the game holds the GPU.
	if st := p.ControlStatus(); st.Idle == nil || !st.Idle.Paused || !strings.Contains(st.Idle.Reason, "Game.x86_64 (pid 977)") {
		t.Fatalf("status %+v", st.Idle)
	}
	if status, b := chat(); status != 503 || !strings.Contains(b, "paused") {
		t.Fatalf("while the game runs: %d %s", status, b)
	}
	// The game exits: only Ollama (ignored) holds GPU memory, and the GPU
	// is idle.
	script = strings.Replace(script, "9000, 90", "600, 0", 1)
	os.WriteFile(smi, []byte(script), 0o755)
	os.WriteFile(apps, []byte("4242, /usr/bin/ollama, 8000\n"), 0o644)
	tstest.WaitFor(t, 20*time.Second, "serving to resume after the quiet period", func() bool {
		status, _ := chat()
		return status == 200
	})
	// The owner pauses through the control endpoint, then resumes.
	c := node.ControlClient{URL: p.ControlURL}
	st, err := c.Pause(ctx, "watching a film")
	if err != nil || !st.Agent.Paused || st.Agent.Reason != "watching a film" || !st.Idle.Manual {
		t.Fatalf("pause: %+v %v", st, err)
	}
	tstest.WaitFor(t, 10*time.Second, "the gateway to see the pause", func() bool {
		status, _ := chat()
		return status == 503
	})
	if _, err := os.Stat(filepath.Join(dir, "paused.json")); err != nil {
		t.Errorf("the manual pause is not kept on disk: %v", err)
	}
	if st, err = c.Resume(ctx); err != nil || st.Agent.Paused {
		t.Fatalf("resume: %+v %v", st, err)
	}
	tstest.WaitFor(t, 10*time.Second, "serving after the owner resumed", func() bool {
		status, _ := chat()
		return status == 200
	})
	if st, err := c.Status(ctx); err != nil || !st.Agent.Connected || st.Agent.Served < 2 || len(st.Idle.Results) != 1 {
		t.Errorf("status %+v %v", st, err)
	}
	// The agent's metrics are on its control endpoint.
	resp, err := http.Get(p.ControlURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "idlegrid_provider_jobs_served_total") || !strings.Contains(string(b), "idlegrid_provider_connected 1") {
		t.Errorf("provider metrics:\n%s", b)
	}
}
