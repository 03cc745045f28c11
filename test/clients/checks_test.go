package clients_test

// The judges of the checks' reports: exact answers on the simulator, and
// on a real Ollama what a random-weight model can show.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// simOracle answers requests the way `up --backend sim` does.
type simOracle struct {
	sim *sim.Sim
}

func newSimOracle(t *testing.T) *simOracle {
	s, err := sim.New(sim.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	return &simOracle{sim: s}
}

// answer is the simulator's greedy answer to what a chat check sent.
func (o *simOracle) answer(t *testing.T, r *result) (string, backend.Result) {
	t.Helper()
	zero := 0.0
	req := protocol.Request{Kind: protocol.KindChat, Model: "sim", Messages: r.Messages, Options: protocol.Options{MaxTokens: r.MaxTokens, Temperature: &zero}}
	if len(r.Messages) == 0 {
		req.Kind, req.Prompt = protocol.KindGenerate, r.Prompt
	}
	if r.MaxTokens == 0 || len(r.Messages) == 0 && r.Prompt == "" {
		t.Fatalf("the check reported neither its messages nor its max tokens: %+v", r)
	}
	var text strings.Builder
	res, err := o.sim.Generate(context.Background(), req, func(d backend.Delta) error {
		text.WriteString(d.Text)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return text.String(), res
}

// checkSim checks a line of the run on the simulator: exact answers, and
// a signed receipt for each.
func checkSim(t *testing.T, net *network, o *simOracle, l line) {
	r := l.Result
	switch l.Feature {
	case "chat", "stream", "keyless":
		if l.Check == "list-show" {
			checkListShow(t, r, "sim")
			return
		}
		checkExactText(t, net, o, r)
		if r.UsageChunkChoices != nil && *r.UsageChunkChoices != 0 {
			t.Errorf("the usage chunk has %d choices; OpenAI sends it with none", *r.UsageChunkChoices)
		}
	case "errors":
		checkError(t, l)
	case "tools":
		checkTools(t, net, l, true)
	case "structured":
		checkStructured(t, net, r, true)
	case "embeddings":
		checkEmbeddings(t, net, r)
	case "responses":
		checkResponses(t, net, l, true, func(r *result) string { return checkExactText(t, net, o, r) })
	default:
		t.Fatalf("no checks for feature %q", l.Feature)
	}
}

// checkOllama checks a line of the run on a real Ollama with random
// weights: accepted, well formed, counted and receipted.
func checkOllama(t *testing.T, net *network, l line) {
	r := l.Result
	switch l.Feature {
	case "chat", "stream", "keyless":
		if l.Check == "list-show" {
			checkListShow(t, r, "tiny")
			return
		}
		checkCountedText(t, net, r)
	case "errors":
		checkError(t, l)
	case "tools":
		checkTools(t, net, l, false)
	case "structured":
		checkStructured(t, net, r, false)
	case "embeddings":
		checkEmbeddings(t, net, r)
	case "responses":
		checkResponses(t, net, l, false, func(r *result) string { checkCountedText(t, net, r); return "" })
	default:
		t.Fatalf("no checks for feature %q", l.Feature)
	}
}

// checkExactText: the client got exactly the simulator's answer, counted
// as the simulator counts it, under a receipt for that very text. It
// returns the simulator's finish reason.
func checkExactText(t *testing.T, net *network, o *simOracle, r *result) string {
	t.Helper()
	text, res := o.answer(t, r)
	if r.Text == nil || *r.Text != text {
		t.Errorf("text %q, want the simulator's %q", deref(r.Text), text)
	}
	if r.FinishReason != "" && r.FinishReason != res.FinishReason {
		t.Errorf("finish reason %q, want %q", r.FinishReason, res.FinishReason)
	}
	want := usage{Prompt: res.Usage.PromptTokens, Completion: res.Usage.CompletionTokens, Total: res.Usage.PromptTokens + res.Usage.CompletionTokens}
	if r.Usage == nil {
		t.Errorf("no usage; want %+v", want)
	} else if got := *r.Usage; got.Prompt != want.Prompt || got.Completion != want.Completion || got.Total != 0 && got.Total != want.Total {
		t.Errorf("usage %+v, want %+v", got, want)
	}
	rc := checkReceipt(t, net, r.ID, res.Usage.PromptTokens, res.Usage.CompletionTokens)
	if rc != nil && rc.Receipt.ResponseHash != receipt.Sum([]byte(text)) {
		t.Errorf("receipt %s hashes another response than the text the client got", r.ID)
	}
	return res.FinishReason
}

// checkCountedText: an answer of a random-weight model, counted within
// the limit and receipted with the counts the client saw.
func checkCountedText(t *testing.T, net *network, r *result) {
	t.Helper()
	if r.Text == nil {
		t.Fatal("no text")
	}
	if r.Usage == nil || r.Usage.Prompt == 0 || r.Usage.Completion == 0 || r.Usage.Completion > uint64(r.MaxTokens) {
		t.Fatalf("usage %+v: want prompt tokens, and 1 to %d completion tokens", r.Usage, r.MaxTokens)
	}
	if r.FinishReason != "" && r.FinishReason != "stop" && r.FinishReason != "length" {
		t.Errorf("finish reason %q", r.FinishReason)
	}
	rc := checkReceipt(t, net, r.ID, r.Usage.Prompt, r.Usage.Completion)
	if rc != nil && rc.Receipt.ResponseHash != receipt.Sum([]byte(*r.Text)) {
		t.Errorf("receipt %s hashes another response than the text the client got", r.ID)
	}
}

// checkReceipt fetches the receipt of request id and checks its
// signatures and counts; nil when it failed.
func checkReceipt(t *testing.T, net *network, id string, prompt, completion uint64) *receipt.Signed {
	t.Helper()
	if id == "" {
		t.Error("the client exposed no request id to look the receipt up by")
		return nil
	}
	req, _ := http.NewRequest("GET", net.url+"/v1/receipts/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /v1/receipts/%s: %d %s", id, resp.StatusCode, body)
		return nil
	}
	s, err := receipt.ParseSigned(body)
	if err == nil {
		err = s.Verify()
	}
	if err != nil {
		t.Errorf("receipt %s: %v", id, err)
		return nil
	}
	if s.Receipt.PromptTokens != prompt || s.Receipt.CompletionTokens != completion {
		t.Errorf("receipt %s bills %d prompt + %d completion tokens; the client was told %d + %d", id, s.Receipt.PromptTokens, s.Receipt.CompletionTokens, prompt, completion)
	}
	// Billed at its prices (a few prompt tokens may round down to nothing).
	if want, err := receipt.ComputeAmount(s.Receipt.PromptTokens, s.Receipt.CompletionTokens, s.Receipt.PricePromptPerMTok, s.Receipt.PriceCompletionPerMTok); err != nil || s.Receipt.Amount != want {
		t.Errorf("receipt %s charges %v; its counts at its prices make %v (%v)", id, s.Receipt.Amount, want, err)
	}
	return &s
}

// errorClasses are the error types each client must throw, by check.
var errorClasses = map[string]map[string]string{
	"openai":    {"bad-model": "NotFoundError", "bad-key": "AuthenticationError"},
	"ollama":    {"bad-model": "ResponseError", "bad-key": "ResponseError"},
	"vercel":    {"bad-model": "APICallError", "bad-key": "APICallError"},
	"langchain": {"bad-model": "NotFoundError", "bad-key": "AuthenticationError", "ChatOllama-bad-model": "ResponseError"},
}

// checkError: a bad model is a 404 that names it, a bad key a 401, each as
// the client's own error type with the gateway's message.
func checkError(t *testing.T, l line) {
	t.Helper()
	r := l.Result
	if !r.Thrown || r.Error == nil {
		t.Fatalf("the client did not fail; it got %s", r.Got)
	}
	e := r.Error
	if want := errorClasses[l.Client][l.Check]; e.Name != want {
		t.Errorf("error type %s, want %s", e.Name, want)
	}
	status, message := http.StatusNotFound, `"no-such-model" does not exist`
	if strings.HasSuffix(l.Check, "bad-key") {
		status, message = http.StatusUnauthorized, "Incorrect API key"
	}
	if e.HTTPStatus() != status || !strings.Contains(e.Message, message) {
		t.Errorf("got %s; want HTTP %d with %q", e, status, message)
	}
}

// checkTools: the first turn calls get_weather with a city, streamed or
// not; after the tool's result the model answers. On the simulator every
// first turn must call the tool (the scripts require one).
func checkTools(t *testing.T, net *network, l line, sim bool) {
	t.Helper()
	r := l.Result
	switch {
	case r.First != nil: // a round trip by hand (OpenAI, ollama-js, LangChain)
		checkToolCalls(t, net, r.First, sim, l.Client)
		checkAnswer(t, net, r.Second)
	case r.Steps != nil: // Vercel's generateText with stopWhen
		if sim && len(r.Steps) < 2 {
			t.Fatalf("%d steps; want a tool call, then an answer", len(r.Steps))
		}
		checkToolCalls(t, net, &r.Steps[0], sim, l.Client)
		if sim && len(r.Steps[0].ToolResults) != len(r.Steps[0].ToolCalls) {
			t.Errorf("%d tool results for %d calls", len(r.Steps[0].ToolResults), len(r.Steps[0].ToolCalls))
		}
		checkAnswer(t, net, &r.Steps[len(r.Steps)-1])
	default:
		checkToolCalls(t, net, r, sim, l.Client)
		if sim && r.Unstreamed != nil && fmt.Sprint(calls(r.ToolCalls)) != fmt.Sprint(calls(r.Unstreamed.ToolCalls)) {
			t.Errorf("streamed calls %v, unstreamed %v: the simulator is deterministic", calls(r.ToolCalls), calls(r.Unstreamed.ToolCalls))
		}
	}
}

// calls are the names and arguments of tool calls, without their ids.
func calls(cs []toolCall) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name+string(c.Arguments))
	}
	return out
}

// checkToolCalls checks a turn that must call the weather tool.
func checkToolCalls(t *testing.T, net *network, r *result, sim bool, client string) {
	t.Helper()
	if len(r.ToolCalls) == 0 {
		if sim {
			t.Fatalf("no tool call (finish reason %q, text %q)", r.FinishReason, deref(r.Text))
		}
		t.Logf("the random-weight model called no tool (text %q)", deref(r.Text))
	}
	for i, c := range r.ToolCalls {
		if c.Name != "get_weather" {
			t.Errorf("call %d is to %q, want get_weather", i, c.Name)
		}
		if client != "ollama" && c.ID == "" {
			t.Errorf("call %d has no id", i)
		}
		if c.Type != "" && c.Type != "function" {
			t.Errorf("call %d has type %q", i, c.Type)
		}
		args := c.Arguments
		var s string
		if json.Unmarshal(args, &s) == nil { // OpenAI: a JSON string of JSON
			args = json.RawMessage(s)
		}
		var weather struct {
			City *string `json:"city"`
		}
		if err := json.Unmarshal(args, &weather); err != nil || sim && weather.City == nil {
			t.Errorf("call %d's arguments %s are not {\"city\": string}: %v", i, c.Arguments, err)
		}
	}
	if len(r.ToolCalls) > 0 {
		switch r.FinishReason {
		case "tool_calls", "tool-calls", "stop", "":
		default:
			t.Errorf("finish reason %q after a tool call", r.FinishReason)
		}
		if client == "openai" && r.FinishReason != "tool_calls" {
			t.Errorf("finish reason %q, want tool_calls", r.FinishReason)
		}
	}
	if r.ID != "" {
		p, c := receiptTokens(t, net, r.ID)
		checkReceipt(t, net, r.ID, p, c)
	} else if client != "langchain" {
		t.Error("no request id for the tool call's receipt")
	}
}

// receiptTokens are a receipt's own counts, for answers whose counts the
// client does not show; checkReceipt then checks only its signatures.
func receiptTokens(t *testing.T, net *network, id string) (uint64, uint64) {
	t.Helper()
	req, _ := http.NewRequest("GET", net.url+"/v1/receipts/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0
	}
	defer resp.Body.Close()
	var s receipt.Signed
	json.NewDecoder(resp.Body).Decode(&s)
	return s.Receipt.PromptTokens, s.Receipt.CompletionTokens
}

// checkAnswer checks the turn after a tool result: a text answer, counted
// and receipted.
func checkAnswer(t *testing.T, net *network, r *result) {
	t.Helper()
	if r == nil {
		t.Fatal("no second turn")
	}
	if r.Text == nil {
		t.Errorf("the turn after the tool result has no text (tool calls %+v)", r.ToolCalls)
	}
	if r.Usage != nil && (r.Usage.Prompt == 0 || r.Usage.Completion == 0) {
		t.Errorf("usage %+v", r.Usage)
	}
	if r.ID != "" && r.Usage != nil {
		checkReceipt(t, net, r.ID, r.Usage.Prompt, r.Usage.Completion)
	}
}

// checkStructured: the answer is JSON that fits the person schema. A
// random-weight model may run out of tokens inside the JSON; on Ollama the
// request must only be accepted and receipted.
func checkStructured(t *testing.T, net *network, r *result, sim bool) {
	t.Helper()
	if r.Valid == nil && r.JSON == nil {
		t.Fatalf("the check reported neither validity nor JSON: %+v", r)
	}
	ok := r.Valid != nil && *r.Valid || r.Valid == nil && *r.JSON
	if sim && !ok {
		t.Errorf("the answer does not fit the schema (%s): %s%s", r.Problem, deref(r.Text), r.Object)
	}
	if !sim && !ok {
		t.Logf("the random-weight model's answer does not fit the schema (%s)", r.Problem)
	}
	if r.ID != "" {
		p, c := receiptTokens(t, net, r.ID)
		checkReceipt(t, net, r.ID, p, c)
		if r.Usage != nil && (r.Usage.Prompt != p || r.Usage.Completion != c) {
			t.Errorf("usage %+v, the receipt bills %d + %d", r.Usage, p, c)
		}
	}
}

// checkEmbeddings: one finite vector per input, all of one size, different
// inputs giving different vectors and the same input the same vector;
// the receipt bills the input's tokens and no completion.
func checkEmbeddings(t *testing.T, net *network, r *result) {
	t.Helper()
	if r.Count == 0 || len(r.Dims) != r.Count {
		t.Fatalf("%d vectors (dims %v)", r.Count, r.Dims)
	}
	for _, d := range r.Dims {
		if d == 0 || d != r.Dims[0] {
			t.Errorf("vector sizes %v", r.Dims)
			break
		}
	}
	if !r.Finite {
		t.Error("a vector has a non-finite value")
	}
	if len(r.Head) >= 2 && fmt.Sprint(r.Head[0]) == fmt.Sprint(r.Head[1]) {
		t.Errorf("two different inputs start with the same values %v", r.Head[0])
	}
	if r.RepeatCosine != nil && *r.RepeatCosine < 0.999 {
		t.Errorf("the same input embedded twice gave vectors of cosine similarity %g", *r.RepeatCosine)
	}
	if r.ID == "" {
		t.Fatal("no request id (X-Request-Id) to look the receipt up by")
	}
	p, c := receiptTokens(t, net, r.ID)
	if p == 0 || c != 0 {
		t.Errorf("receipt %s bills %d prompt + %d completion tokens; an embedding bills its input only", r.ID, p, c)
	}
	if r.Usage != nil && r.Usage.Prompt != p {
		t.Errorf("the client was told %d input tokens; receipt %s bills %d", r.Usage.Prompt, r.ID, p)
	}
	checkReceipt(t, net, r.ID, p, c)
}

// checkResponses: the Responses API answers with the same text as chat
// (text checks it and returns the finish reason when it knows it), streams
// the official event sequence, ending with response.completed, or
// response.incomplete when max_output_tokens cut the answer, and calls
// functions.
func checkResponses(t *testing.T, net *network, l line, sim bool, text func(*result) string) {
	t.Helper()
	r := l.Result
	if l.Check == "function-call" {
		// On the simulator the call ends the response; a random-weight
		// model may instead write text until max_output_tokens.
		if r.Status != "completed" && (sim || r.Status != "incomplete") {
			t.Errorf("status %q, want completed", r.Status)
		}
		checkToolCalls(t, net, r, sim, "responses")
		return
	}
	if r.Status != "completed" && r.Status != "incomplete" {
		t.Errorf("status %q, want completed or incomplete", r.Status)
	}
	if r.Events != nil {
		if len(r.Events) < 3 || r.Events[0] != "response.created" || r.Events[len(r.Events)-1] != "response."+r.Status {
			t.Errorf("events %v: want response.created first and response.%s last", r.Events, r.Status)
		}
		if !slices.Contains(r.Events, "response.output_text.delta") {
			t.Errorf("events %v: no response.output_text.delta", r.Events)
		}
		if r.FinalText == nil || r.Text == nil || *r.FinalText != *r.Text {
			t.Errorf("the deltas give %q, response.%s holds %q", deref(r.Text), r.Status, deref(r.FinalText))
		}
	}
	finish := text(r)
	if want := map[string]string{"stop": "completed", "length": "incomplete"}[finish]; want != "" && r.Status != want {
		t.Errorf("status %q, want %q for an answer that ended with %q", r.Status, want, finish)
	}
}

// checkListShow: ollama-js lists the model and shows it.
func checkListShow(t *testing.T, r *result, model string) {
	t.Helper()
	if !slices.Contains(r.Models, model) && !slices.Contains(r.Models, model+":latest") {
		t.Errorf("list %v has no %s", r.Models, model)
	}
}

func deref(s *string) string {
	if s == nil {
		return "<none>"
	}
	return *s
}
