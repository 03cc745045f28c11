package node_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	ollamaapi "github.com/ollama/ollama/api"
	"github.com/openai/openai-go/v3"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/gateway/api/apitypes"
	"github.com/idlegrid/idlegrid/internal/gateway/client"
	"github.com/idlegrid/idlegrid/internal/node"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// weatherParams is the parameters schema of the test tool.
const weatherParams = `{"type":"object","properties":{"city":{"type":"string"},"unit":{"type":"string","enum":["celsius","fahrenheit"]},"days":{"type":"integer","minimum":1,"maximum":7}},"required":["city","unit"]}`

func weatherTool() openai.ChatCompletionToolUnionParam {
	var params openai.FunctionParameters
	if err := json.Unmarshal([]byte(weatherParams), &params); err != nil {
		panic(err)
	}
	return openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{
		Name: "get_weather", Description: openai.String("Current weather in a city"), Parameters: params,
	})
}

// directAnswer asks the simulator itself (no gateway) for req: its text,
// tool calls and counts.
func directAnswer(t *testing.T, tn *testNet, req protocol.Request) (string, []protocol.ToolCall, backend.Result) {
	t.Helper()
	var text strings.Builder
	var calls []protocol.ToolCall
	res, err := tn.Backend.Backend.Generate(context.Background(), req, func(d backend.Delta) error {
		text.WriteString(d.Text)
		calls = append(calls, d.ToolCalls...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return text.String(), calls, res
}

// fetchReceipt returns the consumer's verified receipt for id.
func fetchReceipt(t *testing.T, tn *testNet, id string) receipt.Receipt {
	t.Helper()
	s, err := client.New(tn.URL, testAPIKey).Receipt(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(); err != nil {
		t.Fatalf("receipt does not verify: %v", err)
	}
	return s.Receipt
}

// answerHash is the response hash of an answer made of text then calls,
// delivered in one chunk each (protocol.HashChunk).
func answerHash(text string, calls []protocol.ToolCall) receipt.Hash {
	h := sha256.New()
	protocol.HashChunk(h, &protocol.Chunk{Delta: text})
	protocol.HashChunk(h, &protocol.Chunk{ToolCalls: calls})
	var out receipt.Hash
	h.Sum(out[:0])
	return out
}

// TestOpenAIToolRoundTrip: openai-go calls a function through the network
// on the simulator and sends its result back, streaming and not. The
// first turn is a call (finish_reason tool_calls, arguments that satisfy
// the schema, exactly the simulator's), the second a text answer; each
// turn is receipted with the counts the provider made and a response hash
// that covers the call.
func TestOpenAIToolRoundTrip(t *testing.T) {
	tn := startNet(t, netOptions{})
	c := openaiClient(tn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	schema, err := jsonschema.UnmarshalJSON(strings.NewReader(weatherParams))
	if err != nil {
		t.Fatal(err)
	}
	comp := jsonschema.NewCompiler()
	if err := comp.AddResource("weather.json", schema); err != nil {
		t.Fatal(err)
	}
	validator, err := comp.Compile("weather.json")
	if err != nil {
		t.Fatal(err)
	}
	tool := protocol.Tool{Type: "function", Function: protocol.ToolFunction{Name: "get_weather", Description: "Current weather in a city", Parameters: json.RawMessage(weatherParams)}}
	first := chatReq("What is the weather in Paris?", 40)
	first.Tools = []protocol.Tool{tool}
	_, wantCalls, wantRes := directAnswer(t, tn, first)
	if len(wantCalls) != 1 {
		t.Fatalf("the simulator made %d calls, want 1", len(wantCalls))
	}

	for _, streaming := range []bool{false, true} {
		name := map[bool]string{false: "non-streaming", true: "streaming"}[streaming]
		t.Run(name, func(t *testing.T) {
			params := openaiChatParams("sim", "What is the weather in Paris?", 40)
			params.Tools = []openai.ChatCompletionToolUnionParam{weatherTool()}
			msg, finish, id, usage := chatTurn(t, ctx, c, params, streaming)
			if finish != "tool_calls" || len(msg.ToolCalls) != 1 || msg.Content != "" {
				t.Fatalf("finish %q, message %+v; want one tool call", finish, msg)
			}
			call := msg.ToolCalls[0]
			if call.ID != wantCalls[0].ID || call.Type != "function" || call.Function.Name != "get_weather" || call.Function.Arguments != wantCalls[0].Arguments {
				t.Fatalf("call %+v, want %+v", call, wantCalls[0])
			}
			var args any
			if err := json.Unmarshal([]byte(call.Function.Arguments), &args); err != nil {
				t.Fatal(err)
			}
			if err := validator.Validate(args); err != nil {
				t.Fatalf("arguments %s do not satisfy the schema: %v", call.Function.Arguments, err)
			}
			if usage.CompletionTokens != int64(wantRes.Usage.CompletionTokens) || usage.PromptTokens != int64(wantRes.Usage.PromptTokens) {
				t.Errorf("usage %+v, provider counted %+v", usage, wantRes.Usage)
			}
			r := fetchReceipt(t, tn, id)
			if r.CompletionTokens != wantRes.Usage.CompletionTokens || r.ResponseHash != answerHash("", wantCalls) {
				t.Errorf("receipt %+v: want %d completion tokens and the hash of the call", r, wantRes.Usage.CompletionTokens)
			}

			// Second turn: the call and its result go back; the answer is text.
			params.Messages = append(params.Messages, msg.ToParam(), openai.ToolMessage(`{"temperature": 21}`, call.ID))
			second := first
			second.Messages = append(second.Messages,
				protocol.ChatMessage{Role: "assistant", ToolCalls: wantCalls},
				protocol.ChatMessage{Role: "tool", Content: `{"temperature": 21}`, ToolCallID: call.ID, ToolName: "get_weather"})
			wantText, noCalls, wantRes2 := directAnswer(t, tn, second)
			if len(noCalls) != 0 || wantText == "" {
				t.Fatalf("the simulator answered a tool result with %d calls and %q", len(noCalls), wantText)
			}
			msg2, finish2, id2, _ := chatTurn(t, ctx, c, params, streaming)
			if msg2.Content != wantText || len(msg2.ToolCalls) != 0 || finish2 != wantRes2.FinishReason {
				t.Fatalf("second turn %q (%d calls, %s), want %q (%s)", msg2.Content, len(msg2.ToolCalls), finish2, wantText, wantRes2.FinishReason)
			}
			if r := fetchReceipt(t, tn, id2); r.ResponseHash != receipt.Sum([]byte(wantText)) || r.CompletionTokens != wantRes2.Usage.CompletionTokens {
				t.Errorf("second receipt %+v", r)
			}
		})
	}
}

// chatTurn runs one chat completion, streamed (accumulated as openai-go's
// users do) or not.
func chatTurn(t *testing.T, ctx context.Context, c openai.Client, params openai.ChatCompletionNewParams, streaming bool) (openai.ChatCompletionMessage, string, string, openai.CompletionUsage) {
	t.Helper()
	if !streaming {
		resp, err := c.Chat.Completions.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Choices[0].Message, resp.Choices[0].FinishReason, resp.ID, resp.Usage
	}
	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := c.Chat.Completions.NewStreaming(ctx, params)
	var acc openai.ChatCompletionAccumulator
	for stream.Next() {
		acc.AddChunk(stream.Current())
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	return acc.Choices[0].Message, acc.Choices[0].FinishReason, acc.ID, acc.Usage
}

// TestOpenAIToolCallStream: the raw event sequence of a streamed call is
// OpenAI's: the call's index, id, type and name with empty arguments, then
// argument fragments under the same index, then finish_reason tool_calls.
func TestOpenAIToolCallStream(t *testing.T) {
	tn := startNet(t, netOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	body := `{"model":"sim","stream":true,"max_tokens":40,"messages":[{"role":"user","content":"weather?"}],
		"tools":[{"type":"function","function":{"name":"get_weather","parameters":` + weatherParams + `}}],"tool_choice":"required"}`
	req, _ := http.NewRequestWithContext(ctx, "POST", tn.URL+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// OpenAI clients join a call's fragments by "index" and append each
	// "arguments" piece, so both members are on the wire even when 0 or
	// "": decoded into apitypes, an absent one would read as its zero value.
	toolCallMembers := func(data string) error {
		var ev struct {
			Choices []struct {
				Delta struct {
					ToolCalls []map[string]json.RawMessage `json:"tool_calls"`
				} `json:"delta"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			return err
		}
		for _, ch := range ev.Choices {
			for _, tc := range ch.Delta.ToolCalls {
				var fn map[string]json.RawMessage
				if tc["index"] == nil || json.Unmarshal(tc["function"], &fn) != nil || fn["arguments"] == nil {
					return fmt.Errorf("tool call delta without index or arguments")
				}
			}
		}
		return nil
	}
	var events []apitypes.ChatChunk
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok || l == "[DONE]" {
			continue
		}
		var ev apitypes.ChatChunk
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("bad event %q: %v", l, err)
		}
		if err := toolCallMembers(l); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		events = append(events, ev)
	}
	var args strings.Builder
	var named, fragments int
	var finish string
	for _, ev := range events {
		for _, ch := range ev.Choices {
			for _, tc := range ch.Delta.ToolCalls {
				if tc.Index != 0 {
					t.Fatalf("tool call delta without index 0: %+v", tc)
				}
				if tc.ID != "" {
					named++
					if tc.Type != "function" || tc.Function.Name != "get_weather" || tc.Function.Arguments != "" {
						t.Fatalf("first delta of the call %+v", tc)
					}
					continue
				}
				if tc.Function.Name != "" || tc.Type != "" {
					t.Fatalf("fragment repeats the name or type: %+v", tc)
				}
				fragments++
				args.WriteString(tc.Function.Arguments)
			}
			if ch.FinishReason != nil {
				finish = *ch.FinishReason
			}
		}
	}
	if named != 1 || fragments < 2 || finish != "tool_calls" || !json.Valid([]byte(args.String())) {
		t.Fatalf("%d named deltas, %d fragments, arguments %q, finish %q", named, fragments, args.String(), finish)
	}
}

// TestToolsNeedTheCapability: a model whose providers lack the tools
// capability answers a request with tools with a 400 that says so, while
// the same request without tools (or with tool_choice none) is served;
// /v1/models and /api/show list each model's capabilities.
func TestToolsNeedTheCapability(t *testing.T) {
	cfg := fastSim()
	cfg.Models = append(cfg.Models, cfg.Models[0])
	cfg.Models[1].Name, cfg.Models[1].Weights, cfg.Models[1].Capabilities = "plain", 2, []string{protocol.CapCompletion}
	tn := startNet(t, netOptions{sim: cfg})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	post := func(path, body string) (int, string) {
		req, _ := http.NewRequestWithContext(ctx, "POST", tn.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testAPIKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			b.WriteString(sc.Text())
		}
		return resp.StatusCode, b.String()
	}
	tools := `"tools":[{"type":"function","function":{"name":"get_weather","parameters":` + weatherParams + `}}]`
	status, body := post("/v1/chat/completions", `{"model":"plain","max_tokens":5,"messages":[{"role":"user","content":"hi"}],`+tools+`}`)
	if status != http.StatusBadRequest || !strings.Contains(body, "no provider of plain supports tools") {
		t.Fatalf("tools on a model without them: %d %s", status, body)
	}
	if status, body := post("/v1/chat/completions", `{"model":"plain","max_tokens":5,"messages":[{"role":"user","content":"hi"}],`+tools+`,"tool_choice":"none"}`); status != http.StatusOK {
		t.Fatalf("tool_choice none: %d %s", status, body)
	}
	if status, body := post("/v1/chat/completions", `{"model":"sim","max_tokens":5,"messages":[{"role":"user","content":"hi"}],`+tools+`}`); status != http.StatusOK {
		t.Fatalf("tools on a model with them: %d %s", status, body)
	}

	models, err := client.New(tn.URL, testAPIKey).Models(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, m := range models {
		got[m.ID] = strings.Join(m.Capabilities, ",")
	}
	if got["sim"] != "completion,tools" || got["plain"] != "completion" {
		t.Errorf("/v1/models capabilities %v", got)
	}
	if status, body := post("/api/show", `{"model":"sim"}`); status != http.StatusOK || !strings.Contains(body, `"capabilities":["completion","tools"]`) {
		t.Errorf("/api/show: %d %s", status, body)
	}
}

// TestOllamaToolRoundTrip: the Ollama Go client calls a function through
// the network on the simulator, streaming and not: message.tool_calls with
// the arguments as an object (the simulator's exactly), then the result
// as a "tool" message and a text answer; each turn receipted.
func TestOllamaToolRoundTrip(t *testing.T) {
	tn := startNet(t, netOptions{})
	c := ollamaClient(t, tn.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var tool ollamaapi.Tool
	if err := json.Unmarshal([]byte(`{"type":"function","function":{"name":"get_weather","description":"Current weather in a city","parameters":`+weatherParams+`}}`), &tool); err != nil {
		t.Fatal(err)
	}
	// What the gateway passes on: the client's own encoding of the tool.
	toolJSON, _ := json.Marshal(tool)
	var ptool protocol.Tool
	if err := json.Unmarshal(toolJSON, &ptool); err != nil {
		t.Fatal(err)
	}
	first := chatReq("What is the weather in Paris?", 40)
	first.Options.Seed, first.Options.Temperature = nil, nil
	first.Tools = []protocol.Tool{ptool}
	_, wantCalls, wantRes := directAnswer(t, tn, first)
	if len(wantCalls) != 1 {
		t.Fatalf("the simulator made %d calls", len(wantCalls))
	}
	for _, stream := range []bool{false, true} {
		msgs := []ollamaapi.Message{{Role: "user", Content: "What is the weather in Paris?"}}
		var calls []ollamaapi.ToolCall
		var last ollamaapi.ChatResponse
		err := c.Chat(ctx, &ollamaapi.ChatRequest{Model: "sim", Stream: &stream, Messages: msgs, Tools: []ollamaapi.Tool{tool},
			Options: map[string]any{"num_predict": 40}}, func(r ollamaapi.ChatResponse) error {
			calls = append(calls, r.Message.ToolCalls...)
			last = r
			return nil
		})
		if err != nil {
			t.Fatalf("stream=%v: %v", stream, err)
		}
		if len(calls) != 1 || calls[0].Function.Name != "get_weather" || calls[0].Function.Arguments.String() != wantCalls[0].Arguments ||
			last.EvalCount != int(wantRes.Usage.CompletionTokens) || last.DoneReason != "stop" {
			t.Fatalf("stream=%v: calls %+v, last %+v; want %+v, %d tokens", stream, calls, last, wantCalls, wantRes.Usage.CompletionTokens)
		}
		msgs = append(msgs, ollamaapi.Message{Role: "assistant", ToolCalls: calls}, ollamaapi.Message{Role: "tool", Content: `{"temperature": 21}`})
		var text strings.Builder
		calls = nil
		err = c.Chat(ctx, &ollamaapi.ChatRequest{Model: "sim", Stream: &stream, Messages: msgs, Tools: []ollamaapi.Tool{tool},
			Options: map[string]any{"num_predict": 40}}, func(r ollamaapi.ChatResponse) error {
			text.WriteString(r.Message.Content)
			calls = append(calls, r.Message.ToolCalls...)
			return nil
		})
		if err != nil || text.Len() == 0 || len(calls) != 0 {
			t.Fatalf("stream=%v: second turn %q with %d calls, %v", stream, text.String(), len(calls), err)
		}
	}
}

// TestRealOllamaTools runs tools and structured output against a real
// Ollama (tiny-tools declares tools in its template; tiny does not). The
// random-weight models seldom produce a parseable call, so the checks are
// plumbing: accepted, well-formed, counted and receipted; tools on tiny
// are a 400 naming the capability; structured output that ends by itself
// is JSON (Ollama constrains sampling to it).
func TestRealOllamaTools(t *testing.T) {
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
	var caps []string
	for _, m := range tn.Gateway.Hub.Snapshot()[0].Capabilities.Models {
		if m.Name == "tiny-tools:latest" {
			caps = m.Capabilities
		}
	}
	if !slices.Contains(caps, protocol.CapTools) {
		t.Skipf("the Ollama at OLLAMA_URL has no tiny-tools model with the tools capability (%v)", caps)
	}
	c := openaiClient(tn)
	for _, streaming := range []bool{false, true} {
		params := openaiChatParams("tiny-tools", "What is the weather in Paris?", 24)
		params.Tools = []openai.ChatCompletionToolUnionParam{weatherTool()}
		msg, finish, id, usage := chatTurn(t, ctx, c, params, streaming)
		switch finish {
		case "stop", "length", "tool_calls":
		default:
			t.Fatalf("finish_reason %q", finish)
		}
		for _, call := range msg.ToolCalls {
			if call.ID == "" || call.Function.Name == "" || !json.Valid([]byte(call.Function.Arguments)) {
				t.Errorf("malformed call %+v", call)
			}
		}
		s, err := tn.Gateway.Store.Receipt(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Verify(); err != nil || s.Receipt.CompletionTokens == 0 || int64(s.Receipt.CompletionTokens) != usage.CompletionTokens {
			t.Fatalf("receipt %+v (usage %+v): %v", s.Receipt, usage, err)
		}
		t.Logf("streaming=%v: %s, %d calls, %d tokens, %q", streaming, finish, len(msg.ToolCalls), usage.CompletionTokens, msg.Content)
	}

	params := openaiChatParams("tiny", "What is the weather in Paris?", 8)
	params.Tools = []openai.ChatCompletionToolUnionParam{weatherTool()}
	_, err = c.Chat.Completions.New(ctx, params)
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest || !strings.Contains(apiErr.Message, "no provider of tiny supports tools") {
		t.Fatalf("tools on tiny: %v", err)
	}

	oc := ollamaClient(t, tn.URL)
	var tool ollamaapi.Tool
	if err := json.Unmarshal([]byte(`{"type":"function","function":{"name":"get_weather","parameters":`+weatherParams+`}}`), &tool); err != nil {
		t.Fatal(err)
	}
	var last ollamaapi.ChatResponse
	err = oc.Chat(ctx, &ollamaapi.ChatRequest{Model: "tiny-tools", Tools: []ollamaapi.Tool{tool}, Options: map[string]any{"num_predict": 16},
		Messages: []ollamaapi.Message{{Role: "user", Content: "weather?"}}}, func(r ollamaapi.ChatResponse) error { last = r; return nil })
	if err != nil || !last.Done || last.EvalCount == 0 {
		t.Fatalf("Ollama client with tools: %+v, %v", last, err)
	}

	validator := compileSchema(t, `{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"]}`)
	for _, format := range []string{`"json"`, `{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"]}`} {
		var text strings.Builder
		var done ollamaapi.GenerateResponse
		err := oc.Generate(ctx, &ollamaapi.GenerateRequest{Model: "tiny", Prompt: "a number", Format: json.RawMessage(format),
			Options: map[string]any{"num_predict": 48, "temperature": 0}}, func(r ollamaapi.GenerateResponse) error {
			text.WriteString(r.Response)
			done = r
			return nil
		})
		if err != nil || done.EvalCount == 0 {
			t.Fatalf("format %s: %+v, %v", format, done, err)
		}
		if done.DoneReason == "stop" {
			var v any
			if err := json.Unmarshal([]byte(text.String()), &v); err != nil {
				t.Errorf("format %s ended by itself with %q: %v", format, text.String(), err)
			} else if format != `"json"` && validator.Validate(v) != nil {
				t.Errorf("format %s: %q does not conform", format, text.String())
			}
		}
		t.Logf("format %s: %s, %q", format, done.DoneReason, text.String())
	}
}

// unaskedCalls is a provider's backend that answers every request with a
// tool call, tools offered or not, claiming many tokens for it.
type unaskedCalls struct{ backend.Backend }

func (b unaskedCalls) Generate(ctx context.Context, req protocol.Request, emit func(backend.Delta) error) (backend.Result, error) {
	call := protocol.ToolCall{Name: "transfer_funds", Arguments: `{"to":"attacker"}`}
	if err := emit(backend.Delta{Tokens: 1, ToolCalls: []protocol.ToolCall{call}}); err != nil {
		return backend.Result{}, err
	}
	return backend.Result{Usage: protocol.Usage{PromptTokens: 5, CompletionTokens: 1}, FinishReason: "stop"}, nil
}

// TestUnaskedToolCalls is the attack of a provider that sends tool calls
// for a request that offered no tools (a call the consumer's agent might
// run, billed as tokens it did not ask for): the gateway cancels the job,
// stores no receipt and tells the consumer.
func TestUnaskedToolCalls(t *testing.T) {
	s, err := sim.New(fastSim())
	if err != nil {
		t.Fatal(err)
	}
	tn := startNet(t, netOptions{backend: &node.LocalBackend{Backend: unaskedCalls{Backend: s}, Description: "unasked calls"}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	status, b := post(t, tn.URL+"/v1/chat/completions", testAPIKey, `{"model":"sim","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}`)
	if e := decodeError(t, b); status/100 != 5 || !strings.Contains(e.Message, "offered no tools") {
		t.Fatalf("unasked tool calls: %d %s", status, b)
	}
	if n, _, err := tn.Gateway.Store.ReceiptStats(ctx, tn.Account); err != nil || n != 0 {
		t.Errorf("%d receipts stored for unasked tool calls (%v)", n, err)
	}
}
