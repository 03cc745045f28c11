package hub

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/link"
	"github.com/idlegrid/idlegrid/internal/provider"
)

var idleProviders = flag.Int("idle-providers", 1000, "provider agents BenchmarkIdleProviders connects")

// Environment of the child process that runs BenchmarkIdleProviders' agents.
const (
	envAgentsURL = "IDLEGRID_BENCH_AGENTS_URL"
	envAgentsN   = "IDLEGRID_BENCH_AGENTS_N"
)

// idleHeartbeat is short so that every connection has exchanged pings a
// few times before it is measured: its buffers are those of a link in use,
// not of one that has only done the handshake.
const idleHeartbeat = time.Second

func TestMain(m *testing.M) {
	if url := os.Getenv(envAgentsURL); url != "" {
		n, _ := strconv.Atoi(os.Getenv(envAgentsN))
		if err := runIdleAgents(url, n); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// memory is what the process holds: live heap after a GC, goroutine stacks,
// goroutines and open file descriptors (-1 where /proc is missing).
type memory struct {
	heap, stack, goroutines, fds int64
}

func measure() memory {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fds := int64(-1)
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		fds = int64(len(ents))
	}
	return memory{heap: int64(ms.HeapAlloc), stack: int64(ms.StackInuse), goroutines: int64(runtime.NumGoroutine()), fds: fds}
}

// per is (after - before) / n.
func per(before, after int64, n int) float64 { return float64(after-before) / float64(n) }

// BenchmarkIdleProviders connects -idle-providers real provider agents
// (provider.Agent on a simulated backend, the real handshake and link over
// WebSocket on loopback) to one hub and reports what one idle provider
// connection costs the gateway: live heap, goroutine stacks, goroutines and
// file descriptors per connection. The agents run in a child process so
// that none of their memory is counted here; the child reports the agent
// side the same way (agent-*/conn). The timed loop is Snapshot, the copy of
// the provider set that every placement scans, at that many providers.
//
//	go test -run '^$' -bench BenchmarkIdleProviders -benchtime 200x ./internal/hub/
func BenchmarkIdleProviders(b *testing.B) {
	n := *idleProviders
	gw, _ := keys.Generate()
	h := New(Config{Key: gw, ChainID: chain, Link: link.Options{Heartbeat: idleHeartbeat}})
	srv := httptest.NewServer(h)
	defer srv.Close()
	defer h.Close()
	before := measure()

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	child := exec.CommandContext(ctx, os.Args[0], "-test.run=^$", "-test.bench=^$")
	child.Env = append(os.Environ(), envAgentsURL+"="+srv.URL, envAgentsN+"="+strconv.Itoa(n))
	child.Stderr = os.Stderr
	stdin, err := child.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := child.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		stdin.Close() // the child stops its agents and exits on EOF
		if err := child.Wait(); err != nil {
			b.Errorf("agents process: %v", err)
		}
	}()
	// The child prints one line once all its agents are connected.
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatalf("agents process: %v", err)
	}
	var agent memory
	if _, err := fmt.Sscanf(line, "agents heap=%d stack=%d goroutines=%d fds=%d", &agent.heap, &agent.stack, &agent.goroutines, &agent.fds); err != nil {
		b.Fatalf("agents process said %q: %v", line, err)
	}
	for len(h.Snapshot()) < n {
		if ctx.Err() != nil {
			b.Fatalf("%d of %d providers connected before the deadline", len(h.Snapshot()), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(3 * idleHeartbeat) // pings both ways on every link
	after := measure()
	if got := len(h.Snapshot()); got != n {
		b.Fatalf("%d of %d providers still connected after idling", got, n)
	}

	for b.Loop() {
		if len(h.Snapshot()) != n {
			b.Fatal("a provider left")
		}
	}
	b.ReportMetric(per(before.heap, after.heap, n), "heap-B/conn")
	b.ReportMetric(per(before.stack, after.stack, n), "stack-B/conn")
	b.ReportMetric(per(before.goroutines, after.goroutines, n), "goroutines/conn")
	if before.fds >= 0 {
		b.ReportMetric(per(before.fds, after.fds, n), "fds/conn")
	}
	b.ReportMetric(per(0, agent.heap, n), "agent-heap-B/conn")
	b.ReportMetric(per(0, agent.stack, n), "agent-stack-B/conn")
	b.ReportMetric(per(0, agent.goroutines, n), "agent-goroutines/conn")
	if agent.fds >= 0 {
		b.ReportMetric(per(0, agent.fds, n), "agent-fds/conn")
	}
}

// runIdleAgents is the child process: it connects n agents to url, prints
// what they hold once all are connected, and stops them when stdin closes.
func runIdleAgents(url string, n int) error {
	if n <= 0 {
		return fmt.Errorf("%s: want a positive number of agents", envAgentsN)
	}
	backend, err := sim.New(sim.DefaultConfig())
	if err != nil {
		return err
	}
	before := measure()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	agents := make([]*provider.Agent, n)
	done := make(chan struct{}, n)
	for i := range agents {
		key, err := keys.Generate()
		if err != nil {
			return err
		}
		a, err := provider.New(provider.Config{Gateway: url, Key: key, Backend: backend, Slots: 1, ExpectChainID: chain,
			MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second})
		if err != nil {
			return err
		}
		agents[i] = a
		go func() { a.Run(ctx); done <- struct{}{} }()
	}
	deadline := time.Now().Add(2 * time.Minute)
	for connected := 0; connected < n; {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d agents connected before the deadline", connected, n)
		}
		time.Sleep(50 * time.Millisecond)
		connected = 0
		for _, a := range agents {
			if a.Status().Connected {
				connected++
			}
		}
	}
	time.Sleep(3 * idleHeartbeat)
	after := measure()
	fmt.Printf("agents heap=%d stack=%d goroutines=%d fds=%d\n", after.heap-before.heap, after.stack-before.stack,
		after.goroutines-before.goroutines, after.fds-before.fds)
	io.Copy(io.Discard, os.Stdin)
	cancel()
	for range n {
		<-done
	}
	return nil
}
