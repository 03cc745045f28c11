package onboard

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend/sim"
)

func testSim(t *testing.T) *sim.Sim {
	t.Helper()
	cfg := sim.DefaultConfig()
	cfg.Models[0].FirstToken = 5 * time.Millisecond
	cfg.Models[0].TokensPerSecond = 2000
	cfg.Models = append(cfg.Models, sim.ModelConfig{Name: "other", Weights: 7})
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCheckModels(t *testing.T) {
	s := testSim(t)
	ctx := context.Background()
	all, err := CheckModels(ctx, s, nil)
	if err != nil || len(all) != 2 {
		t.Fatalf("all models: %v %v", all, err)
	}
	one, err := CheckModels(ctx, s, []string{"sim:latest"})
	if err != nil || len(one) != 1 || one[0].Name != "sim" {
		t.Fatalf("sim:latest: %v %v", one, err)
	}
	if _, err := CheckModels(ctx, s, []string{"sim", "llama3.2:1b"}); err == nil || !strings.Contains(err.Error(), "ollama pull llama3.2:1b") {
		t.Fatalf("missing model: %v", err)
	}
}

func TestBenchmark(t *testing.T) {
	s := testSim(t)
	var calls []int
	res, err := Benchmark(context.Background(), s, "sim", 3, 16, func(done int) { calls = append(calls, done) })
	if err != nil {
		t.Fatal(err)
	}
	if res.Runs != 3 || res.Tokens == 0 || res.FirstToken <= 0 || res.TokensPerSecond <= 0 || len(calls) != 3 || calls[2] != 3 {
		t.Fatalf("result %+v, progress %v", res, calls)
	}
	if _, err := Benchmark(context.Background(), s, "missing", 1, 16, nil); err == nil {
		t.Error("benchmark of a missing model succeeded")
	}
}

func TestMarketAndPrice(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/models" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(`{"object":"list","data":[
			{"id":"sim","object":"model","providers":3,"price_per_mtok":{"prompt":{"min":"0.100000","median":"0.200000"},"completion":{"min":"0.300000","median":"0.600000"}},"tokens_per_second":100},
			{"id":"idle","object":"model"}]}`))
	}))
	defer srv.Close()
	m, err := FetchMarket(context.Background(), srv.URL+"/", nil)
	if err != nil || len(m) != 1 {
		t.Fatalf("market %+v %v", m, err)
	}
	sm := m["sim"]
	if sm.Providers != 3 || sm.MedianPrompt != 200_000 || sm.MinCompletion != 300_000 || sm.MedianCompletion != 600_000 || sm.TokensPerSecond != 100 {
		t.Fatalf("sim market %+v", sm)
	}
	// Half the network's median speed: half its median price.
	s := SuggestPrice(&sm, BenchResult{TokensPerSecond: 50}, 1, 2)
	if s.Prompt != 100_000 || s.Completion != 300_000 || !strings.Contains(s.Why, "× 0.50") {
		t.Errorf("slow machine: %+v", s)
	}
	// Faster than the median: the median, never more.
	if s := SuggestPrice(&sm, BenchResult{TokensPerSecond: 500}, 1, 2); s.Prompt != 200_000 || s.Completion != 600_000 {
		t.Errorf("fast machine: %+v", s)
	}
	// A median no provider can deliver (an answer timed as arriving in
	// no time) is ignored: the median price, not one 100× below it.
	absurd := sm
	absurd.TokensPerSecond = 112_949
	if s := SuggestPrice(&absurd, BenchResult{TokensPerSecond: 250}, 1, 2); s.Prompt != 200_000 || s.Completion != 600_000 || !strings.Contains(s.Why, "112949 tokens/s, is above what any provider delivers (10000): ignored") {
		t.Errorf("implausible median: %+v", s)
	}
	if s := SuggestPrice(nil, BenchResult{}, 7, 9); s.Prompt != 7 || s.Completion != 9 {
		t.Errorf("no market: %+v", s)
	}
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"data":[{"id":"x","providers":1,"price_per_mtok":{"prompt":{"min":"abc","median":"1"},"completion":{"min":"1","median":"1"}}}]}`))
	}))
	defer bad.Close()
	if _, err := FetchMarket(context.Background(), bad.URL, nil); err == nil {
		t.Error("a malformed price was accepted")
	}
}

func TestDetectHardware(t *testing.T) {
	dir := t.TempDir()
	smi := filepath.Join(dir, "nvidia-smi")
	os.WriteFile(smi, []byte("#!/bin/sh\necho 'NVIDIA GeForce RTX 3060, 12288, 300, 2'\n"), 0o755)
	h := DetectHardware(context.Background(), smi)
	if len(h.GPUs) != 1 || h.GPUs[0].Name != "NVIDIA GeForce RTX 3060" || h.GPUs[0].MemoryBytes != 12288<<20 || h.Cores == 0 {
		t.Fatalf("hardware %+v", h)
	}
	if s := DescribeHardware(h); !strings.Contains(s, "GPU 0   NVIDIA GeForce RTX 3060, 12.0 GiB") {
		t.Errorf("description:\n%s", s)
	}
	if h := DetectHardware(context.Background(), filepath.Join(dir, "absent")); len(h.GPUs) != 0 || !strings.Contains(DescribeHardware(h), "none found") {
		t.Errorf("without nvidia-smi: %+v", h)
	}
}
