package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/gateway/sink"
	"github.com/idlegrid/idlegrid/internal/hub"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// Failover. A job that fails before its first token is sent again, as it
// was, to another provider: the consumer notices nothing but the delay. A
// job that fails after delivering text is continued on another provider
// from that text (assistant-prefix continuation, see continuation): the
// consumer's stream goes on where it stopped. Either way the failed
// provider is excluded for the rest of the request and counts a failure
// against its circuit breaker (health.go).
//
// Receipts: a provider signs its receipt when its job is done, under the
// job's own request id (the consumer's request id with "-c1", "-c2"… for
// continuations), for exactly the text it generated. A provider that fails
// mid-answer cannot sign at the end, so the gateway settles the latest
// checkpoint it sent with its chunks instead (checkpoint.go): a receipt
// under the same id for what it delivered up to that chunk. Tokens after
// its last checkpoint, or of a provider that sends none, are not billed —
// the consumer never pays for tokens without a receipt. No receipt claims
// another provider's tokens and no token is billed twice.

// answer is what the consumer has been sent so far, across jobs.
type answer struct {
	snk        sink.Sink
	meta       sink.Meta
	began      bool
	firstToken time.Duration // from admission to the first delta
	text       strings.Builder
	toolCalls  int // tool calls delivered, all jobs
	tokens     int // completion tokens delivered, all jobs
	earlier    int // of which delivered by jobs that ended without a receipt
	continued  int // continuation segments started
	segAt      int // tokens delivered when the current segment id was made
}

// segment returns the request and job id for the next job of c: the
// consumer's request as long as nothing was delivered, else its
// continuation after the delivered text, under a new id.
func (a *answer) segment(c *call) (protocol.Request, string) {
	if a.tokens == 0 {
		return c.req, c.id
	}
	if a.tokens != a.segAt || a.continued == 0 {
		a.continued++
		a.segAt = a.tokens
	}
	return continuation(c.req, a.text.String(), a.tokens), fmt.Sprintf("%s-c%d", c.id, a.continued)
}

func (a *answer) begin() error {
	if a.began {
		return nil
	}
	a.began = true
	return a.snk.Begin(a.meta)
}

// delta sends a chunk's text on to the consumer.
func (a *answer) delta(c *call, ch *protocol.Chunk) error {
	if a.tokens == 0 && a.text.Len() == 0 {
		a.firstToken = time.Since(c.admitted)
	}
	a.text.WriteString(ch.Delta)
	a.toolCalls += len(ch.ToolCalls)
	a.tokens += chunkTokens(ch)
	if err := a.begin(); err != nil {
		return err
	}
	return a.snk.Delta(sinkDelta(ch))
}

// continuable reports whether another provider may take c over: before
// the first token always; after it only for free text, since a tool call
// or structured output cannot be continued from its first half (the
// model would not know it is inside a call or a schema).
func (a *answer) continuable(c *call) bool {
	return a.tokens == 0 || !c.req.SendsTools() && len(c.req.Format) == 0
}

// abandon notes that the current job ended without done: what it
// delivered stays delivered, billed only by its checkpoint, if any.
func (a *answer) abandon() { a.earlier = a.tokens }

// complete ends an answer whose failed job had already delivered
// max_tokens: nothing is left to generate, and nothing is billed.
func (a *answer) complete(c *call) {
	total := time.Since(c.admitted)
	final := sink.Final{FinishReason: "length", Usage: protocol.Usage{CompletionTokens: uint64(a.tokens)}, Total: total, FirstToken: a.firstToken, Eval: total - a.firstToken}
	if a.begin() == nil {
		a.snk.End(final)
	}
}

func sinkDelta(ch *protocol.Chunk) sink.Delta {
	return sink.Delta{Text: ch.Delta, Logprobs: ch.Logprobs, ToolCalls: ch.ToolCalls}
}

// chunkTokens is how many tokens a chunk holds: what the provider says, or
// one for a chunk with text when it does not say; checkpoints count the same.
func chunkTokens(ch *protocol.Chunk) int { return int(ch.TokenCount()) }

// continuation is req continued after the answer text delivered so far,
// tokens long: the new job generates only what is left of max_tokens.
//
// Chat: delivered becomes the start of the assistant's answer, a final
// assistant message the model continues rather than answering anew (or is
// appended to the consumer's own final assistant message, which the model
// was already continuing). Ollama does this for chat templates that leave
// the last assistant message open, as the common ones do (ollama/ollama
// #5890, #6778); the simulator always does, and yields exactly the
// uninterrupted answer. Generate: delivered is appended to the prompt,
// which continues exactly for raw prompts and the simulator; with Ollama's
// template on a non-raw prompt the text sits in the user's turn instead,
// and the rest of the answer may read less smoothly.
func continuation(req protocol.Request, delivered string, tokens int) protocol.Request {
	r := req
	r.Options.MaxTokens = max(req.Options.MaxTokens-tokens, 1)
	switch req.Kind {
	case protocol.KindChat:
		r.Messages = slices.Clone(req.Messages)
		if n := len(r.Messages); n > 0 && r.Messages[n-1].Role == "assistant" {
			r.Messages[n-1].Content += delivered
		} else {
			r.Messages = append(r.Messages, protocol.ChatMessage{Role: "assistant", Content: delivered})
		}
	default:
		r.Prompt = req.Prompt + delivered
	}
	return r
}

// jobFailure maps a stream's error to what the consumer sees, whether
// another provider may take the request over, and whether the error counts
// against the provider's health.
func jobFailure(err error, chunks int) (e *apierr.Error, retry, failed bool) {
	var je *hub.JobError
	switch {
	case errors.As(err, &je):
		switch je.Code {
		case protocol.CodeBusy:
			return apierr.Overloaded("The provider had no free slot; please retry."), true, false
		case protocol.CodeBadRequest:
			// Another provider's model server would refuse it too.
			return apierr.Invalid("", "The provider's model server rejected the request: %s", je.Message), false, false
		case protocol.CodeModelNotFound:
			return apierr.Unavailable("model_unavailable", "The provider no longer serves this model; please retry."), true, true
		case protocol.CodeDeadline:
			return &apierr.Error{Status: http.StatusGatewayTimeout, Type: "server_error", Code: "timeout",
				Message: "The provider did not finish within the gateway's job timeout; the partial answer is billed only as far as the provider signed for it."}, false, false
		}
		return apierr.Upstream("The provider failed while generating: %s", je.Message), true, true
	case errors.Is(err, hub.ErrProviderLost):
		return apierr.Upstream("The provider disconnected after %d chunks; the partial answer is billed only as far as the provider signed for it. Please retry.", chunks), true, true
	case errors.Is(err, hub.ErrSlowConsumer):
		return apierr.Upstream("The response was read too slowly and was cancelled."), false, false
	}
	return apierr.Upstream("The provider failed: %v", err), true, true
}

// noTakeover is the error for a request whose provider failed and which no
// other provider could take over: the failure, then why not.
func noTakeover(failure, placing *apierr.Error) *apierr.Error {
	e := *placing
	e.Message = strings.TrimSuffix(failure.Message, " Please retry.") + " No other provider could take over: " + placing.Message
	return &e
}
