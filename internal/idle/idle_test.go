package idle

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeSMI writes an nvidia-smi stand-in into a fresh directory on PATH:
// it prints gpus for --query-gpu and apps for --query-compute-apps, read
// from files the test rewrites.
type fakeSMI struct {
	dir string
}

func newFakeSMI(t *testing.T) *fakeSMI {
	t.Helper()
	dir := t.TempDir()
	script := `#!/bin/sh
case "$1" in
  --query-gpu=*) cat "` + dir + `/gpus" ;;
  --query-compute-apps=*) cat "` + dir + `/apps" ;;
  *) echo "unexpected arguments: $*" >&2; exit 2 ;;
esac
`
	if err := os.WriteFile(filepath.Join(dir, "nvidia-smi"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	f := &fakeSMI{dir: dir}
	f.set(t, "NVIDIA GeForce RTX 4090, 24564, 512, 0\n", "")
	return f
}

func (f *fakeSMI) set(t *testing.T, gpus, apps string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(f.dir, "gpus"), []byte(gpus), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.dir, "apps"), []byte(apps), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestGPUCheck(t *testing.T) {
	smi := newFakeSMI(t)
	g := GPU{UtilizationPercent: 30, MinMemoryMiB: 100}
	ctx := context.Background()
	infos, err := g.GPUs(ctx)
	if err != nil || len(infos) != 1 || infos[0] != (GPUInfo{Name: "NVIDIA GeForce RTX 4090", MemoryMiB: 24564, UsedMiB: 512}) {
		t.Fatalf("GPUs: %+v %v", infos, err)
	}
	cases := []struct {
		name       string
		gpus, apps string
		own        int
		busy       bool
		reason     string
	}{
		{"idle", "RTX, 24564, 512, 0\n", "", 0, false, ""},
		{"only the model server", "RTX, 24564, 9000, 95\n", "4242, /usr/local/bin/ollama, 8000\n", 1, false, ""},
		{"a game", "RTX, 24564, 9000, 95\n", "4242, /usr/local/bin/ollama, 8000\n977, /opt/game/Game.x86_64, 3000\n", 1, true, "Game.x86_64 (pid 977) uses 3000 MiB"},
		{"a small helper below the memory floor", "RTX, 24564, 600, 0\n", "55, /usr/bin/Xorg, 40\n", 0, false, ""},
		{"utilization with no job of ours", "RTX, 24564, 600, 80\n", "", 0, true, "GPU 0 (RTX) is 80% busy"},
		{"utilization from our own job", "RTX, 24564, 600, 80\n", "", 2, false, ""},
		{"no compute app listing ([N/A] fields)", "RTX, [N/A], [N/A], 10\n", "", 0, false, ""},
	}
	for _, tc := range cases {
		smi.set(t, tc.gpus, tc.apps)
		busy, reason, err := g.Busy(ctx, time.Now(), tc.own)
		if err != nil || busy != tc.busy || !strings.Contains(reason, tc.reason) {
			t.Errorf("%s: busy %v %q %v", tc.name, busy, reason, err)
		}
	}
	if _, _, err := (GPU{Command: "no-such-nvidia-smi"}).Busy(ctx, time.Now(), 0); err == nil || !strings.Contains(err.Error(), ErrUnavailable.Error()) {
		t.Errorf("without nvidia-smi: %v", err)
	}
	smi.set(t, "garbage\n", "")
	if _, _, err := g.Busy(ctx, time.Now(), 0); err == nil {
		t.Error("a malformed nvidia-smi answer was accepted")
	}
}

func TestCPUCheck(t *testing.T) {
	f := filepath.Join(t.TempDir(), "loadavg")
	c := CPU{LoadPerCore: 0.5, LoadFile: f, Cores: 4}
	for _, tc := range []struct {
		load string
		own  int
		busy bool
	}{{"0.40 0.5 0.6 1/200 123", 0, false}, {"2.10 0.5 0.6 1/200 123", 0, true}, {"3.90 0.5 0.6 1/200 123", 1, false}} {
		os.WriteFile(f, []byte(tc.load), 0o644)
		if busy, _, err := c.Busy(context.Background(), time.Now(), tc.own); err != nil || busy != tc.busy {
			t.Errorf("load %s own %d: %v %v", tc.load, tc.own, busy, err)
		}
	}
	os.WriteFile(f, []byte("x"), 0o644)
	if _, _, err := c.Busy(context.Background(), time.Now(), 0); err == nil {
		t.Error("a bad load average was accepted")
	}
}

func TestSchedule(t *testing.T) {
	ws, err := ParseSchedule("22:00-08:00, 12:00-13:30")
	if err != nil {
		t.Fatal(err)
	}
	s := Schedule{Windows: ws}
	day := time.Date(2026, 11, 23, 0, 0, 0, 0, time.Local)
	for _, tc := range []struct {
		at   string
		busy bool
	}{{"23:15", false}, {"03:00", false}, {"07:59", false}, {"08:00", true}, {"12:30", false}, {"13:30", true}, {"21:59", true}, {"22:00", false}} {
		d, _ := clock(tc.at)
		busy, reason, _ := s.Busy(context.Background(), day.Add(d), 0)
		if busy != tc.busy || (busy && !strings.Contains(reason, "22:00-08:00, 12:00-13:30")) {
			t.Errorf("%s: busy %v %q", tc.at, busy, reason)
		}
	}
	for _, bad := range []string{"", "22-08", "25:00-01:00", "10:00-10:00", "10:00"} {
		if _, err := ParseSchedule(bad); err == nil {
			t.Errorf("ParseSchedule(%q) accepted", bad)
		}
	}
}

func TestBattery(t *testing.T) {
	dir := t.TempDir()
	put := func(dev, typ, status, capacity string) {
		os.MkdirAll(filepath.Join(dir, dev), 0o755)
		os.WriteFile(filepath.Join(dir, dev, "type"), []byte(typ+"\n"), 0o644)
		os.WriteFile(filepath.Join(dir, dev, "status"), []byte(status+"\n"), 0o644)
		os.WriteFile(filepath.Join(dir, dev, "capacity"), []byte(capacity+"\n"), 0o644)
	}
	b := Battery{Dir: dir}
	if _, _, err := b.Busy(context.Background(), time.Now(), 0); err == nil {
		t.Error("no battery: want ErrUnavailable")
	}
	put("AC", "Mains", "", "")
	put("BAT0", "Battery", "Charging", "80")
	if busy, _, err := b.Busy(context.Background(), time.Now(), 0); busy || err != nil {
		t.Errorf("charging: %v %v", busy, err)
	}
	put("BAT0", "Battery", "Discharging", "47")
	if busy, reason, err := b.Busy(context.Background(), time.Now(), 0); !busy || reason != "running on battery (47%)" || err != nil {
		t.Errorf("discharging: %v %q %v", busy, reason, err)
	}
}

// fakeAgent records pause and resume calls.
type fakeAgent struct {
	mu     sync.Mutex
	paused bool
	reason string
	calls  int
	active int
}

func (a *fakeAgent) Pause(r string) {
	a.mu.Lock()
	a.paused, a.reason = true, r
	a.calls++
	a.mu.Unlock()
}
func (a *fakeAgent) Resume()         { a.mu.Lock(); a.paused, a.reason = false, ""; a.calls++; a.mu.Unlock() }
func (a *fakeAgent) ActiveJobs() int { a.mu.Lock(); defer a.mu.Unlock(); return a.active }

// switchCheck is busy when told.
type switchCheck struct {
	mu   sync.Mutex
	busy bool
}

func (c *switchCheck) Name() string { return "switch" }
func (c *switchCheck) Busy(context.Context, time.Time, int) (bool, string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.busy, "the owner is busy", nil
}

// TestPolicy: a busy check pauses at once; serving resumes only after every
// check has been clear for ResumeAfter; a check that cannot run changes
// nothing; a manual pause holds whatever the checks say, survives a
// restart, and its resume takes effect at once.
func TestPolicy(t *testing.T) {
	agent := &fakeAgent{}
	sw := &switchCheck{}
	manualFile := filepath.Join(t.TempDir(), "paused")
	p := &Policy{Agent: agent, Checks: []Check{sw, GPU{Command: "no-such-nvidia-smi"}}, ResumeAfter: time.Minute, Manual: &ManualPause{Path: manualFile}}
	ctx := context.Background()
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	if st := p.Evaluate(ctx, t0); st.Paused || agent.calls != 0 || len(st.Results) != 2 || st.Results[1].Err == "" {
		t.Fatalf("idle: %+v, %d calls", st, agent.calls)
	}
	sw.busy = true
	if st := p.Evaluate(ctx, t0.Add(5*time.Second)); !st.Paused || !agent.paused || agent.reason != "the owner is busy" {
		t.Fatalf("busy: %+v, agent %+v", st, agent)
	}
	sw.busy = false
	p.Evaluate(ctx, t0.Add(10*time.Second))
	p.Evaluate(ctx, t0.Add(60*time.Second))
	if !agent.paused {
		t.Fatal("resumed before a minute of quiet")
	}
	sw.busy = true // busy again: the quiet period starts over
	p.Evaluate(ctx, t0.Add(65*time.Second))
	sw.busy = false
	p.Evaluate(ctx, t0.Add(70*time.Second))
	if st := p.Evaluate(ctx, t0.Add(125*time.Second)); !st.Paused {
		t.Fatal("resumed 55 s after the last busy check")
	}
	if st := p.Evaluate(ctx, t0.Add(131*time.Second)); st.Paused || agent.paused {
		t.Fatalf("still paused after a minute of quiet: %+v", st)
	}
	calls := agent.calls
	if err := p.Pause(""); err != nil {
		t.Fatal(err)
	}
	if st := p.Evaluate(ctx, t0.Add(140*time.Second)); !st.Paused || !st.Manual || agent.reason != "paused by the owner" {
		t.Fatalf("manual pause: %+v", st)
	}
	// A new policy (a restart) reads the pause back.
	agent2 := &fakeAgent{}
	p2 := &Policy{Agent: agent2, Checks: []Check{&switchCheck{}}, Manual: &ManualPause{Path: manualFile}}
	if st := p2.Evaluate(ctx, t0.Add(150*time.Second)); !st.Paused || !agent2.paused {
		t.Fatalf("after restart: %+v", st)
	}
	if err := p.Resume(); err != nil {
		t.Fatal(err)
	}
	if st := p.Evaluate(ctx, t0.Add(141*time.Second)); st.Paused || agent.paused || agent.calls != calls+2 {
		t.Fatalf("manual resume: %+v, %d calls", st, agent.calls)
	}
	if _, err := os.Stat(manualFile); !os.IsNotExist(err) {
		t.Errorf("pause file left after resume: %v", err)
	}
}
