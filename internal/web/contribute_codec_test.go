package web_test

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/idlegrid/idlegrid/internal/hub"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/receipt"
	"github.com/idlegrid/idlegrid/internal/store"
	"github.com/idlegrid/idlegrid/internal/web"
)

// noReceipts is a gateway store with no receipts: the cross-check needs
// only the page and its modules.
type noReceipts struct{}

func (noReceipts) RecentReceipts(context.Context, int) ([]store.StoredReceipt, error) {
	return nil, nil
}
func (noReceipts) TokensPerMinute(context.Context, time.Time) ([]store.MinuteTokens, error) {
	return nil, nil
}
func (noReceipts) Receipt(context.Context, string) (receipt.Signed, error) {
	return receipt.Signed{}, store.ErrNotFound
}

// newChromium starts headless Chromium for the test, or skips it when
// there is none.
func newChromium(t *testing.T, timeout time.Duration) context.Context {
	t.Helper()
	browser := findChromium()
	if browser == "" {
		t.Skip("no Chromium on PATH (chromium, chromium-browser, google-chrome): install it (apt-get install chromium) to run the browser provider tests")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1280, 1000))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(cancelBrowser)
	ctx, cancel := context.WithTimeout(bctx, timeout)
	t.Cleanup(cancel)
	return ctx
}

// crossCheckJS runs the page's own modules on the inputs (a JSON object
// named input) and returns what the Go side compares.
const crossCheckJS = `(async (input) => {
  const codec = await import("/ui/static/contribute/codec.js");
  const ks = await import("/ui/static/contribute/keystore.js");
  const prov = await import("/ui/static/contribute/provider.js");
  const out = {};
  const job = codec.parseLine(input.job_line).job;
  out.price_in = job.terms.price_per_mtok_in.toString();
  const fixed = codec.fromHex(input.provider_key, 32);
  const responseHash = await codec.sha256(codec.concat(input.deltas.map((d) => new TextEncoder().encode(d))));
  const r = codec.receiptFromTerms(job.terms, fixed, input.usage, responseHash, BigInt(input.end));
  out.receipt = codec.toHex(codec.receiptBytes(r));
  const nonce = codec.fromBase64(input.nonce);
  const auth = codec.authBytes(nonce, codec.fromHex(input.gateway_key, 32), input.chain_id);
  out.auth = codec.toHex(auth);

  // A key made by WebCrypto signs the handshake and a receipt naming it.
  const id = await ks.generate();
  out.generated = { pub: id.publicHex, address: id.address };
  out.generated.auth_sig = codec.toHex(await ks.sign(id, auth));
  const mine = codec.receiptFromTerms(job.terms, id.publicKey, input.usage, responseHash, BigInt(input.end));
  out.generated.receipt = codec.toHex(codec.receiptBytes(mine));
  out.generated.receipt_sig = codec.toHex(await ks.sign(id, codec.providerSignedBytes(mine)));
  out.generated.key_file = await ks.exportKeyFile(id);

  // A key file written by Go, imported, signs exactly as Go does.
  const imported = await ks.importKeyFile(input.key_file);
  out.imported = { pub: imported.publicHex, address: imported.address, auth_sig: codec.toHex(await ks.sign(imported, auth)) };
  try {
    await ks.importKeyFile(input.key_file.replace(/"public_key": "../, '"public_key": "00'));
    out.mismatch = "accepted";
  } catch (err) {
    out.mismatch = err.message;
  }

  out.prompt_estimates = input.prompts.map((r) => codec.promptEstimate(r).toString());
  out.amounts = input.amounts.map((a) => {
    try {
      return codec.amount(BigInt(a[0]), BigInt(a[1]), BigInt(a[2]), BigInt(a[3])).toString();
    } catch (err) {
      return "overflow";
    }
  });

  const h = new codec.Utf8Holder();
  out.utf8 = ["a", "\ud83d", "\ude00b", "\udc00x", "\ud83d"].map((d) => h.push(d)).join("") + h.flush();

  const p = new prov.Provider({ url: "ws://unused", identity: id, ollama: "http://unused", slots: 2,
    models: [{ name: job.terms.model, digest: job.terms.model_digest, quantization: "Q4_K_M", price_in: job.terms.price_per_mtok_in, price_out: 1n }] });
  out.auth_message = codec.stringify({ type: "auth", auth: { provider_key: id.publicHex, signature: out.generated.auth_sig, protocol_version: 1, capabilities: p.capabilities() } });

  const hello = { chain_id: job.terms.chain_id, gateway_key: job.terms.gateway };
  const models = [{ name: job.terms.model, digest: job.terms.model_digest, price_in: job.terms.price_per_mtok_in, price_out: job.terms.price_per_mtok_out }];
  const variant = (edit) => { const j = structuredClone(job); edit(j); return j; };
  const refusal = (hello, models, j) => { const r = prov.checkTerms(hello, models, j); return r ? r[0] : "ok"; };
  out.terms = {
    ok: refusal(hello, models, job),
    other_chain: refusal({ ...hello, chain_id: "other" }, models, job),
    other_gateway: refusal({ ...hello, gateway_key: "ab".repeat(32) }, models, job),
    other_model: refusal(hello, models, variant((j) => { j.request.model = "x"; })),
    bad_consumer: refusal(hello, models, variant((j) => { j.terms.consumer = "idgXYZ"; })),
    not_offered: refusal(hello, [{ ...models[0], name: "other" }], job),
    other_digest: refusal(hello, [{ ...models[0], digest: "sha256:other" }], job),
    cheap_in: refusal(hello, [{ ...models[0], price_in: job.terms.price_per_mtok_in + 1n }], job),
    cheap_out: refusal(hello, [{ ...models[0], price_out: job.terms.price_per_mtok_out + 1n }], job),
  };
  return out;
})`

type crossCheckOut struct {
	PriceIn   string `json:"price_in"`
	Receipt   string `json:"receipt"`
	Auth      string `json:"auth"`
	Generated struct {
		Pub, Address, Receipt string
		AuthSig               string `json:"auth_sig"`
		ReceiptSig            string `json:"receipt_sig"`
		KeyFile               string `json:"key_file"`
	} `json:"generated"`
	Imported struct {
		Pub, Address string
		AuthSig      string `json:"auth_sig"`
	} `json:"imported"`
	Mismatch    string            `json:"mismatch"`
	Amounts     []string          `json:"amounts"`
	Prompts     []string          `json:"prompt_estimates"`
	UTF8        string            `json:"utf8"`
	AuthMessage string            `json:"auth_message"`
	Terms       map[string]string `json:"terms"`
}

// bareUI serves the web UI alone: no network behind it, as the page's
// browser tests that need no gateway use it.
func bareUI(t *testing.T) *httptest.Server {
	t.Helper()
	ui, err := web.New(web.Config{Hub: hub.New(hub.Config{}), Receipts: noReceipts{}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ui)
	t.Cleanup(srv.Close)
	return srv
}

// TestContributeCodecMatchesGo runs the page's receipt encoding, handshake
// signing, key handling, amounts and terms check in Chromium on fixed
// inputs and compares them with the Go code every other party runs, so the
// two cannot drift apart.
func TestContributeCodecMatchesGo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	ctx := newChromium(t, 90*time.Second)
	srv := bareUI(t)

	gw, provKey, fileKey := mustKey(t), mustKey(t), mustKey(t)
	consumer := mustKey(t).Public().Address()
	terms := protocol.Terms{
		ChainID: "idlegrid-cross", RequestID: "chatcmpl-ümlaut-1", Gateway: gw.Public(), Consumer: consumer,
		Model: "llama3.2:1b", ModelDigest: "sha256:" + strings.Repeat("ab", 32),
		// Above 2^53: a float would round it.
		PricePromptPerMTok: 9_007_199_254_740_993, PriceCompletionPerMTok: 600_000,
		RequestHash: receipt.Sum([]byte("body")), StartUnixMs: 1_767_225_600_123,
	}
	job := &protocol.Message{Type: protocol.TypeJob, Job: &protocol.Job{ID: terms.RequestID, Terms: terms, DeadlineUnixMs: 1_767_225_700_000,
		Request: protocol.Request{Kind: protocol.KindChat, Model: terms.Model, Messages: []protocol.ChatMessage{{Role: "user", Content: "hi"}}}}}
	line, err := protocol.Encode(nil, job)
	if err != nil {
		t.Fatal(err)
	}
	deltas := []string{"Hello", ", wörld ", "😀", ""}
	usage := protocol.Usage{PromptTokens: 11, CompletionTokens: 3}
	const end = 1_767_225_601_456
	nonce := []byte("0123456789abcdef0123456789abcdef")
	keyPath := filepath.Join(t.TempDir(), "go.key")
	if err := keys.Save(keyPath, fileKey); err != nil {
		t.Fatal(err)
	}
	keyFile, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	amounts := [][4]uint64{{0, 0, 1, 1}, {1, 999_999, 999_999, 1}, {12_345, 67_890, 200_000, 600_000},
		{1 << 40, 1 << 40, 1 << 40, 1 << 40}, {1_000_000, 0, ^uint64(0), 0}, {2_000_000, 0, ^uint64(0), 0}, {1_000_000, 1_000_000, ^uint64(0), 1}}
	// As strings: JSON numbers above 2^53 would reach the page rounded.
	var amountStrings [][4]string
	for _, a := range amounts {
		var s [4]string
		for i, v := range a {
			s[i] = strconv.FormatUint(v, 10)
		}
		amountStrings = append(amountStrings, s)
	}
	// Requests whose prompt estimate (a version-3 checkpoint's prompt
	// tokens) the page must compute as protocol.PromptEstimate does.
	prompts := []protocol.Request{{}, {Prompt: "hi"}, {Prompt: "four", System: "sys 😀"},
		{Messages: []protocol.ChatMessage{{Role: "system", Content: "be brief"}, {Role: "user", Content: "wörld 😀 ünïcödé"}}}}
	input, err := json.Marshal(map[string]any{
		"prompts":  prompts,
		"job_line": strings.TrimSpace(string(line)), "provider_key": provKey.Public().String(), "deltas": deltas,
		"usage": usage, "end": end, "nonce": base64.StdEncoding.EncodeToString(nonce), "gateway_key": gw.Public().String(),
		"chain_id": terms.ChainID, "key_file": string(keyFile), "amounts": amountStrings,
	})
	if err != nil {
		t.Fatal(err)
	}

	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+web.ContributePath), chromedp.WaitVisible(chromedp.CSS("#state"))); err != nil {
		t.Fatal(err)
	}
	out, err := chromedp.Run(ctx, chromedp.Evaluate[crossCheckOut](crossCheckJS+"("+string(input)+")", chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}

	hash := receipt.Sum([]byte(strings.Join(deltas, "")))
	want, err := terms.Receipt(provKey.Public(), usage, hash, end)
	if err != nil {
		t.Fatal(err)
	}
	if out.PriceIn != "9007199254740993" {
		t.Errorf("price read as %s", out.PriceIn)
	}
	if out.Receipt != hex.EncodeToString(want.Bytes()) {
		t.Errorf("receipt bytes differ:\n  js %s\n  go %s", out.Receipt, hex.EncodeToString(want.Bytes()))
	}
	auth := protocol.AuthBytes(nonce, gw.Public(), terms.ChainID)
	if out.Auth != hex.EncodeToString(auth) {
		t.Errorf("auth bytes differ:\n  js %s\n  go %x", out.Auth, auth)
	}

	// The WebCrypto key's signatures verify with the Go verifiers.
	pub, err := keys.ParsePublicKey(out.Generated.Pub)
	if err != nil {
		t.Fatal(err)
	}
	if string(pub.Address()) != out.Generated.Address {
		t.Errorf("address: js %s, go %s", out.Generated.Address, pub.Address())
	}
	var sig keys.Signature
	if err := sig.UnmarshalText([]byte(out.Generated.AuthSig)); err != nil || !pub.Verify(auth, sig) {
		t.Errorf("the browser's handshake signature does not verify: %v", err)
	}
	mine, err := terms.Receipt(pub, usage, hash, end)
	if err != nil {
		t.Fatal(err)
	}
	if out.Generated.Receipt != hex.EncodeToString(mine.Bytes()) {
		t.Errorf("receipt naming the browser key differs")
	}
	if err := sig.UnmarshalText([]byte(out.Generated.ReceiptSig)); err != nil || receipt.VerifyProvider(&mine, sig) != nil {
		t.Errorf("the browser's receipt signature does not verify: %v", err)
	}
	// Its key file loads with keys.Load (as `idlegrid provide --key-file` does).
	exported := filepath.Join(t.TempDir(), "browser.key")
	if err := os.WriteFile(exported, []byte(out.Generated.KeyFile), 0o600); err != nil {
		t.Fatal(err)
	}
	loaded, err := keys.Load(exported)
	if err != nil || loaded.Public() != pub {
		t.Errorf("exported key file: %v, public %s want %s", err, loaded.Public(), pub)
	}

	// The Go key file imports to the same identity, and ed25519 being
	// deterministic, signs the same bytes.
	if out.Imported.Pub != fileKey.Public().String() || out.Imported.Address != string(fileKey.Public().Address()) {
		t.Errorf("imported key: %s %s, want %s", out.Imported.Pub, out.Imported.Address, fileKey.Public())
	}
	if out.Imported.AuthSig != fileKey.Sign(auth).String() {
		t.Errorf("imported key signs differently from Go")
	}
	if !strings.Contains(out.Mismatch, "does not match") {
		t.Errorf("a key file whose public key does not match its seed: %q", out.Mismatch)
	}

	for i, a := range amounts {
		got, err := receipt.ComputeAmount(a[0], a[1], money.Amount(a[2]), money.Amount(a[3]))
		w := "overflow"
		if err == nil {
			w = strconv.FormatUint(uint64(got), 10)
		} else if !errors.Is(err, money.ErrOverflow) {
			t.Fatal(err)
		}
		if out.Amounts[i] != w {
			t.Errorf("amount %v: js %s, go %s", a, out.Amounts[i], w)
		}
	}
	for i, r := range prompts {
		if w := strconv.FormatUint(protocol.PromptEstimate(&r), 10); i >= len(out.Prompts) || out.Prompts[i] != w {
			t.Errorf("prompt estimate of %+v: js %v, go %s", r, out.Prompts, w)
		}
	}
	if out.UTF8 != "a😀b\uFFFDx\uFFFD" {
		t.Errorf("UTF-16 holder gave %q", out.UTF8)
	}

	// The auth message the page would send decodes and validates in Go,
	// with its BigInt prices exact.
	m, err := protocol.Decode([]byte(out.AuthMessage))
	if err != nil {
		t.Fatalf("auth message: %v\n%s", err, out.AuthMessage)
	}
	if md := m.Auth.Capabilities.Models; len(md) != 1 || md[0].PricePromptPerMTok != terms.PricePromptPerMTok || md[0].PriceCompletionPerMTok != 1 ||
		md[0].Digest != terms.ModelDigest || m.Auth.Capabilities.Slots != 2 || m.Auth.ProviderKey != pub {
		t.Errorf("auth capabilities: %+v", m.Auth)
	}

	// The page refuses terms as the native agent does.
	for k, w := range map[string]string{"ok": "ok", "other_chain": "bad_request", "other_gateway": "bad_request", "other_model": "bad_request",
		"bad_consumer": "bad_request", "not_offered": "model_not_found", "other_digest": "model_not_found", "cheap_in": "bad_request", "cheap_out": "bad_request"} {
		if out.Terms[k] != w {
			t.Errorf("terms %s: page answers %q, want %q", k, out.Terms[k], w)
		}
	}
}

func mustKey(t *testing.T) keys.PrivateKey {
	t.Helper()
	k, err := keys.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k
}
