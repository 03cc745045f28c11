package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/backend/ollama"
	"github.com/idlegrid/idlegrid/internal/bench"
	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/gateway"
	"github.com/idlegrid/idlegrid/internal/keys"
)

// cheaterMarker marks the test's consumer requests apart from canaries.
const cheaterMarker = "cheater process traffic"

// TestCheatingProviderProcess runs `idlegrid up --backend ollama` on the
// real test Ollama and, once its own provider has passed probation, an
// unmodified `idlegrid provide` (registered and staked with `idlegrid
// provide init`) whose Ollama is a proxy that runs tiny-q4sim for every
// request for tiny while listing tiny and its /api/show: the agent claims
// tiny and tiny's identity. It must be admitted, get at most the
// probation share of consumer traffic before it is jailed, be jailed, and
// get no consumer request after that.
func TestCheatingProviderProcess(t *testing.T) {
	ollamaURL := os.Getenv("OLLAMA_URL")
	if ollamaURL == "" {
		t.Skip("OLLAMA_URL not set: start a test Ollama (tiny, tiny-q4sim) with shared/scripts/ollama-test-server.sh")
	}
	bin := buildBinary(t) // skipped with -short: minutes of real traffic
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	ms, err := ollama.New(ollamaURL, nil).Models(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var tiny backend.Model
	for _, name := range []string{"tiny-q4sim:latest", "tiny:latest"} {
		i := slices.IndexFunc(ms, func(m backend.Model) bool { return m.Name == name })
		if i < 0 {
			t.Skipf("the test Ollama has no %s", name)
		}
		tiny = ms[i]
	}
	upstream, _ := url.Parse(ollamaURL)
	swap := &bench.SwapProxy{Upstream: upstream, Claimed: "tiny", Actual: "tiny-q4sim", Marker: cheaterMarker}
	proxy := httptest.NewServer(swap)
	t.Cleanup(proxy.Close)

	upDir, cheaterDir := t.TempDir(), t.TempDir()
	const apiKey = "ig-cheater-process-0123456789"
	up := start(t, bin, []string{"IDLEGRID_DEV_API_KEY=" + apiKey},
		"up", "--addr", "127.0.0.1:0", "--data-dir", upDir, "--backend", "ollama", "--ollama-url", ollamaURL, "--chain-rpc-addr", "127.0.0.1:0")
	base := up.await(t, `OpenAI API base URL:\s+(http://\S+)/v1`)
	rpc := up.await(t, `Ledger RPC:\s+(http://\S+)`)
	c, err := chainrpc.NewHTTPClient(rpc)
	if err != nil {
		t.Fatal(err)
	}
	led := chainrpc.StateReader{Client: c}
	honest, _, err := keys.LoadOrCreate(filepath.Join(upDir, "provider.key"))
	if err != nil {
		t.Fatal(err)
	}

	var answers atomic.Int64
	tctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	for w := range 2 {
		wg.Go(func() {
			for k := 0; tctx.Err() == nil; k++ {
				b, _ := json.Marshal(map[string]any{"model": "tiny", "max_tokens": 16, "temperature": 0,
					"prompt": fmt.Sprintf("%d-%d %s: the sea", w, k, cheaterMarker)})
				req, _ := http.NewRequestWithContext(tctx, http.MethodPost, base+"/v1/completions", bytes.NewReader(b))
				req.Header.Set("Authorization", "Bearer "+apiKey)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					continue
				}
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					answers.Add(1)
				}
			}
		})
	}
	waitUntil := func(what string, d time.Duration, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(d); !cond(); time.Sleep(250 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("not within %s: %s", d, what)
			}
		}
	}
	// The honest provider first passes its probation for tiny under the
	// traffic.
	waitUntil("the up provider's probation", 3*time.Minute, func() bool {
		n, err := led.PassedWith(ctx, honest.Public().Address(), tiny.Digest)
		return err == nil && n >= gateway.DefaultProbationCases
	})

	// The cheater's key, funded from the dev account, then `provide init`
	// registers and stakes it.
	cheaterKey := filepath.Join(cheaterDir, "provider.key")
	cheater := writeKey(t, cheaterKey)
	if out, err := exec.Command(bin, "ledger", "--chain-rpc", rpc, "--key-file", filepath.Join(upDir, "dev-account.key"), "send", string(cheater), "2000").CombinedOutput(); err != nil {
		t.Fatalf("fund the cheater: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "provide", "init", "--gateway", base, "--ollama-url", proxy.URL, "--data-dir", cheaterDir, "--chain-rpc", rpc,
		"--runs", "1", "--max-tokens", "8").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "staked") {
		t.Fatalf("provide init: %v\n%s", err, out)
	}
	// It sees tiny only, behind the proxy, with tiny's identity and
	// Ollama's own digest beside it.
	if ids := fmt.Sprintf("tiny:latest (identity %s, Ollama digest %s", tiny.Digest, tiny.BackendDigest); !strings.Contains(string(out), ids) || strings.Contains(string(out), "tiny-q4sim") {
		t.Fatalf("provide init should list %s) and nothing else:\n%s", ids, out)
	}
	pv := start(t, bin, nil, "provide", "--gateway", base, "--ollama-url", proxy.URL, "--data-dir", cheaterDir, "--no-control")
	pv.await(t, `serving Ollama`)

	// Admitted: the gateway lists it beside the honest provider.
	waitUntil("the cheater's admission", 60*time.Second, func() bool { return tinyProviders(t, base, apiKey) == 2 })
	joined := answers.Load()
	var jailedAt int64
	var servedBefore int
	waitUntil("the cheater's conviction", 10*time.Minute, func() bool {
		p, err := led.Provider(ctx, cheater)
		if err == nil && p.Jailed {
			jailedAt, servedBefore = answers.Load(), swap.Counts().Marked
			return true
		}
		return false
	})
	total := jailedAt - joined + 1
	t.Logf("cheater: %d of about %d consumer requests before its conviction", servedBefore, total)
	// The cap: ProbationShare of the model's requests, plus the one its
	// credit allows up front and the requests in flight at the block
	// that jailed it (two consumers).
	if limit := int(gateway.DefaultProbationShare*float64(total)) + 3; servedBefore > limit {
		t.Errorf("cheater served %d of %d requests before its conviction, more than the probation cap allows (%d)", servedBefore, total, limit)
	}
	// After the block that jailed it the gateway drops it; from then on,
	// 20 more consumer answers and none of them from the cheater.
	waitUntil("the gateway dropping the cheater", 30*time.Second, func() bool { return tinyProviders(t, base, apiKey) == 1 })
	dropped := swap.Counts().Marked
	t.Logf("cheater: %d consumer requests between its conviction and the gateway dropping it", dropped-servedBefore)
	from := answers.Load()
	waitUntil("20 answers after the conviction", 5*time.Minute, func() bool { return answers.Load() >= from+20 })
	if after := swap.Counts().Marked; after > dropped {
		t.Errorf("the cheater got %d consumer requests after the gateway dropped it", after-dropped)
	}
	if p, err := led.Provider(ctx, honest.Public().Address()); err != nil || p.Jailed || p.Failures > 0 {
		t.Errorf("honest provider: %+v %v", p, err)
	}
	stop()
	wg.Wait()
	up.stop(t, os.Interrupt)
}

// tinyProviders is how many providers /v1/models says serve tiny.
func tinyProviders(t *testing.T, base, apiKey string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/v1/models", nil)
	req.Header.Set("Authorization", "Bearer "+apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var out struct {
		Data []struct {
			ID        string `json:"id"`
			Providers int    `json:"providers"`
		} `json:"data"`
	}
	if json.NewDecoder(resp.Body).Decode(&out) != nil {
		return -1
	}
	n := 0
	for _, m := range out.Data {
		if strings.TrimSuffix(m.ID, ":latest") == "tiny" {
			n += m.Providers
		}
	}
	return n
}
