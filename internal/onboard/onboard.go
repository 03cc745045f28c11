// Package onboard helps a machine owner decide in minutes whether to
// provide: what hardware the machine has, which models the local server
// holds, how fast it serves each (time to first token, tokens per second),
// what the network pays for them, and a price to start with.
package onboard

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/gateway/client"
	"github.com/idlegrid/idlegrid/internal/idle"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// DetectHardware reads what the machine has: the CPU model and memory
// (Linux /proc) and the GPUs (nvidia-smi at gpuCommand, "" for the one on
// PATH); what cannot be read is left out. `provide init` shows it and the
// agent advertises it to gateways.
func DetectHardware(ctx context.Context, gpuCommand string) protocol.Hardware {
	h := protocol.Hardware{OS: runtime.GOOS, Arch: runtime.GOARCH, Cores: runtime.NumCPU()}
	h.CPU = procField("/proc/cpuinfo", "model name")
	if kb := procField("/proc/meminfo", "MemTotal"); kb != "" {
		if n, err := strconv.ParseUint(strings.TrimSuffix(kb, " kB"), 10, 64); err == nil {
			h.MemoryBytes = n << 10
		}
	}
	gpus, _ := idle.GPU{Command: gpuCommand}.GPUs(ctx)
	for _, g := range gpus {
		h.GPUs = append(h.GPUs, protocol.GPU{Name: g.Name, MemoryBytes: uint64(g.MemoryMiB) << 20})
	}
	return h
}

// procField returns the value of the first "key : value" line of file.
func procField(file, key string) string {
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// DescribeHardware describes h in one line per part.
func DescribeHardware(h protocol.Hardware) string {
	var b strings.Builder
	cpu := h.CPU
	if cpu == "" {
		cpu = "unknown CPU"
	}
	fmt.Fprintf(&b, "CPU     %s, %d cores (%s/%s)\n", cpu, h.Cores, h.OS, h.Arch)
	if h.MemoryBytes > 0 {
		fmt.Fprintf(&b, "memory  %.1f GiB\n", float64(h.MemoryBytes)/(1<<30))
	}
	if len(h.GPUs) == 0 {
		b.WriteString("GPU     none found (no nvidia-smi): models run on the CPU\n")
	}
	for i, g := range h.GPUs {
		fmt.Fprintf(&b, "GPU %d   %s, %.1f GiB\n", i, g.Name, float64(g.MemoryBytes)/(1<<30))
	}
	return b.String()
}

// CheckModels compares the models wanted with those the backend holds. An
// empty want means every local model. It fails with the command that
// fetches a missing model.
func CheckModels(ctx context.Context, b backend.Backend, want []string) ([]backend.Model, error) {
	have, err := b.Models(ctx)
	if err != nil {
		return nil, fmt.Errorf("list local models: %w", err)
	}
	if len(want) == 0 {
		if len(have) == 0 {
			return nil, errors.New("the model server has no models: fetch one first, e.g. `ollama pull llama3.2:1b`")
		}
		return have, nil
	}
	var out []backend.Model
	var missing []string
	for _, w := range want {
		i := slices.IndexFunc(have, func(m backend.Model) bool { return sameModel(m.Name, w) })
		if i < 0 {
			missing = append(missing, w)
			continue
		}
		out = append(out, have[i])
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("not on this machine: %s; fetch with `ollama pull %s`", strings.Join(missing, ", "), strings.Join(missing, " && ollama pull "))
	}
	return out, nil
}

// sameModel compares names as Ollama does: "x" is "x:latest".
func sameModel(a, b string) bool {
	norm := func(s string) string {
		if !strings.Contains(s, ":") {
			return s + ":latest"
		}
		return s
	}
	return norm(a) == norm(b)
}

// BenchResult is how fast the machine serves one model.
type BenchResult struct {
	Model string `json:"model"`
	Runs  int    `json:"runs"`
	// FirstToken and TokensPerSecond are medians over the runs, measured
	// as a gateway measures a provider: time to the first token with text,
	// and the delivered rate, tokens per second from the request to the
	// end of the answer, the wait for the first token included.
	FirstToken      time.Duration `json:"first_token"`
	TokensPerSecond float64       `json:"tokens_per_second"`
	Tokens          int           `json:"tokens"`
}

// benchPrompts are what the benchmark asks: short everyday requests.
var benchPrompts = []string{
	"Explain in a few sentences why the sky is blue.",
	"Write a short, friendly email declining a meeting invitation.",
	"List five uses of a paperclip other than holding paper.",
	"Summarize the plot of a heist film in one paragraph.",
	"What are the pros and cons of working from home?",
}

// Benchmark generates runs answers of up to maxTokens tokens with greedy
// decoding and measures each; progress (optional) is called after each.
func Benchmark(ctx context.Context, b backend.Backend, model string, runs, maxTokens int, progress func(done int)) (BenchResult, error) {
	res := BenchResult{Model: model, Runs: runs}
	zero := 0.0
	var ttfts []time.Duration
	var speeds []float64
	for i := range runs {
		req := protocol.Request{Kind: protocol.KindChat, Model: model,
			Messages: []protocol.ChatMessage{{Role: "user", Content: benchPrompts[i%len(benchPrompts)]}},
			Options:  protocol.Options{MaxTokens: maxTokens, Temperature: &zero}}
		start := time.Now()
		var first time.Time
		tokens := 0
		_, err := b.Generate(ctx, req, func(d backend.Delta) error {
			if first.IsZero() && d.Text != "" {
				first = time.Now()
			}
			tokens += d.Tokens
			return nil
		})
		if err != nil {
			return res, fmt.Errorf("benchmark %s: %w", model, err)
		}
		end := time.Now()
		if first.IsZero() {
			first = end
		}
		ttfts = append(ttfts, first.Sub(start))
		if total := end.Sub(start); tokens > 0 && total > 0 {
			speeds = append(speeds, float64(tokens)/total.Seconds())
		}
		res.Tokens += tokens
		if progress != nil {
			progress(i + 1)
		}
	}
	slices.Sort(ttfts)
	slices.Sort(speeds)
	if len(ttfts) > 0 {
		res.FirstToken = ttfts[len(ttfts)/2]
	}
	if len(speeds) > 0 {
		res.TokensPerSecond = speeds[len(speeds)/2]
	}
	return res, nil
}

// Market is what the network shows for one model on a gateway's
// /v1/models: consumer prices (the gateway's fee included) and speed.
type Market struct {
	Model            string       `json:"model"`
	Providers        int          `json:"providers"`
	MinPrompt        money.Amount `json:"min_prompt"`
	MedianPrompt     money.Amount `json:"median_prompt"`
	MinCompletion    money.Amount `json:"min_completion"`
	MedianCompletion money.Amount `json:"median_completion"`
	TokensPerSecond  float64      `json:"tokens_per_second"`
}

// FetchMarket reads the gateway's model list; models no provider serves
// are left out.
func FetchMarket(ctx context.Context, gatewayURL string, hc *http.Client) (map[string]Market, error) {
	if hc == nil {
		hc = &http.Client{Timeout: 15 * time.Second}
	}
	models, err := client.New(gatewayURL, "", client.WithHTTPClient(hc), client.WithMaxBody(8<<20)).Models(ctx)
	if err != nil {
		return nil, fmt.Errorf("gateway models: %w", err)
	}
	out := map[string]Market{}
	for _, d := range models {
		if d.Providers == 0 || d.PricePerMTok == nil {
			continue
		}
		m := Market{Model: d.ID, Providers: d.Providers, TokensPerSecond: d.TokensPerSecond}
		var errs []error
		parse := func(s string) money.Amount {
			a, err := money.Parse(s)
			errs = append(errs, err)
			return a
		}
		m.MinPrompt, m.MedianPrompt = parse(d.PricePerMTok.Prompt.Min), parse(d.PricePerMTok.Prompt.Median)
		m.MinCompletion, m.MedianCompletion = parse(d.PricePerMTok.Completion.Min), parse(d.PricePerMTok.Completion.Median)
		if err := errors.Join(errs...); err != nil {
			return nil, fmt.Errorf("gateway models: %s: %w", d.ID, err)
		}
		out[d.ID] = m
	}
	return out, nil
}

// MaxPlausibleTokensPerSecond bounds the delivered rate a network median
// can have. An answer's tokens come one forward pass of the model at a
// time, and the fastest single-stream serving published (dedicated
// inference chips) delivers about 2,000–3,000 tokens/s; a median above
// 10,000 is no provider's speed but a measurement error (an answer that
// arrived in one burst timed as taking no time), and a price scaled by it
// would be far below what the network pays.
const MaxPlausibleTokensPerSecond = 10_000

// Suggestion is a price to start with and why.
type Suggestion struct {
	Prompt, Completion money.Amount
	Why                string
}

// SuggestPrice proposes price floors for a model from the market and the
// machine's measured speed: the network's median consumer price, scaled
// down by how much slower this machine is than the network's median (a
// slower provider wins requests by being cheaper), never above the median.
// A median speed above MaxPlausibleTokensPerSecond is ignored (the median
// price stands). Without a market the defaults stand.
func SuggestPrice(m *Market, bench BenchResult, defPrompt, defCompletion money.Amount) Suggestion {
	if m == nil || m.Providers == 0 {
		return Suggestion{Prompt: defPrompt, Completion: defCompletion, Why: "no provider serves this model yet: the defaults"}
	}
	ratio := 1.0
	why := fmt.Sprintf("the network's median price (%d providers)", m.Providers)
	switch {
	case m.TokensPerSecond > MaxPlausibleTokensPerSecond:
		why = fmt.Sprintf("the network's median price (%d providers); its median speed, %.0f tokens/s, is above what any provider delivers (%d): ignored",
			m.Providers, m.TokensPerSecond, MaxPlausibleTokensPerSecond)
	case m.TokensPerSecond > 0 && bench.TokensPerSecond > 0 && bench.TokensPerSecond < m.TokensPerSecond:
		ratio = bench.TokensPerSecond / m.TokensPerSecond
		why = fmt.Sprintf("the network's median price (%d providers) × %.2f: this machine makes %.1f tokens/s, the network's median %.1f",
			m.Providers, ratio, bench.TokensPerSecond, m.TokensPerSecond)
	}
	scale := func(a money.Amount) money.Amount {
		s, _ := a.MulDiv(uint64(ratio*10_000), 10_000) // ratio ≤ 1: fits
		return max(s, 1)
	}
	return Suggestion{Prompt: scale(m.MedianPrompt), Completion: scale(m.MedianCompletion), Why: why}
}
