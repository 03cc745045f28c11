package gateway

import (
	"strings"
	"testing"

	"github.com/idlegrid/idlegrid/internal/protocol"
)

func TestCheckUsage(t *testing.T) {
	chat := &protocol.Request{Kind: protocol.KindChat, Model: "m", Options: protocol.Options{MaxTokens: 100},
		Messages: []protocol.ChatMessage{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Hello there"}}}
	// 6+9 + 4+11 = 30 bytes, 2 messages: 30 + 16×4 + 64 = 158.
	raw := &protocol.Request{Kind: protocol.KindGenerate, Model: "m", Prompt: "abc", Raw: true}
	// Tools and tool calls are rendered into the prompt: 158 + (1+4+30+64)
	// for the tool + (2+1+2+16) for the call + 2 for the result's id.
	withTools := *chat
	withTools.Tools = []protocol.Tool{{Type: "function", Function: protocol.ToolFunction{Name: "f", Description: "desc", Parameters: []byte(`{"type":"object","properties":{}}`[:30])}}}
	withTools.Messages = append(append([]protocol.ChatMessage{}, chat.Messages...),
		protocol.ChatMessage{Role: "", ToolCalls: []protocol.ToolCall{{ID: "c1", Name: "f", Arguments: "{}"}}},
		protocol.ChatMessage{Role: "", ToolCallID: "c1"})
	toolLimit := uint64(158 + 16*2 + 99 + 21 + 2)
	for _, tc := range []struct {
		name    string
		req     *protocol.Request
		usage   protocol.Usage
		relayed int
		bad     string
	}{
		{"honest", chat, protocol.Usage{PromptTokens: 25, CompletionTokens: 12}, 60, ""},
		{"one token per byte plus the end", chat, protocol.Usage{PromptTokens: 158, CompletionTokens: 62}, 60, ""},
		{"more tokens than bytes", chat, protocol.Usage{PromptTokens: 25, CompletionTokens: 63}, 60, "for 60 bytes"},
		{"beyond max_tokens", chat, protocol.Usage{PromptTokens: 25, CompletionTokens: 101}, 5000, "max_tokens 100"},
		{"inflated prompt", chat, protocol.Usage{PromptTokens: 159, CompletionTokens: 1}, 10, "prompt"},
		{"empty answer, end token only", chat, protocol.Usage{PromptTokens: 20, CompletionTokens: 1}, 0, ""},
		{"tools in the prompt", &withTools, protocol.Usage{PromptTokens: toolLimit, CompletionTokens: 1}, 1, ""},
		{"tools in the prompt inflated", &withTools, protocol.Usage{PromptTokens: toolLimit + 1, CompletionTokens: 1}, 1, "prompt"},
		{"raw prompt", raw, protocol.Usage{PromptTokens: 5, CompletionTokens: 1}, 1, ""},
		{"raw prompt inflated", raw, protocol.Usage{PromptTokens: 6, CompletionTokens: 1}, 1, "prompt"},
	} {
		err := checkUsage(tc.req, tc.usage, tc.relayed)
		if (err != nil) != (tc.bad != "") || (err != nil && !strings.Contains(err.Error(), tc.bad)) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}
