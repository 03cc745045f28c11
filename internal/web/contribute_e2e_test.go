package web_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/ssestream"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/backend/ollama"
	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/gateway"
	"github.com/idlegrid/idlegrid/internal/hub"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/link"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/node"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/receipt"
	"github.com/idlegrid/idlegrid/internal/tstest"
	"github.com/idlegrid/idlegrid/internal/web"
)

const (
	pageFast = "browser-fast:1b"
	pageSlow = "browser-slow:1b" // 20 tokens/s, never stops by itself: for cancelling mid-answer
)

// TestContributePageServesThroughGateway is the browser provider end to
// end: a network with no provider agent, the simulator as the visitor's
// Ollama (it answers with CORS headers, as Ollama does with OLLAMA_ORIGINS),
// and /contribute in headless Chromium with a key registered on the
// ledger. An OpenAI client's requests are served by the tab; the answers
// are the simulator's, the receipts name the browser's key, verify and
// settle; cancel reaches the simulator; pause makes the gateway answer 503.
func TestContributePageServesThroughGateway(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a network and a browser")
	}
	bctx := newChromium(t, 4*time.Minute)

	cfg := sim.DefaultConfig()
	fast := cfg.Models[0]
	fast.Name, fast.FirstToken, fast.TokensPerSecond = pageFast, 0, 0
	slow := fast
	slow.Name, slow.Weights, slow.TokensPerSecond, slow.IgnoreEOS = pageSlow, 2, 20, true
	cfg.Models = []sim.ModelConfig{fast, slow}
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	simSrv := sim.NewServer(s)
	ollamaSrv := httptest.NewServer(simSrv)
	t.Cleanup(ollamaSrv.Close)

	key := mustKey(t)
	keyPath := filepath.Join(t.TempDir(), "provider.key")
	if err := keys.Save(keyPath, key); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n := startUp(t, ctx, node.UpConfig{
		Addr: "127.0.0.1:0", DataDir: t.TempDir(), DevAPIKey: browserAPIKey, NoProvider: true,
		Link:    link.Options{Heartbeat: 500 * time.Millisecond},
		Gateway: gateway.Config{SettleInterval: 50 * time.Millisecond},
		EditGenesis: func(g *ledger.Genesis) {
			g.Accounts = append(g.Accounts, ledger.GenesisAccount{Address: key.Public().Address(), PubKey: key.Public(),
				Stake: 1000 * money.Unit, Roles: []string{"provider"}, Info: "browser provider"})
		},
	})
	base := n.Gateway.URL()
	if len(n.Gateway.Hub.Snapshot()) != 0 {
		t.Fatal("a provider is connected before the page")
	}

	// The page: the visitor's Ollama is the simulator; the key is imported
	// from the file registered at genesis; then start.
	page := base + web.ContributePath + "?ollama=" + url.QueryEscape(ollamaSrv.URL)
	if err := chromedp.Do(bctx,
		chromedp.Navigate(page),
		chromedp.WaitVisible(chromedp.CSS(`body[data-ready="1"]`)),
		chromedp.SetUploadFiles(chromedp.CSS("#key-file"), []string{keyPath}),
	); err != nil {
		t.Fatal(err)
	}
	waitText(t, bctx, "#address", string(key.Public().Address()))
	for _, m := range []string{pageFast, pageSlow} {
		waitText(t, bctx, "#models", m)
	}
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS("#start"))); err != nil {
		t.Fatal(err)
	}
	waitText(t, bctx, "#state", "connected")
	info := waitProvider(t, n.Gateway.Hub, key.Public(), func(hub.Info) bool { return true })
	if info.Capabilities.Slots != 1 || len(info.Capabilities.Models) != 2 {
		t.Errorf("capabilities: %+v", info.Capabilities)
	}

	c := openai.NewClient(option.WithBaseURL(base+"/v1/"), option.WithAPIKey(browserAPIKey), option.WithMaxRetries(0))
	direct := ollama.New(ollamaSrv.URL, nil)
	var served []receipt.Signed

	t.Run("non-streaming", func(t *testing.T) {
		prompt := "Hello from a browser tab"
		want := simAnswer(t, direct, pageFast, prompt, 24)
		resp, err := c.Chat.Completions.New(bctx, openai.ChatCompletionNewParams{Model: pageFast, MaxTokens: openai.Int(24),
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)}})
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Choices[0].Message.Content; got != want || got == "" {
			t.Errorf("answer %q, simulator says %q", got, want)
		}
		served = append(served, checkBrowserReceipt(t, n, base, resp.ID, key.Public()))
	})

	t.Run("streaming", func(t *testing.T) {
		prompt := "Stream me some tokens, ünïcödé 😀 included"
		want := simAnswer(t, direct, pageFast, prompt, 40)
		stream := c.Chat.Completions.NewStreaming(bctx, openai.ChatCompletionNewParams{Model: pageFast, MaxTokens: openai.Int(40),
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)}})
		var acc openai.ChatCompletionAccumulator
		chunks := 0
		for stream.Next() {
			acc.AddChunk(stream.Current())
			chunks++
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if got := acc.Choices[0].Message.Content; got != want || chunks < 3 {
			t.Errorf("streamed %q in %d chunks, simulator says %q", got, chunks, want)
		}
		served = append(served, checkBrowserReceipt(t, n, base, acc.ID, key.Public()))
	})
	waitText(t, bctx, "#served", "2")
	var earned money.Amount
	for _, r := range served {
		earned += r.Receipt.Amount
	}
	waitText(t, bctx, "#earned", earned.String())
	// It also shows what the ledger holds for it: the provider's share of
	// its settled receipts, in escrow (read again each time, since escrow
	// is released to the balance after its period).
	l := chainrpc.StateReader{Client: n.Validator.Node.Client()}
	tstest.WaitFor(t, 20*time.Second, "the page to show the ledger's escrow", func() bool {
		a, err := l.Account(bctx, key.Public().Address())
		if err != nil {
			t.Fatal(err)
		}
		var escrow money.Amount
		for _, e := range a.Escrow {
			escrow += e.Amount
		}
		if escrow == 0 {
			t.Fatalf("nothing in escrow after two settled receipts: %+v", a)
		}
		shown, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.querySelector("#escrow").textContent`))
		return err == nil && shown == escrow.String()
	})

	t.Run("cancel", func(t *testing.T) {
		before := simSrv.Stats().Cancelled
		sctx, stop := context.WithCancel(bctx)
		prompt := "a long answer, please"
		stream := c.Chat.Completions.NewStreaming(sctx, openai.ChatCompletionNewParams{Model: pageSlow, MaxTokens: openai.Int(400),
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)}})
		id := readSome(t, stream, 4)
		stop() // the consumer goes away mid-answer
		stream.Close()
		tstest.WaitFor(t, 15*time.Second, "the simulator to see the generation cancelled", func() bool { return simSrv.Stats().Cancelled > before })
		waitText(t, bctx, "#jobs", "cancelled")
		waitText(t, bctx, "#failed", "1")
		// The tokens it did deliver are billed by the tab's last
		// checkpoint that reached the consumer.
		checkPartialReceipt(t, n, base, id, key.Public(), prompt, 3)
	})

	t.Run("pause", func(t *testing.T) {
		if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS("#pause"))); err != nil {
			t.Fatal(err)
		}
		waitProvider(t, n.Gateway.Hub, key.Public(), func(i hub.Info) bool { return i.Paused })
		_, err := c.Chat.Completions.New(bctx, openai.ChatCompletionNewParams{Model: pageFast, MaxTokens: openai.Int(8),
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("anyone there?")}})
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusServiceUnavailable || !strings.Contains(apiErr.Message, "paused") {
			t.Fatalf("request to a paused browser provider: %v", err)
		}
		if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS("#pause"))); err != nil {
			t.Fatal(err)
		}
		waitProvider(t, n.Gateway.Hub, key.Public(), func(i hub.Info) bool { return !i.Paused })
		resp, err := c.Chat.Completions.New(bctx, openai.ChatCompletionNewParams{Model: pageFast, MaxTokens: openai.Int(8),
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("anyone there?")}})
		if err != nil {
			t.Fatalf("after resume: %v", err)
		}
		checkBrowserReceipt(t, n, base, resp.ID, key.Public())
		waitText(t, bctx, "#served", "3")
	})

	t.Run("pause while hidden", func(t *testing.T) {
		// The browser's visibilitychange event, with document.hidden as a
		// hidden tab reports it.
		setHidden := func(hidden bool) {
			js := `Object.defineProperty(document, "hidden", {configurable: true, get: () => ` + strconv.FormatBool(hidden) + `});
				document.dispatchEvent(new Event("visibilitychange"))`
			if _, err := chromedp.Run(bctx, chromedp.Evaluate[chromedp.Void](js)); err != nil {
				t.Fatal(err)
			}
		}
		setHidden(true)
		time.Sleep(200 * time.Millisecond)
		if i := waitProvider(t, n.Gateway.Hub, key.Public(), func(hub.Info) bool { return true }); i.Paused {
			t.Fatal("a hidden tab paused without the owner asking for it")
		}
		setHidden(false)
		if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS("#hide-pause"))); err != nil {
			t.Fatal(err)
		}
		setHidden(true)
		waitProvider(t, n.Gateway.Hub, key.Public(), func(i hub.Info) bool { return i.Paused })
		setHidden(false)
		waitProvider(t, n.Gateway.Hub, key.Public(), func(i hub.Info) bool { return !i.Paused })
	})

	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	shots := os.Getenv("IDLEGRID_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(shots, "contribute.png")
	if err := os.WriteFile(file, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("contribute: %s (%d bytes)", file, len(png))

	t.Run("tab closed mid-answer", func(t *testing.T) {
		// A long prompt: the consumer is billed for it although the
		// answer never finished (protocol version 3).
		prompt := "a long answer, and then the tab closes. " + strings.Repeat("Ünïcödé context 😀 ", 200)
		stream := c.Chat.Completions.NewStreaming(bctx, openai.ChatCompletionNewParams{Model: pageSlow, MaxTokens: openai.Int(400),
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)}})
		id := readSome(t, stream, 6)
		// The visitor closes the tab: its connection to the gateway ends
		// with the job, without done.
		if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil {
			t.Fatal(err)
		}
		for stream.Next() {
		}
		if stream.Err() == nil {
			t.Error("the stream ended without an error after its only provider left")
		}
		checkPartialReceipt(t, n, base, id, key.Public(), prompt, 5)
	})
}

// readSome reads n chunks of a stream (the first is the role) and returns
// the request id.
func readSome(t *testing.T, stream *ssestream.Stream[openai.ChatCompletionChunk], n int) string {
	t.Helper()
	id := ""
	for i := 0; i < n && stream.Next(); i++ {
		id = stream.Current().ID
	}
	if id == "" {
		t.Fatalf("no chunk: %v", stream.Err())
	}
	return id
}

// checkPartialReceipt checks the receipt of a job that ended without done:
// signed by the browser's key through a checkpoint, billing the prompt
// (the page's estimate of the user message prompt, as
// protocol.PromptEstimate's) and at least minTokens tokens, and settled.
func checkPartialReceipt(t *testing.T, n *node.Network, base, id string, provider keys.PublicKey, prompt string, minTokens uint64) {
	t.Helper()
	tstest.WaitFor(t, 15*time.Second, "the partial receipt of "+id, func() bool {
		_, err := n.Gateway.Store.Receipt(context.Background(), id)
		return err == nil
	})
	r := checkBrowserReceipt(t, n, base, id, provider)
	want := protocol.PromptEstimate(&protocol.Request{Messages: []protocol.ChatMessage{{Role: "user", Content: prompt}}})
	if r.Receipt.PromptTokens != want || r.Receipt.CompletionTokens < minTokens {
		t.Errorf("partial receipt %s: %d prompt, %d completion tokens; want %d and at least %d", id, r.Receipt.PromptTokens, r.Receipt.CompletionTokens, want, minTokens)
	}
}

// simAnswer is what the simulator answers the chat prompt, asked directly.
func simAnswer(t *testing.T, b backend.Backend, model, prompt string, maxTokens int) string {
	t.Helper()
	var sb strings.Builder
	_, err := b.Generate(context.Background(), protocol.Request{Kind: protocol.KindChat, Model: model,
		Messages: []protocol.ChatMessage{{Role: "user", Content: prompt}}, Options: protocol.Options{MaxTokens: maxTokens}},
		func(d backend.Delta) error { sb.WriteString(d.Text); return nil })
	if err != nil {
		t.Fatal(err)
	}
	return sb.String()
}

// checkBrowserReceipt fetches the consumer's receipt, verifies both
// signatures, checks that it names the browser's key and waits for the
// ledger to settle it (the key is registered and staked).
func checkBrowserReceipt(t *testing.T, n *node.Network, base, id string, provider keys.PublicKey) receipt.Signed {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+"/v1/receipts/"+url.PathEscape(id), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+browserAPIKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("receipt %s: %d %s", id, res.StatusCode, body)
	}
	s, err := receipt.ParseSigned(body)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(); err != nil {
		t.Errorf("receipt %s: %v", id, err)
	}
	if s.Receipt.Provider != provider || s.Receipt.Gateway != n.Gateway.Key.Public() || s.Receipt.Consumer != n.Account || s.Receipt.Amount == 0 {
		t.Errorf("receipt %s names provider %s, gateway %s, consumer %s, amount %d", id, s.Receipt.Provider, s.Receipt.Gateway, s.Receipt.Consumer, s.Receipt.Amount)
	}
	tstest.WaitFor(t, 30*time.Second, "the ledger to settle "+id, func() bool {
		rs, err := n.Gateway.Store.RecentReceipts(context.Background(), 20)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.Receipt.RequestID == id {
				if r.Rejected {
					t.Fatalf("the ledger rejected %s: %s", id, r.RejectedReason)
				}
				return r.SettleHeight > 0
			}
		}
		return false
	})
	return s
}

func waitProvider(t *testing.T, h *hub.Hub, key keys.PublicKey, cond func(hub.Info) bool) hub.Info {
	t.Helper()
	var got hub.Info
	tstest.WaitFor(t, 20*time.Second, "the browser provider's state at the gateway", func() bool {
		for _, i := range h.Snapshot() {
			if i.Key == key && cond(i) {
				got = i
				return true
			}
		}
		return false
	})
	return got
}

// waitText waits until the element's text contains want.
func waitText(t *testing.T, ctx context.Context, sel, want string) {
	t.Helper()
	js := `(() => { const e = document.querySelector(` + jsString(sel) + `); return e !== null && e.textContent.includes(` + jsString(want) + `); })()`
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](js, chromedp.WithPollingTimeout(20*time.Second), chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("main").innerText`))
		t.Fatalf("waiting for %q in %s: %v\npage:\n%s", want, sel, err, text)
	}
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestContributeExplainsOllamaOrigins points the page at a server that
// answers like Ollama but without CORS headers — what Ollama does for an
// origin missing from OLLAMA_ORIGINS — and checks that the page explains
// the fix with this gateway's origin filled in.
func TestContributeExplainsOllamaOrigins(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	ctx := newChromium(t, 60*time.Second)
	gw := bareUI(t)
	strict := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"models":[{"name":"m:1b","digest":"sha256:aa"}]}`)
	}))
	t.Cleanup(strict.Close)
	if err := chromedp.Do(ctx, chromedp.Navigate(gw.URL+web.ContributePath+"?ollama="+url.QueryEscape(strict.URL)),
		chromedp.WaitVisible(chromedp.CSS(`body[data-ready="1"]`))); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "#cors-command", "OLLAMA_ORIGINS="+gw.URL+" ollama serve")
	visible, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`!document.getElementById("cors-help").hidden`))
	if err != nil || !visible {
		t.Errorf("the OLLAMA_ORIGINS explanation is hidden (%v)", err)
	}
	disabled, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById("start").disabled`))
	if err != nil || !disabled {
		t.Errorf("Start is enabled without models (%v)", err)
	}
}
