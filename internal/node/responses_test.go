package node_test

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/gateway"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/node"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/receipt"
	"github.com/idlegrid/idlegrid/internal/tstest"
)

// responseEvents is the official event sequence of a streamed answer, with
// the delta repeated, and its end: response.completed or
// response.incomplete.
var responseEvents = []string{"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
	"response.output_text.delta", "response.output_text.done", "response.content_part.done", "response.output_item.done"}

// streamResponse reads a streamed response with openai-go, checking that
// the events come in the official order with consecutive sequence numbers,
// and returns the deltas' text and the final response.
func streamResponse(t *testing.T, ctx context.Context, c openai.Client, params responses.ResponseNewParams, opts ...option.RequestOption) (string, responses.Response) {
	t.Helper()
	stream := c.Responses.NewStreaming(ctx, params, opts...)
	var text strings.Builder
	var final responses.Response
	var order []string // event types, repeated deltas as one
	var seq int64
	for stream.Next() {
		ev := stream.Current()
		if ev.SequenceNumber != seq {
			t.Errorf("event %d (%s) has sequence_number %d", seq, ev.Type, ev.SequenceNumber)
		}
		seq++
		if n := len(order); n == 0 || order[n-1] != ev.Type || ev.Type != "response.output_text.delta" {
			order = append(order, ev.Type)
		}
		switch ev.Type {
		case "response.output_text.delta":
			text.WriteString(ev.Delta)
		case "response.completed", "response.incomplete":
			final = ev.Response
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	want := append(append([]string{}, responseEvents...), "response."+string(final.Status))
	if strings.Join(order, " ") != strings.Join(want, " ") {
		t.Fatalf("events\n got %v\nwant %v", order, want)
	}
	return text.String(), final
}

// TestResponsesAPI: openai-go's Responses.New and NewStreaming against
// `up` with the simulator return exactly the simulator's own answer for
// the same conversation (instructions as the system message), its token
// counts as usage, and a receipt under the response id.
func TestResponsesAPI(t *testing.T) {
	tn := startNet(t, netOptions{})
	c := openaiClient(tn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	params := responses.ResponseNewParams{
		Model:           "sim",
		Instructions:    openai.String("Answer in one line."),
		Input:           responses.ResponseNewParamsInputUnion{OfString: openai.String("Tell me about idle GPUs")},
		MaxOutputTokens: openai.Int(40),
		Temperature:     openai.Float(0),
	}
	seed := option.WithJSONSet("seed", 7) // an extension: the Responses API has no seed
	req := protocol.Request{Kind: protocol.KindChat, Model: "sim", Options: greedy(40),
		Messages: []protocol.ChatMessage{{Role: "system", Content: "Answer in one line."}, {Role: "user", Content: "Tell me about idle GPUs"}}}
	wantText, wantRes := direct(t, tn, req)
	wantStatus := responses.ResponseStatusCompleted
	if wantRes.FinishReason == "length" {
		wantStatus = responses.ResponseStatusIncomplete
	}
	checkUsage := func(t *testing.T, u responses.ResponseUsage) {
		t.Helper()
		if u.InputTokens != int64(wantRes.Usage.PromptTokens) || u.OutputTokens != int64(wantRes.Usage.CompletionTokens) || u.TotalTokens != u.InputTokens+u.OutputTokens {
			t.Errorf("usage %+v, provider counted %+v", u, wantRes.Usage)
		}
	}

	t.Run("non-streaming", func(t *testing.T) {
		res, err := c.Responses.New(ctx, params, seed)
		if err != nil {
			t.Fatal(err)
		}
		if res.OutputText() != wantText || res.Status != wantStatus || !strings.HasPrefix(res.ID, "resp_") || res.Model != "sim" {
			t.Fatalf("response %s %s %q, want %s %q", res.ID, res.Status, res.OutputText(), wantStatus, wantText)
		}
		if msg := res.Output[0].AsMessage(); msg.ID != "msg_"+strings.TrimPrefix(res.ID, "resp_") || msg.Role != "assistant" {
			t.Errorf("message %+v", msg)
		}
		checkUsage(t, res.Usage)
		checkReceipt(t, tn, res.ID, wantRes.Usage)
	})

	t.Run("streaming", func(t *testing.T) {
		text, final := streamResponse(t, ctx, c, params, seed)
		if text != wantText || final.OutputText() != wantText || final.Status != wantStatus {
			t.Fatalf("streamed %q, final %s %q; want %q", text, final.Status, final.OutputText(), wantText)
		}
		checkUsage(t, final.Usage)
		checkReceipt(t, tn, final.ID, wantRes.Usage)
	})

	t.Run("cut by max_output_tokens", func(t *testing.T) {
		p := params
		p.MaxOutputTokens = openai.Int(3)
		res, err := c.Responses.New(ctx, p, seed)
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != responses.ResponseStatusIncomplete || res.IncompleteDetails.Reason != "max_output_tokens" || res.Usage.OutputTokens != 3 {
			t.Fatalf("response %s %+v usage %+v", res.Status, res.IncompleteDetails, res.Usage)
		}
		_, final := streamResponse(t, ctx, c, p, seed)
		if final.Status != responses.ResponseStatusIncomplete || final.IncompleteDetails.Reason != "max_output_tokens" {
			t.Fatalf("streamed response %s %+v", final.Status, final.IncompleteDetails)
		}
	})

	t.Run("errors", func(t *testing.T) {
		status, body := post(t, tn.URL+"/v1/responses", testAPIKey, `{"model":"sim","input":"hi","previous_response_id":"resp_x"}`)
		if status != http.StatusBadRequest || !strings.Contains(string(body), `"param":"previous_response_id"`) {
			t.Errorf("previous_response_id: %d %s", status, body)
		}
		status, body = post(t, tn.URL+"/v1/responses", testAPIKey, `{"model":"nope","input":"hi"}`)
		if status != http.StatusNotFound || !strings.Contains(string(body), `"code":"model_not_found"`) {
			t.Errorf("unknown model: %d %s", status, body)
		}
	})
}

// TestResponsesBilling follows the money of /v1/responses on the in-process
// ledger: every response, streamed or not, has one receipt under its id
// with the usage the consumer saw, priced like chat, settled, and the
// consumer's deposit drops by exactly their sum. A consumer who cannot pay
// is refused on this endpoint as on the others, before any provider runs.
func TestResponsesBilling(t *testing.T) {
	tn := startNet(t, netOptions{gateway: gateway.Config{SettleInterval: 100 * time.Millisecond}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l := chainrpc.StateReader{Client: tn.Validator.Node.Client()}
	gw := tn.Gateway.Key.Public().Address()
	depBefore, err := l.Deposit(ctx, tn.Account, gw)
	if err != nil {
		t.Fatal(err)
	}
	c := openaiClient(tn)
	usage := map[string]responses.ResponseUsage{}
	for i := range 6 {
		params := responses.ResponseNewParams{Model: "sim", MaxOutputTokens: openai.Int(20),
			Input: responses.ResponseNewParamsInputUnion{OfString: openai.String(strings.Repeat("idle ", 10+i))}}
		var res responses.Response
		if i%2 == 0 {
			r, err := c.Responses.New(ctx, params)
			if err != nil {
				t.Fatal(err)
			}
			res = *r
		} else {
			_, res = streamResponse(t, ctx, c, params)
		}
		usage[res.ID] = res.Usage
	}
	tstest.WaitFor(t, 30*time.Second, "every receipt settled", func() bool {
		a := getAccount(t, tn, testAPIKey)
		return a.Receipts.Settled == 6 && a.Receipts.Pending == 0
	})
	var spent money.Amount
	for id, u := range usage {
		s, err := tn.Gateway.Store.Receipt(ctx, id)
		if err != nil {
			t.Fatalf("receipt of %s: %v", id, err)
		}
		r := s.Receipt
		amount, err := receipt.ComputeAmount(r.PromptTokens, r.CompletionTokens, r.PricePromptPerMTok, r.PriceCompletionPerMTok)
		if err != nil || r.Amount != amount || amount == 0 || int64(r.PromptTokens) != u.InputTokens || int64(r.CompletionTokens) != u.OutputTokens {
			t.Fatalf("receipt %+v for usage %+v (amount %d, %v)", r, u, amount, err)
		}
		st, err := l.Settlement(ctx, gw, id)
		if err != nil || st.Amount != r.Amount {
			t.Fatalf("settlement of %s: %+v, %v", id, st, err)
		}
		spent += r.Amount
	}
	depAfter, err := l.Deposit(ctx, tn.Account, gw)
	if err != nil {
		t.Fatal(err)
	}
	if depAfter.Locked != depBefore.Locked-spent {
		t.Errorf("consumer deposit %d → %d, want a drop of exactly %d", depBefore.Locked, depAfter.Locked, spent)
	}

	poor, err := keys.Generate()
	if err != nil {
		t.Fatal(err)
	}
	secret, _, err := tn.Gateway.Store.CreateAPIKey(ctx, "poor", poor.Public().Address())
	if err != nil {
		t.Fatal(err)
	}
	served := tn.Sim.Stats().Requests
	for _, stream := range []string{"false", "true"} {
		status, body := post(t, tn.URL+"/v1/responses", secret, `{"model":"sim","input":"hi","max_output_tokens":10,"stream":`+stream+`}`)
		if status != http.StatusPaymentRequired || !strings.Contains(string(body), `"code":"insufficient_funds"`) {
			t.Errorf("no funds, stream %s: %d %s", stream, status, body)
		}
	}
	if got := tn.Sim.Stats().Requests; got != served {
		t.Errorf("the simulator served %d requests for a consumer who cannot pay", got-served)
	}
}

// TestResponsesRealOllama: /v1/responses through the whole path to a real
// Ollama (the `tiny` test model): accepted, well-formed, counted and
// receipted, streamed and not.
func TestResponsesRealOllama(t *testing.T) {
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
	c := openaiClient(tn)
	params := responses.ResponseNewParams{Model: "tiny", Instructions: openai.String("Be brief."), MaxOutputTokens: openai.Int(12),
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Hello there")}}
	res, err := c.Responses.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	text, final := streamResponse(t, ctx, c, params)
	for _, r := range []responses.Response{*res, final} {
		if r.OutputText() == "" || r.Usage.OutputTokens == 0 || r.Usage.InputTokens == 0 {
			t.Fatalf("response %s %s %q usage %+v", r.ID, r.Status, r.OutputText(), r.Usage)
		}
		s, err := tn.Gateway.Store.Receipt(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Verify(); err != nil || int64(s.Receipt.CompletionTokens) != r.Usage.OutputTokens || int64(s.Receipt.PromptTokens) != r.Usage.InputTokens {
			t.Fatalf("receipt %+v for usage %+v: %v", s.Receipt, r.Usage, err)
		}
	}
	if text != final.OutputText() {
		t.Errorf("streamed %q, final %q", text, final.OutputText())
	}
	t.Logf("real Ollama via /v1/responses: %s %d output tokens, %q", final.Status, final.Usage.OutputTokens, text)
}

// TestResponsesPreviousResponseID: a response continues a kept one with
// previous_response_id — the provider sees the earlier turns (without the
// earlier instructions, as on OpenAI) and answers exactly as the
// simulator does for the whole conversation, billed for all of its
// prompt — streamed or not, in chains. A response sent with store: false
// is not kept, and another account cannot continue (or read) someone
// else's conversation: its id is as unknown as a made-up one, and no
// provider runs.
func TestResponsesPreviousResponseID(t *testing.T) {
	// Another consumer, funded like the dev account: refused for what it
	// asks, not for want of funds.
	other, err := keys.Generate()
	if err != nil {
		t.Fatal(err)
	}
	tn := startNet(t, netOptions{genesis: func(g *ledger.Genesis) {
		for _, a := range g.Accounts {
			if len(a.Approvals) > 0 && a.Roles == nil {
				g.Accounts = append(g.Accounts, ledger.GenesisAccount{Address: other.Public().Address(), Balance: a.Balance, Approvals: a.Approvals})
				return
			}
		}
	}})
	c := openaiClient(tn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	seed := option.WithJSONSet("seed", 7)
	turn := func(instructions, input, previous string) responses.ResponseNewParams {
		p := responses.ResponseNewParams{Model: "sim", MaxOutputTokens: openai.Int(20), Temperature: openai.Float(0),
			Input: responses.ResponseNewParamsInputUnion{OfString: openai.String(input)}}
		if instructions != "" {
			p.Instructions = openai.String(instructions)
		}
		if previous != "" {
			p.PreviousResponseID = openai.String(previous)
		}
		return p
	}
	user := func(s string) protocol.ChatMessage { return protocol.ChatMessage{Role: "user", Content: s} }
	assistant := func(s string) protocol.ChatMessage { return protocol.ChatMessage{Role: "assistant", Content: s} }
	expect := func(msgs ...protocol.ChatMessage) (string, backend.Result) {
		return direct(t, tn, protocol.Request{Kind: protocol.KindChat, Model: "sim", Options: greedy(20), Messages: msgs})
	}

	first, err := c.Responses.New(ctx, turn("Answer briefly.", "Name a color", ""), seed)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(first.RawJSON(), `"store":true`) {
		t.Errorf("a kept response does not say store: true: %s", first.RawJSON())
	}
	history := []protocol.ChatMessage{user("Name a color"), assistant(first.OutputText())}

	second, err := c.Responses.New(ctx, turn("", "And another one", first.ID), seed)
	if err != nil {
		t.Fatal(err)
	}
	want, wantRes := expect(append(history, user("And another one"))...)
	if second.OutputText() != want || second.PreviousResponseID != first.ID || second.Usage.InputTokens != int64(wantRes.Usage.PromptTokens) {
		t.Fatalf("second turn %q (previous %q, usage %+v), want %q (prompt %d tokens)", second.OutputText(), second.PreviousResponseID, second.Usage, want, wantRes.Usage.PromptTokens)
	}
	checkReceipt(t, tn, second.ID, wantRes.Usage)
	history = append(history, user("And another one"), assistant(second.OutputText()))

	text, third := streamResponse(t, ctx, c, turn("Be brief.", "A third?", second.ID), seed)
	want, wantRes = expect(append([]protocol.ChatMessage{{Role: "system", Content: "Be brief."}}, append(history, user("A third?"))...)...)
	if text != want || third.Usage.InputTokens != int64(wantRes.Usage.PromptTokens) {
		t.Fatalf("streamed third turn %q (usage %+v), want %q (prompt %d tokens)", text, third.Usage, want, wantRes.Usage.PromptTokens)
	}

	unkept := turn("", "Forget this", "")
	unkept.Store = openai.Bool(false)
	forgotten, err := c.Responses.New(ctx, unkept, seed)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(forgotten.RawJSON(), `"store":false`) {
		t.Errorf("an unkept response does not say store: false")
	}

	secret, _, err := tn.Gateway.Store.CreateAPIKey(ctx, "other", other.Public().Address())
	if err != nil {
		t.Fatal(err)
	}
	if status, body := post(t, tn.URL+"/v1/responses", secret, `{"model":"sim","input":"hi","max_output_tokens":2}`); status != http.StatusOK {
		t.Fatalf("the other consumer cannot be served at all: %d %s", status, body)
	}
	served := tn.Sim.Stats().Requests
	for _, tc := range []struct{ name, key, previous string }{
		{"store: false", testAPIKey, forgotten.ID},
		{"made up", testAPIKey, "resp_madeup"},
		{"another account's", secret, third.ID},
	} {
		status, body := post(t, tn.URL+"/v1/responses", tc.key, `{"model":"sim","input":"go on","previous_response_id":"`+tc.previous+`"}`)
		if status != http.StatusBadRequest || !strings.Contains(string(body), `"code":"previous_response_not_found"`) || strings.Contains(string(body), first.OutputText()) {
			t.Errorf("%s response: %d %s", tc.name, status, body)
		}
	}
	if got := tn.Sim.Stats().Requests; got != served {
		t.Errorf("the simulator served %d refused continuations", got-served)
	}
}
