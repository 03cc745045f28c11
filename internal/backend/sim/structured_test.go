package sim

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// collect runs req on a default simulator and returns its text and calls.
func collect(t *testing.T, s *Sim, req protocol.Request) (string, []protocol.ToolCall, backend.Result) {
	t.Helper()
	var text strings.Builder
	var calls []protocol.ToolCall
	res, err := s.Generate(context.Background(), req, func(d backend.Delta) error {
		text.WriteString(d.Text)
		calls = append(calls, d.ToolCalls...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return text.String(), calls, res
}

// TestStructuredAnswers: the simulator's tool calls and JSON answers
// follow its documented rules and are the same on every run: auto calls
// the first tool, required with a name calls that one, none and a tool
// result answer in text, a schema format answers conforming JSON, and
// another model (weights) answers differently.
func TestStructuredAnswers(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Models[0].FirstToken, cfg.Models[0].TokensPerSecond = 0, 0
	cfg.Models = append(cfg.Models, cfg.Models[0])
	cfg.Models[1].Name, cfg.Models[1].Weights = "other", 2
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	params := json.RawMessage(`{"type":"object","properties":{"city":{"type":"string"},"n":{"type":"integer","minimum":3,"maximum":3},"unit":{"enum":["c","f"]},"opt":{"type":"boolean"}},"required":["city","n","unit"]}`)
	tools := []protocol.Tool{
		{Type: "function", Function: protocol.ToolFunction{Name: "first", Parameters: params}},
		{Type: "function", Function: protocol.ToolFunction{Name: "second"}},
	}
	user := []protocol.ChatMessage{{Role: "user", Content: "weather?"}}
	req := protocol.Request{Kind: protocol.KindChat, Model: "sim", Messages: user, Tools: tools}

	text, calls, res := collect(t, s, req)
	if text != "" || len(calls) != 1 || calls[0].Name != "first" || res.FinishReason != "stop" || res.Usage.CompletionTokens == 0 {
		t.Fatalf("auto: %q %+v %+v", text, calls, res)
	}
	var args map[string]any
	if err := json.Unmarshal([]byte(calls[0].Arguments), &args); err != nil {
		t.Fatal(err)
	}
	if _, ok := args["city"].(string); !ok || args["n"] != 3.0 || (args["unit"] != "c" && args["unit"] != "f") || len(args) != 3 {
		t.Errorf("arguments %s do not follow the schema", calls[0].Arguments)
	}
	if _, again, _ := collect(t, s, req); again[0] != calls[0] {
		t.Errorf("a second run called %+v, the first %+v", again[0], calls[0])
	}
	other := req
	other.Model = "other"
	if _, o, _ := collect(t, s, other); o[0].Arguments == calls[0].Arguments {
		t.Errorf("other weights gave the same arguments %s", o[0].Arguments)
	}

	named := req
	named.ToolChoice, named.ToolChoiceFunction = protocol.ToolChoiceRequired, "second"
	if _, c, _ := collect(t, s, named); len(c) != 1 || c[0].Name != "second" || c[0].Arguments != "{}" {
		t.Errorf("named: %+v", c)
	}
	none := req
	none.ToolChoice = protocol.ToolChoiceNone
	if text, c, _ := collect(t, s, none); len(c) != 0 || text == "" {
		t.Errorf("none: %q %+v", text, c)
	}
	answered := req
	answered.Messages = append(append([]protocol.ChatMessage{}, user...),
		protocol.ChatMessage{Role: "assistant", ToolCalls: calls}, protocol.ChatMessage{Role: "tool", Content: "sunny", ToolCallID: calls[0].ID})
	if text, c, _ := collect(t, s, answered); len(c) != 0 || text == "" {
		t.Errorf("after a tool result: %q %+v", text, c)
	}
	short := req
	short.Options.MaxTokens = 3
	if text, c, res := collect(t, s, short); len(c) != 0 || res.FinishReason != "length" || res.Usage.CompletionTokens != 3 || text == "" {
		t.Errorf("a call cut by max_tokens: %q %+v %+v", text, c, res)
	}

	format := protocol.Request{Kind: protocol.KindGenerate, Model: "sim", Prompt: "x", Format: json.RawMessage(`"json"`)}
	if text, _, _ := collect(t, s, format); !json.Valid([]byte(text)) || !strings.HasPrefix(text, `{"answer":"`) {
		t.Errorf("format json: %q", text)
	}
	format.Format = params
	text, _, _ = collect(t, s, format)
	if err := json.Unmarshal([]byte(text), &args); err != nil || len(args) != 3 {
		t.Errorf("format schema: %q %v", text, err)
	}
	t.Logf("call %s%s; schema answer %s", calls[0].Name, calls[0].Arguments, text)

	plain, err := New(Config{Models: []ModelConfig{{Name: "plain", Weights: 1, Capabilities: []string{protocol.CapCompletion}}}})
	if err != nil {
		t.Fatal(err)
	}
	req.Model = "plain"
	if _, err := plain.Generate(context.Background(), req, func(backend.Delta) error { return nil }); err == nil || !strings.Contains(err.Error(), "does not support tools") {
		t.Errorf("tools on a model without them: %v", err)
	}
}
