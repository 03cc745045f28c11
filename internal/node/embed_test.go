package node_test

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	ollamaapi "github.com/ollama/ollama/api"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/gateway"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/node"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/tstest"
)

// directEmbed asks the provider's backend itself (no gateway) for the
// vectors of inputs.
func directEmbed(t *testing.T, tn *testNet, model string, inputs ...string) backend.Embeddings {
	t.Helper()
	emb, ok := tn.Backend.Backend.(backend.Embedder)
	if !ok {
		t.Fatalf("backend %T cannot embed", tn.Backend.Backend)
	}
	res, err := emb.Embed(context.Background(), protocol.Request{Kind: protocol.KindEmbed, Model: model, Input: inputs})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func sameVector(got []float64, want []float32) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if float32(got[i]) != want[i] {
			return false
		}
	}
	return true
}

// TestOpenAIEmbeddings: openai-go's Embeddings.New through the network
// gets the simulator's vectors bit for bit, in input order, with the
// provider's prompt count as usage and a receipt that bills exactly it
// (no completion tokens) over the canonical hash of the vectors.
func TestOpenAIEmbeddings(t *testing.T) {
	tn := startNet(t, netOptions{})
	c := openaiClient(tn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	inputs := []string{"the cat sat on the mat", "idle GPUs earn tokens", "a third text, somewhat longer than the others"}
	want := directEmbed(t, tn, "sim", inputs...)

	var hr *http.Response
	resp, err := c.Embeddings.New(ctx, openai.EmbeddingNewParams{
		Model: "sim",
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: inputs},
	}, option.WithResponseInto(&hr))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Data) != len(inputs) || resp.Model != "sim" {
		t.Fatalf("%d vectors for model %q, want %d for sim", len(resp.Data), resp.Model, len(inputs))
	}
	for i, d := range resp.Data {
		if d.Index != int64(i) || !sameVector(d.Embedding, want.Vectors[i]) {
			t.Fatalf("vector %d (index %d) differs from the simulator's", i, d.Index)
		}
	}
	if resp.Usage.PromptTokens != int64(want.PromptTokens) || resp.Usage.TotalTokens != resp.Usage.PromptTokens || want.PromptTokens == 0 {
		t.Fatalf("usage %+v, the simulator counted %d prompt tokens", resp.Usage, want.PromptTokens)
	}
	id := hr.Header.Get("X-Request-Id")
	checkReceipt(t, tn, id, protocol.Usage{PromptTokens: want.PromptTokens})
	s, err := tn.Gateway.Store.Receipt(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if s.Receipt.ResponseHash != protocol.EmbeddingsHash(want.Vectors) {
		t.Fatal("the receipt's response hash is not the canonical hash of the vectors")
	}

	// One string; dimensions cut the vector (and normalize it again).
	one, err := c.Embeddings.New(ctx, openai.EmbeddingNewParams{
		Model: "sim", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String(inputs[0])}, Dimensions: openai.Int(16),
	})
	if err != nil {
		t.Fatal(err)
	}
	var norm float64
	for _, f := range one.Data[0].Embedding {
		norm += f * f
	}
	if len(one.Data) != 1 || len(one.Data[0].Embedding) != 16 || math.Abs(norm-1) > 1e-5 {
		t.Fatalf("dimensions 16: %d vectors of %d, norm² %v", len(one.Data), len(one.Data[0].Embedding), norm)
	}
}

// TestOpenAIEmbeddingsBase64: encoding_format base64 is the little-endian
// float32 bytes of the same vectors.
func TestOpenAIEmbeddingsBase64(t *testing.T) {
	tn := startNet(t, netOptions{})
	want := directEmbed(t, tn, "sim", "hello world")
	status, body := postJSON(t, tn.URL+"/v1/embeddings", `{"model":"sim","input":"hello world","encoding_format":"base64"}`, nil)
	var resp struct {
		Object string `json:"object"`
		Data   []struct {
			Object    string `json:"object"`
			Index     int    `json:"index"`
			Embedding string `json:"embedding"`
		} `json:"data"`
	}
	if status != 200 || json.Unmarshal([]byte(body), &resp) != nil || resp.Object != "list" || len(resp.Data) != 1 || resp.Data[0].Object != "embedding" {
		t.Fatalf("%d %s", status, body)
	}
	raw, err := base64.StdEncoding.DecodeString(resp.Data[0].Embedding)
	if err != nil || len(raw) != 4*len(want.Vectors[0]) {
		t.Fatalf("base64 of %d bytes (%v), want %d", len(raw), err, 4*len(want.Vectors[0]))
	}
	for i, f := range want.Vectors[0] {
		if math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:])) != f {
			t.Fatalf("component %d differs", i)
		}
	}
}

// TestEmbeddingsBadInput: each API's error shape, with the reason.
func TestEmbeddingsBadInput(t *testing.T) {
	tn := startNet(t, netOptions{})
	for _, tc := range []struct {
		path, body string
		status     int
		want       string
	}{
		{"/v1/embeddings", `{"model":"sim","input":[1,2,3]}`, 400, "token-id inputs are not supported"},
		{"/v1/embeddings", `{"model":"sim","input":[[1,2]]}`, 400, "token-id inputs are not supported"},
		{"/v1/embeddings", `{"model":"sim","input":""}`, 400, "empty string"},
		{"/v1/embeddings", `{"model":"sim","input":[]}`, 400, "empty array"},
		{"/v1/embeddings", `{"model":"sim"}`, 400, "input"},
		{"/v1/embeddings", `{"model":"sim","input":"x","encoding_format":"int8"}`, 400, "encoding_format"},
		{"/v1/embeddings", `{"model":"sim","input":"x","dimensions":0}`, 400, "dimensions"},
		{"/v1/embeddings", `{"model":"sim","input":"x","dimensions":65}`, 400, "dimensions 65"},
		{"/v1/embeddings", `{"model":"nope","input":"x"}`, 404, "nope"},
		{"/api/embed", `{"model":"sim","input":{"a":1}}`, 400, "input"},
		{"/api/embed", `{"model":"sim","input":["a",""]}`, 400, "input[1]"},
		{"/api/embed", `{"input":"a"}`, 400, "model is required"},
		{"/api/embed", `{"model":"nope","input":""}`, 404, "nope"},
		{"/api/embeddings", `{"model":"sim","prompt":5}`, 400, "prompt"},
	} {
		status, body := postJSON(t, tn.URL+tc.path, tc.body, nil)
		if status != tc.status || !strings.Contains(body, tc.want) {
			t.Errorf("%s %s: %d %s; want %d with %q", tc.path, tc.body, status, body, tc.status, tc.want)
		}
		var shape map[string]any
		if json.Unmarshal([]byte(body), &shape) != nil {
			t.Errorf("%s %s: not JSON: %s", tc.path, tc.body, body)
		} else if _, ollamaStyle := shape["error"].(string); ollamaStyle != strings.HasPrefix(tc.path, "/api/") {
			t.Errorf("%s %s: error shape %s", tc.path, tc.body, body)
		}
	}
}

// TestOllamaEmbed: the Ollama Go client's Embed and legacy Embeddings get
// the simulator's vectors; an empty input gets none, as from Ollama.
func TestOllamaEmbed(t *testing.T) {
	tn := startNet(t, netOptions{})
	c := ollamaClient(t, tn.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	inputs := []string{"why is the sky blue?", "because of Rayleigh scattering"}
	want := directEmbed(t, tn, "sim", inputs...)
	resp, err := c.Embed(ctx, &ollamaapi.EmbedRequest{Model: "sim", Input: inputs})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Model != "sim" || len(resp.Embeddings) != 2 || resp.PromptEvalCount != int(want.PromptTokens) {
		t.Fatalf("embed: model %q, %d vectors, %d prompt tokens; want 2 and %d", resp.Model, len(resp.Embeddings), resp.PromptEvalCount, want.PromptTokens)
	}
	for i, v := range resp.Embeddings {
		if !slicesEqual(v, want.Vectors[i]) {
			t.Fatalf("vector %d differs from the simulator's", i)
		}
	}
	single, err := c.Embed(ctx, &ollamaapi.EmbedRequest{Model: "sim", Input: inputs[0]})
	if err != nil || len(single.Embeddings) != 1 || !slicesEqual(single.Embeddings[0], want.Vectors[0]) {
		t.Fatalf("embed one string: %+v, %v", single, err)
	}
	empty, err := c.Embed(ctx, &ollamaapi.EmbedRequest{Model: "sim", Input: ""})
	if err != nil || len(empty.Embeddings) != 0 {
		t.Fatalf("embed nothing: %+v, %v", empty, err)
	}
	legacy, err := c.Embeddings(ctx, &ollamaapi.EmbeddingRequest{Model: "sim", Prompt: inputs[0]})
	if err != nil || len(legacy.Embedding) != len(want.Vectors[0]) {
		t.Fatalf("legacy embeddings: %+v, %v", legacy, err)
	}
	for i, f := range legacy.Embedding {
		if float32(f) != want.Vectors[0][i] {
			t.Fatalf("legacy component %d differs", i)
		}
	}
}

func slicesEqual(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestEmbeddingsSettleOnTheLedger: an embed request is charged its prompt
// tokens × the prompt price and nothing for completion, and its receipt
// settles on the ledger: the consumer's deposit drops by exactly that.
func TestEmbeddingsSettleOnTheLedger(t *testing.T) {
	tn := startNet(t, netOptions{gateway: gateway.Config{SettleInterval: 100 * time.Millisecond}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l := chainrpc.StateReader{Client: tn.Validator.Node.Client()}
	gw := tn.Gateway.Key.Public().Address()
	depBefore, err := l.Deposit(ctx, tn.Account, gw)
	if err != nil {
		t.Fatal(err)
	}
	inputs := []string{strings.Repeat("embed me ", 200), strings.Repeat("and me too ", 300)}
	want := directEmbed(t, tn, "sim", inputs...)
	var hr *http.Response
	c := openaiClient(tn)
	if _, err := c.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "sim", Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: inputs}},
		option.WithResponseInto(&hr)); err != nil {
		t.Fatal(err)
	}
	id := hr.Header.Get("X-Request-Id")
	s, err := tn.Gateway.Store.Receipt(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	r := s.Receipt
	price := r.PricePromptPerMTok
	wantAmount, err := money.Cost(want.PromptTokens, price)
	if err != nil {
		t.Fatal(err)
	}
	if r.PromptTokens != want.PromptTokens || r.CompletionTokens != 0 || r.Amount != wantAmount || wantAmount == 0 {
		t.Fatalf("receipt %d prompt + %d completion tokens for %s: want %d prompt tokens × %s/Mtok = %s, no completion",
			r.PromptTokens, r.CompletionTokens, r.Amount, want.PromptTokens, price, wantAmount)
	}
	tstest.WaitFor(t, 30*time.Second, "the embed receipt settled", func() bool {
		a := getAccount(t, tn, testAPIKey)
		return a.Receipts.Settled == 1 && a.Receipts.Pending == 0
	})
	st, err := l.Settlement(ctx, gw, id)
	if err != nil || st.Receipt != r.Hash() || st.Amount != wantAmount {
		t.Fatalf("settlement of %s: %+v, %v", id, st, err)
	}
	depAfter, err := l.Deposit(ctx, tn.Account, gw)
	if err != nil {
		t.Fatal(err)
	}
	if depAfter.Locked != depBefore.Locked-wantAmount {
		t.Fatalf("consumer deposit %d → %d, want a drop of exactly %d", depBefore.Locked, depAfter.Locked, wantAmount)
	}
}

// TestRealOllamaEmbeddings: the whole path on a real Ollama with the tiny
// model, through both clients: vectors of the model's size, as Ollama's
// own, counted and receipted.
func TestRealOllamaEmbeddings(t *testing.T) {
	ollamaURL := os.Getenv("OLLAMA_URL")
	if ollamaURL == "" {
		t.Skip("OLLAMA_URL not set: start a test Ollama with shared/scripts/ollama-test-server.sh start")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, err := node.OpenBackend(ctx, node.BackendOllama, ollamaURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	tn := startNet(t, netOptions{backend: b, slots: 2})
	inputs := []string{"hello world", "the cat sat on the mat"}
	want := directEmbed(t, tn, "tiny", inputs...)

	var hr *http.Response
	oc := openaiClient(tn)
	resp, err := oc.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "tiny", Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: inputs}},
		option.WithResponseInto(&hr))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Data) != 2 || len(resp.Data[0].Embedding) == 0 || resp.Usage.PromptTokens != int64(want.PromptTokens) {
		t.Fatalf("%d vectors of %d, usage %+v; Ollama counted %d", len(resp.Data), len(resp.Data[0].Embedding), resp.Usage, want.PromptTokens)
	}
	for i, d := range resp.Data {
		if !sameVector(d.Embedding, want.Vectors[i]) {
			t.Errorf("vector %d differs from Ollama's own", i)
		}
	}
	s, err := tn.Gateway.Store.Receipt(ctx, hr.Header.Get("X-Request-Id"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(); err != nil || s.Receipt.PromptTokens != want.PromptTokens || s.Receipt.CompletionTokens != 0 {
		t.Fatalf("receipt %+v: %v", s.Receipt, err)
	}
	ol := ollamaClient(t, tn.URL)
	er, err := ol.Embed(ctx, &ollamaapi.EmbedRequest{Model: "tiny", Input: inputs})
	if err != nil || len(er.Embeddings) != 2 || er.PromptEvalCount != int(want.PromptTokens) {
		t.Fatalf("ollama embed: %+v, %v", er, err)
	}
	legacy, err := ol.Embeddings(ctx, &ollamaapi.EmbeddingRequest{Model: "tiny", Prompt: inputs[0]})
	if err != nil || len(legacy.Embedding) != len(want.Vectors[0]) {
		t.Fatalf("ollama legacy embeddings: %+v, %v", legacy, err)
	}
	t.Logf("real Ollama embeddings via gateway: %d dimensions, %d prompt tokens", len(er.Embeddings[0]), er.PromptEvalCount)
}

// generateOnly is a provider's backend that cannot compute embeddings.
type generateOnly struct{ backend.Backend }

// TestEmbedMovesPastProvidersThatCannotEmbed: a provider whose backend
// cannot embed answers "unsupported"; alone, the consumer is told no
// provider can; beside one that can, every request is served there.
func TestEmbedMovesPastProvidersThatCannotEmbed(t *testing.T) {
	s, err := sim.New(fastSim())
	if err != nil {
		t.Fatal(err)
	}
	keyFile, register := stakedProvider(t, "embedder")
	tn := startNet(t, netOptions{backend: &node.LocalBackend{Backend: generateOnly{s}, Description: "generate only"}, genesis: register})
	status, body := postJSON(t, tn.URL+"/v1/embeddings", `{"model":"sim","input":"hi"}`, nil)
	if status != 503 || !strings.Contains(body, "cannot compute embeddings") {
		t.Fatalf("only a provider that cannot embed: %d %s", status, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := node.StartProvider(node.ProviderConfig{Gateway: tn.URL, KeyFile: keyFile, Backend: &node.LocalBackend{Backend: s, Description: "sim"}, Slots: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop() })
	if err := p.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		var hr *http.Response
		c := openaiClient(tn)
		if _, err := c.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "sim", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("hi")}},
			option.WithResponseInto(&hr)); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		r, err := tn.Gateway.Store.Receipt(ctx, hr.Header.Get("X-Request-Id"))
		if err != nil || r.Receipt.Provider != p.Key {
			t.Fatalf("request %d: receipt %+v (%v), want one of the provider that embeds", i, r.Receipt, err)
		}
	}
}
