package web

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cometbft/cometbft/types"

	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/gateway/client"
	"github.com/idlegrid/idlegrid/internal/hub"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/receipt"
	"github.com/idlegrid/idlegrid/internal/store"
)

// now is the fakes' clock: every time below is relative to it.
var now = time.Date(2026, 3, 1, 12, 30, 30, 0, time.UTC)

type fakeHub []hub.Info

func (f fakeHub) Snapshot() []hub.Info { return f }

type fakeReceipts struct {
	recent  []store.StoredReceipt
	minutes []store.MinuteTokens
	err     error
}

func (f *fakeReceipts) RecentReceipts(_ context.Context, limit int) ([]store.StoredReceipt, error) {
	return f.recent[:min(limit, len(f.recent))], f.err
}

func (f *fakeReceipts) TokensPerMinute(context.Context, time.Time) ([]store.MinuteTokens, error) {
	return f.minutes, f.err
}

func (f *fakeReceipts) Receipt(_ context.Context, id string) (receipt.Signed, error) {
	for _, r := range f.recent {
		if r.Receipt.RequestID == id {
			return r.Signed, nil
		}
	}
	return receipt.Signed{}, store.ErrNotFound
}

type fakeLedger struct {
	accounts    map[keys.Address]chainrpc.AccountInfo
	providers   map[keys.Address]chainrpc.ProviderInfo
	settlements map[string]ledger.Settlement
	epoch       chainrpc.EpochInfo
	epochs      []ledger.EpochRecord
	payouts     map[uint64][]ledger.Payout
}

func notFound(what string) error { return fmt.Errorf("%s: %w", what, chainrpc.ErrNotFound) }

func (f *fakeLedger) Account(_ context.Context, a keys.Address) (chainrpc.AccountInfo, error) {
	if v, ok := f.accounts[a]; ok {
		return v, nil
	}
	return chainrpc.AccountInfo{}, notFound("account")
}

func (f *fakeLedger) Provider(_ context.Context, a keys.Address) (chainrpc.ProviderInfo, error) {
	if v, ok := f.providers[a]; ok {
		return v, nil
	}
	return chainrpc.ProviderInfo{}, notFound("provider")
}

func (f *fakeLedger) Settlement(_ context.Context, gateway keys.Address, id string) (ledger.Settlement, error) {
	if v, ok := f.settlements[chainrpc.ReceiptRef(gateway, id)]; ok {
		return v, nil
	}
	return ledger.Settlement{}, notFound("receipt")
}

func (f *fakeLedger) Tx(context.Context, receipt.Hash) (ledger.TxRecord, error) {
	return ledger.TxRecord{Height: 3}, nil
}

func (f *fakeLedger) EpochState(context.Context) (chainrpc.EpochInfo, error) { return f.epoch, nil }

func (f *fakeLedger) Epoch(_ context.Context, n uint64) (ledger.EpochRecord, error) {
	for _, e := range f.epochs {
		if e.Number == n {
			return e, nil
		}
	}
	return ledger.EpochRecord{}, notFound("epoch")
}

func (f *fakeLedger) Payouts(_ context.Context, n uint64) ([]ledger.Payout, error) {
	return f.payouts[n], nil
}

type fakeBlocks map[int64]*types.Block

func (f fakeBlocks) Latest(context.Context) (int64, []byte, error) {
	return int64(len(f)), []byte{0xab, 0xcd}, nil
}

func (f fakeBlocks) Block(_ context.Context, h int64) (*types.Block, error) {
	if b, ok := f[h]; ok {
		return b, nil
	}
	return nil, fmt.Errorf("no block %d", h)
}

// fakeAPI is the typed client of a server that answers /v1/models and
// /v1/account like the gateway does.
func fakeAPI(t *testing.T, models string, account keys.Address) API {
	srv := httptest.NewServer(fakeAPIHandler(models, account))
	t.Cleanup(srv.Close)
	return client.New(srv.URL, "")
}

func fakeAPIHandler(models string, account keys.Address) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"object":"list","data":[{"id":`+models+`,"object":"model","providers":1,
			"price_per_mtok":{"prompt":{"min":"0.100000","median":"0.100000"},"completion":{"min":"0.250000","median":"0.300000"}},
			"tokens_per_second":42.5}]}`)
	})
	mux.HandleFunc("GET /v1/account", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer secret-key" {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":{"message":"Incorrect API key provided.","type":"authentication_error"}}`)
			return
		}
		io.WriteString(w, `{"object":"account","account":"`+string(account)+`","ledger":true,"balance":7000000,"deposit":5000000,"unlocking":2500000,
			"spendable":5000000,"reserved":10,"pending_settlement":20,"settled_spend":1234567,"receipts":{"settled":3,"pending":1,"rejected":0}}`)
	})
	return mux
}

type fixture struct {
	ui        *UI
	provider  keys.PrivateKey
	gateway   keys.PrivateKey
	consumer  keys.Address
	settled   receipt.Signed
	pending   receipt.Signed
	receipts  *fakeReceipts
	ledger    *fakeLedger
	blocks    fakeBlocks
	modelName string
}

func newKey(t *testing.T) keys.PrivateKey {
	t.Helper()
	k, err := keys.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func signedReceipt(t *testing.T, id string, prov, gw keys.PrivateKey, consumer keys.Address, end time.Time) receipt.Signed {
	t.Helper()
	r := receipt.Receipt{Version: receipt.Version, ChainID: "test-chain", RequestID: id, Gateway: gw.Public(), Provider: prov.Public(),
		Consumer: consumer, Model: "sim-small", ModelDigest: "sha256:abc", PromptTokens: 12, CompletionTokens: 34,
		PricePromptPerMTok: money.Unit, PriceCompletionPerMTok: 2 * money.Unit, StartUnixMs: end.Add(-time.Second).UnixMilli(), EndUnixMs: end.UnixMilli()}
	amt, err := receipt.ComputeAmount(r.PromptTokens, r.CompletionTokens, r.PricePromptPerMTok, r.PriceCompletionPerMTok)
	if err != nil {
		t.Fatal(err)
	}
	r.Amount = amt
	return receipt.Signed{Receipt: r, ProviderSignature: receipt.SignProvider(prov, &r), GatewaySignature: receipt.SignGateway(gw, &r)}
}

func newFixture(t *testing.T, withLedger bool) *fixture {
	t.Helper()
	f := &fixture{provider: newKey(t), gateway: newKey(t), consumer: newKey(t).Public().Address(), modelName: `"sim-small"`}
	f.settled = signedReceipt(t, "chatcmpl-settled1", f.provider, f.gateway, f.consumer, now.Add(-90*time.Second))
	f.pending = signedReceipt(t, "chatcmpl-pending2", f.provider, f.gateway, f.consumer, now.Add(-10*time.Second))
	f.receipts = &fakeReceipts{
		recent: []store.StoredReceipt{
			{Signed: f.pending, StoredAt: now.Add(-10 * time.Second)},
			{Signed: f.settled, StoredAt: now.Add(-90 * time.Second), SettleHeight: 2},
		},
		minutes: []store.MinuteTokens{
			{Minute: now.Truncate(time.Minute).Add(-time.Minute), Requests: 1, PromptTokens: 12, Completion: 34},
			{Minute: now.Truncate(time.Minute), Requests: 1, PromptTokens: 12, Completion: 56},
		},
	}
	provAddr := f.provider.Public().Address()
	f.ledger = &fakeLedger{
		accounts: map[keys.Address]chainrpc.AccountInfo{provAddr: {Address: provAddr, Account: ledger.Account{
			Balance: 3 * money.Unit, Stake: 1000 * money.Unit, Roles: ledger.RoleProvider,
			Escrow:  []ledger.Entry{{Amount: 5 * money.Unit, Height: 40}},
			Vesting: []ledger.Vest{{Amount: 8 * money.Unit, Released: 2 * money.Unit, Start: 20, End: 220}},
		}, Claimable: money.Unit, Unvested: 5 * money.Unit}},
		providers: map[keys.Address]chainrpc.ProviderInfo{provAddr: {Address: provAddr, Reputation: 975,
			ProviderRecord: ledger.ProviderRecord{Audits: 40, Failures: 1, Last: []ledger.CaseOutcome{{Evidence: receipt.Sum([]byte("ev")), Pass: true, Height: 17}}}}},
		settlements: map[string]ledger.Settlement{chainrpc.ReceiptRef(f.gateway.Public().Address(), f.settled.Receipt.RequestID): {Height: 2, TxHash: receipt.Sum([]byte("tx")),
			Receipt: f.settled.Receipt.Hash(), Amount: f.settled.Receipt.Amount, Consumer: f.consumer, Provider: f.provider.Public()}},
		epoch: chainrpc.EpochInfo{EpochState: ledger.EpochState{Number: 2, Start: 41}, EndHeight: 60, Height: 45},
		epochs: []ledger.EpochRecord{
			{Number: 0, Start: 1, End: 20, Minted: 100 * money.Unit, Providers: 60 * money.Unit, Payees: 1, Root: receipt.Sum([]byte("r0"))},
			{Number: 1, Start: 21, End: 40, Minted: 90 * money.Unit, Providers: 50 * money.Unit, Payees: 1, Root: receipt.Sum([]byte("r1"))},
		},
		payouts: map[uint64][]ledger.Payout{1: {{Epoch: 1, Account: provAddr, Amount: 50 * money.Unit}}},
	}
	batch := ledger.Tx{ChainID: "test-chain", Kind: ledger.KindSettleBatch, Nonce: 7,
		Receipts: []ledger.BatchReceipt{ledger.NewBatchReceipt(&f.settled)}}
	batch.Root = ledger.BatchRoot(batch.Receipts)
	batch.Sign(f.gateway)
	f.blocks = fakeBlocks{
		1: {Header: types.Header{Height: 1, Time: now.Add(-time.Hour)}},
		2: {Header: types.Header{Height: 2, Time: now.Add(-time.Minute)}, Data: types.Data{Txs: types.Txs{batch.Bytes()}}},
	}
	cfg := Config{
		Hub: fakeHub{{Key: f.provider.Public(), InFlight: 1, ConnectedAt: now.Add(-time.Hour),
			Capabilities: protocol.Capabilities{Slots: 4, Models: []protocol.Model{{Name: "sim-small", Digest: "sha256:abc"}}}}},
		Receipts: f.receipts,
		Gateway:  f.gateway.Public().Address(),
		Now:      func() time.Time { return now },
	}
	if withLedger {
		cfg.Ledger, cfg.Blocks = f.ledger, f.blocks
	}
	ui, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ui.SetAPI(fakeAPI(t, f.modelName, f.consumer))
	f.ui = ui
	return f
}

func (f *fixture) get(t *testing.T, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	f.ui.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

func (f *fixture) post(t *testing.T, path string, form url.Values) (*httptest.ResponseRecorder, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	f.ui.ServeHTTP(rec, req)
	return rec, rec.Body.String()
}

func wantAll(t *testing.T, page, body string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("%s: missing %q", page, w)
		}
	}
}

func TestPagesShowTheirData(t *testing.T) {
	f := newFixture(t, true)
	prov := f.provider.Public()
	provAddr := string(prov.Address())
	for _, tc := range []struct {
		path  string
		wants []string
	}{
		{"/ui/", []string{
			prov.String(), "sim-small", "0.100000 / 0.100000", "0.250000 / 0.300000", "42.5",
			"1 / 4", "chatcmpl-settled1", "settled at 2", "1 of the latest requests await settlement",
			"<svg", "<rect", "1</span> providers online",
			// 34 + 56 completion tokens over 60 s plus the 30 s of the
			// running minute.
			"1.0</span> tokens/s",
		}},
		{"/ui/explorer/", []string{`href="/ui/explorer/block/2"`, "abcd", ">1</td>"}},
		{"/ui/explorer/block/2", []string{"settle-batch", "1 receipts", `href="/ui/explorer/receipt/` + string(f.gateway.Public().Address()) + `/chatcmpl-settled1"`,
			string(f.gateway.Public().Address()), "ok"}},
		{"/ui/explorer/receipt/" + string(f.gateway.Public().Address()) + "/chatcmpl-settled1", []string{"Settlement", "Settled by gateway", f.settled.Receipt.Hash().String(), string(f.consumer),
			"12 prompt, 34 completion", "sha256:abc"}},
		{"/ui/explorer/epochs", []string{"Running epoch <strong>2</strong>", "100.000000", "90.000000",
			receipt.Sum([]byte("r1")).String()[:8], "<rect"}},
		{"/ui/explorer/epoch/1", []string{receipt.Sum([]byte("r1")).String(), provAddr, "50.000000"}},
		{"/ui/explorer/provider/" + provAddr, []string{prov.String(), "1000.000000", "5.000000", "6.000000",
			"97.5%", "40 (1 failed)", "pass", "provider", "sim-small", "serving, 1 of 4 slots busy"}},
		{"/ui/account", []string{`method="post"`, `type="password"`}},
		{"/ui/static/style.css", []string{"figure.chart"}},
	} {
		code, body := f.get(t, tc.path)
		if code != http.StatusOK {
			t.Errorf("GET %s: status %d\n%s", tc.path, code, body)
			continue
		}
		wantAll(t, tc.path, body, tc.wants...)
	}
}

func TestPendingReceiptKeepsItsDetails(t *testing.T) {
	f := newFixture(t, true)
	code, body := f.get(t, "/ui/explorer/receipt/"+string(f.gateway.Public().Address())+"/chatcmpl-pending2")
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	wantAll(t, "pending receipt", body, "not settled on the ledger yet")
	if strings.Contains(body, "sha256:abc") || strings.Contains(body, string(f.consumer)) {
		t.Error("a pending receipt's details are shown")
	}
}

func TestErrorsAndBadInput(t *testing.T) {
	f := newFixture(t, true)
	for _, tc := range []struct {
		path string
		code int
	}{
		{"/ui/explorer/block/abc", http.StatusBadRequest},
		{"/ui/explorer/block/0", http.StatusBadRequest},
		{"/ui/explorer/block/99", http.StatusNotFound},
		{"/ui/explorer/receipt/nope", http.StatusSeeOther},
		{"/ui/explorer/receipt/" + string(f.gateway.Public().Address()) + "/nope", http.StatusNotFound},
		{"/ui/explorer/receipt/not-an-address/chatcmpl-settled1", http.StatusBadRequest},
		{"/ui/explorer/receipt?id=x&gateway=not-an-address", http.StatusBadRequest},
		{"/ui/explorer/receipt?id=", http.StatusBadRequest},
		{"/ui/explorer/receipt?id=" + url.QueryEscape("a b/c"), http.StatusSeeOther},
		{"/ui/explorer/epoch/7", http.StatusNotFound},
		{"/ui/explorer/epoch/-1", http.StatusBadRequest},
		{"/ui/explorer/provider/not-an-address", http.StatusBadRequest},
		{"/ui/explorer/provider?addr=" + f.provider.Public().String(), http.StatusSeeOther},
		{"/ui/explorer/provider/" + string(newKey(t).Public().Address()), http.StatusNotFound},
		{"/ui/nothing-here", http.StatusNotFound},
	} {
		code, body := f.get(t, tc.path)
		if code != tc.code {
			t.Errorf("GET %s: status %d, want %d\n%s", tc.path, code, tc.code, body)
		}
	}
}

func TestWithoutLedger(t *testing.T) {
	f := newFixture(t, false)
	code, body := f.get(t, "/ui/explorer/")
	if code != http.StatusNotFound || !strings.Contains(body, "without a ledger") {
		t.Errorf("explorer without a ledger: %d\n%s", code, body)
	}
	code, body = f.get(t, "/ui/")
	if code != http.StatusOK || strings.Contains(body, "ledger height") {
		t.Errorf("overview without a ledger: %d\n%s", code, body)
	}
	// The provider page still shows what the hub knows.
	code, body = f.get(t, "/ui/explorer/provider/"+string(f.provider.Public().Address()))
	if code != http.StatusOK || !strings.Contains(body, "sim-small") {
		t.Errorf("provider without a ledger: %d\n%s", code, body)
	}
}

func TestStoreFailureIsANote(t *testing.T) {
	f := newFixture(t, true)
	f.receipts.err = fmt.Errorf("disk on fire")
	code, body := f.get(t, "/ui/")
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	wantAll(t, "overview", body, "Recent requests are unavailable", "sim-small")
	if strings.Contains(body, "disk on fire") {
		t.Error("an internal error's text reaches the page")
	}
}

func TestAccount(t *testing.T) {
	f := newFixture(t, true)
	rec, body := f.post(t, "/ui/account", url.Values{"key": {"secret-key"}})
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d\n%s", rec.Code, body)
	}
	wantAll(t, "account", body, string(f.consumer), "7.000000", "5.000000", "2.500000", "Deposit locked", "1.234567", "(3 receipts)", "chatcmpl-settled1")
	if strings.Contains(body, "secret-key") {
		t.Error("the API key is echoed in the page")
	}
	if rec.Header().Get("Cache-Control") != "no-store" {
		t.Error("the account page may be cached")
	}

	rec, body = f.post(t, "/ui/account", url.Values{"key": {"wrong"}})
	if rec.Code != http.StatusUnauthorized || !strings.Contains(body, "Incorrect API key provided.") {
		t.Errorf("wrong key: %d\n%s", rec.Code, body)
	}
	rec, _ = f.post(t, "/ui/account", url.Values{})
	if rec.Code != http.StatusBadRequest {
		t.Errorf("no key: %d", rec.Code)
	}
	rec, _ = f.post(t, "/ui/account", url.Values{"key": {strings.Repeat("k", 2*maxFormBytes)}})
	if rec.Code != http.StatusBadRequest {
		t.Errorf("oversized form: %d", rec.Code)
	}
	// A key in the URL is not read.
	code, body := f.get(t, "/ui/account?key=secret-key")
	if code != http.StatusOK || strings.Contains(body, "7.000000") || strings.Contains(body, "secret-key") {
		t.Errorf("a key in the URL was used or echoed: %d", code)
	}
}

func TestAPINotConnected(t *testing.T) {
	f := newFixture(t, true)
	f.ui.SetAPI(nil)
	code, body := f.get(t, "/ui/")
	if code != http.StatusOK || !strings.Contains(body, "Models are unavailable") {
		t.Errorf("overview without the API: %d\n%s", code, body)
	}
	rec, _ := f.post(t, "/ui/account", url.Values{"key": {"secret-key"}})
	if rec.Code != http.StatusBadGateway {
		t.Errorf("account without the API: %d", rec.Code)
	}
}

func TestEscaping(t *testing.T) {
	f := newFixture(t, true)
	evil := `<script>alert(1)</script>`
	b, _ := json.Marshal(evil)
	f.ui.SetAPI(fakeAPI(t, string(b), f.consumer))
	_, body := f.get(t, "/ui/")
	if strings.Contains(body, evil) {
		t.Fatal("a model name is not escaped")
	}
	wantAll(t, "overview", body, "&lt;script&gt;")
}

func TestSecurityHeaders(t *testing.T) {
	f := newFixture(t, true)
	rec := httptest.NewRecorder()
	f.ui.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ui/", nil))
	for _, h := range []string{"Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy"} {
		if rec.Header().Get(h) == "" {
			t.Errorf("missing %s", h)
		}
	}
	if ct := rec.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("content type %q", ct)
	}
}

func TestChartLayout(t *testing.T) {
	format := func(v uint64) string { return fmt.Sprint(v) }
	for _, tc := range []struct {
		name   string
		points []point
		empty  bool
		bars   []int // heights
	}{
		{"none", nil, true, nil},
		{"zeros", []point{{"a", 0}, {"b", 0}}, true, []int{0, 0}},
		{"scaled", []point{{"a", 10}, {"b", 5}, {"c", 0}}, false, []int{114, 57, 0}},
		{"tiny stays visible", []point{{"a", 1_000_000}, {"b", 1}}, false, []int{114, 1}},
		{"huge", []point{{"a", ^uint64(0)}, {"b", ^uint64(0) / 2}}, false, []int{114, 57}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newChart("t", tc.points, format)
			if c.Empty != tc.empty || len(c.Bars) != len(tc.bars) {
				t.Fatalf("empty %v bars %d", c.Empty, len(c.Bars))
			}
			for i, b := range c.Bars {
				if b.H != tc.bars[i] || b.Y+b.H != chartBottom || b.X < chartLeft || b.X+b.W > chartRight {
					t.Errorf("bar %d: %+v", i, b)
				}
			}
		})
	}
}

// TestProviderEarnings: the JSON the /contribute page polls carries the
// provider's ledger totals as exact base-unit strings, says when the ledger
// does not know the key or is absent, and refuses a bad address.
func TestProviderEarnings(t *testing.T) {
	other := string(newKey(t).Public().Address())
	tests := []struct {
		name, addr string // addr "": the fixture's provider
		ledger     bool
		status     int
		want       string
	}{
		{"known provider", "", true, 200,
			`{"ledger":true,"known":true,"balance":"3000000","stake":"1000000000","escrow":"5000000","vesting":"6000000"}`},
		{"unknown key", other, true, 200,
			`{"ledger":true,"known":false,"balance":"0","stake":"0","escrow":"0","vesting":"0"}`},
		{"no ledger", "", false, 200,
			`{"ledger":false,"known":false,"balance":"0","stake":"0","escrow":"0","vesting":"0"}`},
		{"bad address", "not-an-address", true, 400,
			`{"error":"That is not an account address or public key."}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.ledger)
			addr := tt.addr
			if addr == "" {
				addr = string(f.provider.Public().Address())
			}
			rec := httptest.NewRecorder()
			f.ui.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ui/explorer/provider/"+addr+"/earnings", nil))
			if got := strings.TrimSpace(rec.Body.String()); rec.Code != tt.status || got != tt.want {
				t.Errorf("%d %s\nwant %d %s", rec.Code, got, tt.status, tt.want)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
}
