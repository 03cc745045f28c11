package idle

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// GPU is busy when another program uses the GPU: nvidia-smi lists a compute
// process that is not the model server (Ignore: name substrings, "ollama"
// by default) using at least MinMemoryMiB, or, while the agent runs no job
// of its own, a GPU's utilization is at least UtilizationPercent.
type GPU struct {
	// Command is nvidia-smi's path or name on PATH (default "nvidia-smi").
	Command            string
	UtilizationPercent int
	MinMemoryMiB       int
	Ignore             []string
}

// Name implements Check.
func (g GPU) Name() string { return "gpu" }

func (g GPU) command() string {
	if g.Command == "" {
		return "nvidia-smi"
	}
	return g.Command
}

// GPUInfo is one GPU as nvidia-smi reports it.
type GPUInfo struct {
	Name        string `json:"name"`
	MemoryMiB   int    `json:"memory_mib"`
	UsedMiB     int    `json:"used_mib"`
	UtilPercent int    `json:"utilization_percent"`
}

// App is a process using a GPU.
type App struct {
	PID     int
	Name    string
	UsedMiB int
}

// query runs nvidia-smi with args and returns its CSV rows (no header, no
// units), each split into trimmed fields.
func (g GPU) query(ctx context.Context, args ...string) ([][]string, error) {
	path, err := exec.LookPath(g.command())
	if err != nil {
		return nil, fmt.Errorf("nvidia-smi: %w", ErrUnavailable)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, append(args, "--format=csv,noheader,nounits")...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("nvidia-smi %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	var rows [][]string
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "No running") {
			continue
		}
		fields := strings.Split(line, ",")
		for i := range fields {
			fields[i] = strings.TrimSpace(fields[i])
		}
		rows = append(rows, fields)
	}
	return rows, nil
}

// atoi reads an nvidia-smi number; "[N/A]" and the like read as 0.
func atoi(s string) int {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0
	}
	return n
}

// GPUs lists the GPUs: name, memory, memory used and utilization.
func (g GPU) GPUs(ctx context.Context) ([]GPUInfo, error) {
	rows, err := g.query(ctx, "--query-gpu=name,memory.total,memory.used,utilization.gpu")
	if err != nil {
		return nil, err
	}
	var out []GPUInfo
	for _, r := range rows {
		if len(r) < 4 {
			return nil, fmt.Errorf("nvidia-smi: unexpected line %q", strings.Join(r, ","))
		}
		out = append(out, GPUInfo{Name: r[0], MemoryMiB: atoi(r[1]), UsedMiB: atoi(r[2]), UtilPercent: atoi(r[3])})
	}
	return out, nil
}

// Busy implements Check.
func (g GPU) Busy(ctx context.Context, _ time.Time, ownJobs int) (bool, string, error) {
	gpus, err := g.GPUs(ctx)
	if err != nil {
		return false, "", err
	}
	ignore := g.Ignore
	if ignore == nil {
		ignore = []string{"ollama"}
	}
	// Compute apps are optional: older drivers and some GPUs do not list
	// them, and the utilization rule still applies.
	if rows, err := g.query(ctx, "--query-compute-apps=pid,process_name,used_memory"); err == nil {
		for _, r := range rows {
			if len(r) < 3 {
				continue
			}
			app := App{PID: atoi(r[0]), Name: r[1], UsedMiB: atoi(r[2])}
			if ignored(app.Name, ignore) || app.UsedMiB < g.MinMemoryMiB {
				continue
			}
			return true, fmt.Sprintf("%s (pid %d) uses %d MiB of GPU memory", filepath.Base(app.Name), app.PID, app.UsedMiB), nil
		}
	}
	if ownJobs == 0 && g.UtilizationPercent > 0 {
		for i, info := range gpus {
			if info.UtilPercent >= g.UtilizationPercent {
				return true, fmt.Sprintf("GPU %d (%s) is %d%% busy with no idlegrid job running", i, info.Name, info.UtilPercent), nil
			}
		}
	}
	return false, "", nil
}

func ignored(name string, patterns []string) bool {
	base := strings.ToLower(filepath.Base(name))
	for _, p := range patterns {
		if p != "" && strings.Contains(base, strings.ToLower(p)) {
			return true
		}
	}
	return false
}

// CPU is busy when, with no job of the agent running, the one-minute load
// average per core is at least LoadPerCore: the owner is compiling,
// gaming, or otherwise using the machine. Linux only (/proc/loadavg).
type CPU struct {
	LoadPerCore float64
	// LoadFile defaults to /proc/loadavg.
	LoadFile string
	// Cores defaults to runtime.NumCPU().
	Cores int
}

// Name implements Check.
func (c CPU) Name() string { return "cpu" }

// Busy implements Check.
func (c CPU) Busy(_ context.Context, _ time.Time, ownJobs int) (bool, string, error) {
	file := c.LoadFile
	if file == "" {
		file = "/proc/loadavg"
	}
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return false, "", fmt.Errorf("load average: %w", ErrUnavailable)
	}
	if err != nil {
		return false, "", err
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return false, "", fmt.Errorf("load average: %q is empty", file)
	}
	load, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return false, "", fmt.Errorf("load average %q: %w", fields[0], err)
	}
	cores := c.Cores
	if cores <= 0 {
		cores = runtime.NumCPU()
	}
	if ownJobs > 0 || c.LoadPerCore <= 0 {
		return false, "", nil // our own jobs load the CPU: the number says nothing
	}
	if per := load / float64(cores); per >= c.LoadPerCore {
		return true, fmt.Sprintf("CPU load %.2f on %d cores", load, cores), nil
	}
	return false, "", nil
}

// Window is a daily serving window in local time, [From, To); To before
// From crosses midnight.
type Window struct {
	From, To time.Duration // since midnight
}

// ParseSchedule reads "22:00-08:00,12:00-13:30": the hours during which
// the machine may serve.
func ParseSchedule(s string) ([]Window, error) {
	var out []Window
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		from, to, ok := strings.Cut(part, "-")
		if !ok {
			return nil, fmt.Errorf("serving hours %q: want HH:MM-HH:MM", part)
		}
		f, err := clock(from)
		if err != nil {
			return nil, fmt.Errorf("serving hours %q: %w", part, err)
		}
		t, err := clock(to)
		if err != nil {
			return nil, fmt.Errorf("serving hours %q: %w", part, err)
		}
		if f == t {
			return nil, fmt.Errorf("serving hours %q: empty window", part)
		}
		out = append(out, Window{From: f, To: t})
	}
	if len(out) == 0 {
		return nil, errors.New("serving hours: no window given")
	}
	return out, nil
}

func clock(s string) (time.Duration, error) {
	t, err := time.Parse("15:04", strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not HH:MM", s)
	}
	return time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute, nil
}

func (w Window) contains(d time.Duration) bool {
	if w.From < w.To {
		return d >= w.From && d < w.To
	}
	return d >= w.From || d < w.To
}

func (w Window) String() string {
	f := func(d time.Duration) string { return fmt.Sprintf("%02d:%02d", int(d.Hours()), int(d.Minutes())%60) }
	return f(w.From) + "-" + f(w.To)
}

// Schedule is busy outside its serving windows.
type Schedule struct{ Windows []Window }

// Name implements Check.
func (s Schedule) Name() string { return "schedule" }

// Busy implements Check.
func (s Schedule) Busy(_ context.Context, now time.Time, _ int) (bool, string, error) {
	d := time.Duration(now.Hour())*time.Hour + time.Duration(now.Minute())*time.Minute + time.Duration(now.Second())*time.Second
	var names []string
	for _, w := range s.Windows {
		if w.contains(d) {
			return false, "", nil
		}
		names = append(names, w.String())
	}
	return true, "outside serving hours " + strings.Join(names, ", "), nil
}

// Battery is busy while the machine runs on battery (Linux sysfs).
type Battery struct {
	// Dir defaults to /sys/class/power_supply.
	Dir string
}

// Name implements Check.
func (b Battery) Name() string { return "battery" }

// Busy implements Check.
func (b Battery) Busy(context.Context, time.Time, int) (bool, string, error) {
	dir := b.Dir
	if dir == "" {
		dir = "/sys/class/power_supply"
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, "", fmt.Errorf("power supply: %w", ErrUnavailable)
	}
	found := false
	for _, e := range entries {
		read := func(name string) string {
			v, _ := os.ReadFile(filepath.Join(dir, e.Name(), name))
			return strings.TrimSpace(string(v))
		}
		if read("type") != "Battery" {
			continue
		}
		found = true
		if read("status") == "Discharging" {
			reason := "running on battery"
			if c := read("capacity"); c != "" {
				reason += " (" + c + "%)"
			}
			return true, reason, nil
		}
	}
	if !found {
		return false, "", fmt.Errorf("battery: %w", ErrUnavailable)
	}
	return false, "", nil
}

// ManualPause is the owner's pause, kept in a file so it survives
// restarts (an empty path keeps it in memory only).
type ManualPause struct {
	Path string

	mu     sync.Mutex
	loaded bool
	paused bool
	reason string
}

type manualState struct {
	Paused bool   `json:"paused"`
	Reason string `json:"reason,omitempty"`
}

// Get reports whether the owner paused, and why.
func (m *ManualPause) Get() (bool, string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.loaded && m.Path != "" {
		m.loaded = true
		if b, err := os.ReadFile(m.Path); err == nil {
			var st manualState
			if json.Unmarshal(b, &st) == nil {
				m.paused, m.reason = st.Paused, st.Reason
			}
		}
	}
	return m.paused, m.reason
}

// Set records the owner's decision.
func (m *ManualPause) Set(paused bool, reason string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.loaded = true
	m.paused, m.reason = paused, reason
	if m.Path == "" {
		return nil
	}
	if !paused {
		if err := os.Remove(m.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	b, _ := json.Marshal(manualState{Paused: true, Reason: reason})
	tmp := m.Path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, m.Path)
}
