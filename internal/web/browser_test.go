package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/gateway"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/link"
	"github.com/idlegrid/idlegrid/internal/node"
	"github.com/idlegrid/idlegrid/internal/store"
	"github.com/idlegrid/idlegrid/internal/tstest"
)

const (
	browserAPIKey = "ig-webtest-0123456789abcdefghijklmnop"
	browserModel  = "webtest-model:1b"
)

// findChromium returns a Chromium or Chrome binary on PATH, or "".
func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// startNetwork runs `up` in process on loopback: a single-validator ledger
// with short epochs, the gateway settling quickly, and a provider serving
// the simulator.
func startNetwork(t *testing.T) *node.Network {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := sim.DefaultConfig()
	cfg.Models[0].Name, cfg.Models[0].FirstToken, cfg.Models[0].TokensPerSecond = browserModel, 0, 0
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.NewServer(s))
	t.Cleanup(srv.Close)
	b, err := node.OpenBackend(ctx, node.BackendOllama, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	return startUp(t, ctx, node.UpConfig{
		Addr: "127.0.0.1:0", DataDir: t.TempDir(), DevAPIKey: browserAPIKey, Slots: 4,
		Link: link.Options{Heartbeat: 500 * time.Millisecond}, BackendOverride: b,
		Gateway:     gateway.Config{SettleInterval: 50 * time.Millisecond},
		EditGenesis: func(g *ledger.Genesis) { g.Params.EpochBlocks = 2 },
	})
}

// startUp starts the embedded network for a browser test and shuts it down
// when the test ends.
func startUp(t *testing.T, ctx context.Context, cfg node.UpConfig) *node.Network {
	t.Helper()
	n, err := node.StartUp(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return n
}

// serveAndSettle sends one chat completion and waits until its receipt is
// settled; it returns the stored receipt.
func serveAndSettle(t *testing.T, n *node.Network) store.StoredReceipt {
	t.Helper()
	body := `{"model":"` + browserModel + `","messages":[{"role":"user","content":"Hello, dashboard"}],"max_tokens":16}`
	req, err := http.NewRequest(http.MethodPost, n.Gateway.URL()+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+browserAPIKey)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("chat completion: %d %s", res.StatusCode, out)
	}
	var answer struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(out, &answer); err != nil {
		t.Fatal(err)
	}
	var got store.StoredReceipt
	tstest.WaitFor(t, 30*time.Second, "the receipt to settle", func() bool {
		rs, err := n.Gateway.Store.RecentReceipts(context.Background(), 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.Receipt.RequestID == answer.ID && r.SettleHeight > 0 {
				got = r
				return true
			}
		}
		return false
	})
	return got
}

// TestPagesInBrowser loads every page of a live network in headless
// Chromium, checks that each shows the network's data, and saves a
// screenshot of each (under the test's temporary directory, or under
// $IDLEGRID_SCREENSHOTS when set, to keep them as artifacts).
func TestPagesInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a network and a browser")
	}
	browser := findChromium()
	if browser == "" {
		t.Skip("no Chromium on PATH (chromium, chromium-browser, google-chrome): install it (apt-get install chromium) to run the screenshot tests")
	}
	n := startNetwork(t)
	first := serveAndSettle(t, n)
	second := serveAndSettle(t, n) // more blocks, so the first epoch (2 blocks) ends
	l := chainrpc.StateReader{Client: n.Validator.Node.Client()}
	var epoch1 ledger.EpochRecord
	tstest.WaitFor(t, 30*time.Second, "the first epoch to end", func() bool {
		rec, err := l.Epoch(context.Background(), 1) // epochs count from 1
		epoch1 = rec
		return err == nil
	})

	shots := os.Getenv("IDLEGRID_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1280, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	ctx, cancel := context.WithTimeout(bctx, 2*time.Minute)
	defer cancel()

	base := n.Gateway.URL()
	prov := n.Provider.Key
	height := strconv.FormatInt(first.SettleHeight, 10)
	for _, tc := range []struct {
		name  string
		path  string
		form  bool // submit the account form with the dev API key
		wants []string
	}{
		{"overview", "/", false, []string{prov.String(), browserModel, first.Receipt.RequestID, second.Receipt.RequestID, "settled at " + height}},
		{"explorer", "/ui/explorer/", false, []string{"Latest blocks", height}},
		{"block", "/ui/explorer/block/" + height, false, []string{"settle-batch", first.Receipt.RequestID}},
		{"receipt", "/ui/explorer/receipt/" + first.Receipt.RequestID, false, []string{first.Receipt.Hash().String(), browserModel, string(n.Account)}},
		{"epochs", "/ui/explorer/epochs", false, []string{"Running epoch", "Minted per epoch", epoch1.Root.String()[:8]}},
		{"epoch", "/ui/explorer/epoch/1", false, []string{epoch1.Root.String(), epoch1.Minted.String()}},
		{"provider", "/ui/explorer/provider/" + string(prov.Address()), false, []string{prov.String(), "1000.000000", "Reputation", browserModel}},
		{"account", "/ui/account", true, []string{string(n.Account), "Settled spend", first.Receipt.RequestID}},
	} {
		steps := []chromedp.Action[chromedp.Void]{chromedp.Navigate(base + tc.path), chromedp.WaitVisible(chromedp.CSS("main"))}
		if tc.form {
			steps = append(steps,
				chromedp.SendKeys(chromedp.CSS(`input[name="key"]`), browserAPIKey),
				chromedp.Click(chromedp.CSS("form button")),
				chromedp.WaitVisible(chromedp.CSS("main dl")))
		}
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("%s: screenshot: %v", tc.name, err)
		}
		for _, w := range tc.wants {
			if !strings.Contains(text, w) {
				t.Errorf("%s page: missing %q in\n%s", tc.name, w, text)
			}
		}
		if tc.form && strings.Contains(text, browserAPIKey) {
			t.Errorf("account page shows the API key")
		}
		if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) || len(png) < 10_000 {
			t.Errorf("%s: screenshot is not a plausible PNG (%d bytes)", tc.name, len(png))
		}
		file := filepath.Join(shots, tc.name+".png")
		if err := os.WriteFile(file, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %s (%d bytes)", tc.name, file, len(png))
	}
}
