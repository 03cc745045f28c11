package gateway

import (
	"fmt"
	"math"

	"github.com/idlegrid/idlegrid/internal/protocol"
)

// The gateway meters what it relays, independently of the counts a provider
// claims, and does not countersign a receipt whose counts it can prove
// wrong. It has no tokenizer for the provider's model, so it checks bounds
// that hold for every tokenizer, exactly: a token decodes to at least one
// byte of text (byte-fallback tokenizers emit a lone byte as one token), so
// a completion of n bytes holds at most n tokens plus the end-of-sequence
// token, and never more than the request's max_tokens; a prompt holds at
// most its bytes plus what a chat template adds per message. Subtler
// inflation within these bounds is for verifiers, who re-tokenize sampled
// answers with the reference model's tokenizer.
const (
	// templateTokensPerMessage and templateTokens bound what a chat
	// template adds: role markers and separators per message, and a
	// preamble (Llama 3's is about 30 tokens).
	templateTokensPerMessage = 16
	templateTokens           = 64
	// endTokens are tokens that decode to no text (end of sequence).
	endTokens = 2
	// templateTokensPerTool bounds what a template adds around each tool
	// it renders: the JSON keys and punctuation of its function object
	// (about 40 bytes compact) and the instructions some templates repeat.
	templateTokensPerTool = 64
	// imageTokens bounds what one image adds to a vision model's prompt
	// (LLaVA: 576; Gemma 3: 256; Qwen2.5-VL: up to a few thousand for a
	// large image).
	imageTokens = 4096
	// embedTokensPerInput bounds the special tokens an embedding model
	// adds to each input (BOS/EOS, BERT's [CLS] and [SEP]).
	embedTokensPerInput = 4
)

// usageLimit is the most usage a provider may claim for req before its
// answer is known: the prompt at most promptLimit tokens, the completion
// at most max_tokens (unbounded, math.MaxUint64, when req sets none). It is
// the one rule behind both checkUsage, which refuses any claim above it, and
// worstCost, which reserves its price at admission: so the largest claim a
// gateway countersigns never costs more than what it reserved.
func usageLimit(req *protocol.Request) (prompt, completion uint64) {
	if req.Kind == protocol.KindEmbed {
		return uint64(promptLimit(req)), 0 // embeddings generate nothing
	}
	completion = math.MaxUint64
	if req.Options.MaxTokens > 0 {
		completion = uint64(req.Options.MaxTokens)
	}
	return uint64(promptLimit(req)), completion
}

// checkUsage reports why claimed cannot be the usage of req whose answer
// was relayed bytes long; nil when it can be.
func checkUsage(req *protocol.Request, claimed protocol.Usage, relayed int) error {
	prompt, completion := usageLimit(req)
	if claimed.CompletionTokens > completion {
		return fmt.Errorf("the provider claims %d completion tokens, above the request's max_tokens %d", claimed.CompletionTokens, completion)
	}
	if limit := uint64(relayed) + endTokens; claimed.CompletionTokens > limit {
		return fmt.Errorf("the provider claims %d completion tokens for %d bytes of text (at most %d tokens)", claimed.CompletionTokens, relayed, limit)
	}
	if claimed.PromptTokens > prompt {
		return fmt.Errorf("the provider claims %d prompt tokens for a prompt that can hold at most %d", claimed.PromptTokens, prompt)
	}
	return nil
}

// promptLimit is the most tokens req's prompt can hold once templated.
// Tools offered count their name, description and parameters' bytes, and
// tool calls and results in the history their names, ids and arguments,
// each with a template allowance: templates render them as JSON into the
// prompt, with keys, quotes and separators the gateway cannot see. Every
// token of a generate request's context counts (one id each), and
// imageTokens per image. An embed request's inputs are not templated:
// each holds at most its bytes plus embedTokensPerInput.
func promptLimit(req *protocol.Request) int {
	if req.Kind == protocol.KindEmbed {
		n := 0
		for _, in := range req.Input {
			n += len(in) + embedTokensPerInput
		}
		return n
	}
	n := len(req.Prompt) + len(req.System) + len(req.Context) + imageTokens*req.ImageCount()
	for _, m := range req.Messages {
		n += len(m.Content) + len(m.Role) + len(m.ToolName) + len(m.ToolCallID)
		for _, tc := range m.ToolCalls {
			n += len(tc.ID) + len(tc.Name) + len(tc.Arguments) + templateTokensPerMessage
		}
	}
	if req.SendsTools() {
		for _, t := range req.Tools {
			n += len(t.Function.Name) + len(t.Function.Description) + len(t.Function.Parameters) + templateTokensPerTool
		}
	}
	if req.Raw {
		return n + endTokens
	}
	return n + templateTokensPerMessage*(len(req.Messages)+2) + templateTokens
}
