package ollama

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// maxLine bounds one NDJSON line. Ollama's lines are small (a token, or the
// whole answer when not streaming); a longer line means a broken or hostile
// server, and must fail rather than grow a buffer without end.
const maxLine = 16 << 20

// event is one parsed stream line.
type event struct {
	text     string
	logprobs []protocol.TokenLogprob
	calls    []protocol.ToolCall
	done     bool
	result   backend.Result // when done
	err      string         // Ollama's {"error": ...} line
}

// wireLine is a chunk of /api/chat (Message) or /api/generate (Response),
// or an error line.
type wireLine struct {
	Message *struct {
		Content   string         `json:"content"`
		ToolCalls []wireToolCall `json:"tool_calls"`
	} `json:"message"`
	Response           string        `json:"response"`
	Done               bool          `json:"done"`
	DoneReason         string        `json:"done_reason"`
	PromptEvalCount    int64         `json:"prompt_eval_count"`
	PromptEvalDuration int64         `json:"prompt_eval_duration"`
	EvalCount          int64         `json:"eval_count"`
	EvalDuration       int64         `json:"eval_duration"`
	Logprobs           []wireLogprob `json:"logprobs"`
	Error              *string       `json:"error"`
}

// wireLogprob is Ollama's Logprob (TokenLogprob plus top_logprobs).
type wireLogprob struct {
	Token       string  `json:"token"`
	Logprob     float64 `json:"logprob"`
	TopLogprobs []struct {
		Token   string  `json:"token"`
		Logprob float64 `json:"logprob"`
	} `json:"top_logprobs"`
}

// parseLine decodes one line of an Ollama stream. It never panics, whatever
// the bytes; a line that is not an Ollama chunk is an error.
func parseLine(b []byte) (event, error) {
	var w wireLine
	if err := json.Unmarshal(b, &w); err != nil {
		return event{}, fmt.Errorf("bad stream line: %w", err)
	}
	if w.Error != nil {
		msg := *w.Error
		if msg == "" {
			msg = "unknown error"
		}
		return event{err: msg}, nil
	}
	ev := event{text: w.Response, done: w.Done}
	if w.Message != nil {
		ev.text = w.Message.Content
		for _, wc := range w.Message.ToolCalls {
			tc, err := fromWireToolCall(wc)
			if err != nil {
				return event{}, err
			}
			ev.calls = append(ev.calls, tc)
		}
	}
	for _, lp := range w.Logprobs {
		t := protocol.TokenLogprob{Token: lp.Token, Logprob: lp.Logprob}
		for _, alt := range lp.TopLogprobs {
			t.Top = append(t.Top, protocol.TopLogprob{Token: alt.Token, Logprob: alt.Logprob})
		}
		ev.logprobs = append(ev.logprobs, t)
	}
	if w.Done {
		ev.result = backend.Result{
			Usage: protocol.Usage{
				PromptTokens:     nonNegative(w.PromptEvalCount),
				CompletionTokens: nonNegative(w.EvalCount),
			},
			FinishReason: finishReason(w.DoneReason),
			PromptEval:   time.Duration(max(w.PromptEvalDuration, 0)),
			Eval:         time.Duration(max(w.EvalDuration, 0)),
		}
	}
	return ev, nil
}

// fromWireToolCall reads one of Ollama's tool calls: its arguments, an
// object, become their compact JSON text.
func fromWireToolCall(wc wireToolCall) (protocol.ToolCall, error) {
	tc := protocol.ToolCall{ID: wc.ID, Name: wc.Function.Name, Arguments: "{}"}
	if args := bytes.TrimSpace(wc.Function.Arguments); len(args) > 0 && string(args) != "null" {
		var buf bytes.Buffer
		if err := json.Compact(&buf, args); err != nil {
			return tc, fmt.Errorf("bad tool call arguments: %w", err)
		}
		tc.Arguments = buf.String()
	}
	if err := tc.Validate(); err != nil {
		return tc, fmt.Errorf("bad tool call: %w", err)
	}
	return tc, nil
}

func nonNegative(n int64) uint64 { return uint64(max(n, 0)) }

// finishReason maps Ollama's done_reason ("stop", "length", "load",
// "unload", or none) to idlegrid's two.
func finishReason(s string) string {
	if s == "length" {
		return "length"
	}
	return "stop"
}

// readStream reads an NDJSON generation stream to its done:true line,
// emitting text as it comes. emit's error is returned as it is; a cancelled
// ctx is returned (wrapped) in preference to the read error it causes.
// With wantLogprobs, a first line of text without log-probabilities means
// a server that returns none: backend.ErrNoLogprobs, before anything is
// emitted (a server that has them sends each token's with its text).
func readStream(ctx context.Context, r io.Reader, wantLogprobs bool, emit func(backend.Delta) error) (backend.Result, error) {
	first := true
	sc := bufio.NewScanner(r)
	// A line is a few hundred bytes; the buffer grows up to maxLine for the
	// rare long one instead of every request allocating the maximum.
	sc.Buffer(make([]byte, 0, 4<<10), maxLine)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		ev, err := parseLine(line)
		if err != nil {
			return backend.Result{}, fmt.Errorf("%w: ollama: %v", backend.ErrUnavailable, err)
		}
		if ev.err != "" {
			return backend.Result{}, fmt.Errorf("%w: ollama: %s", backend.ErrUnavailable, ev.err)
		}
		if wantLogprobs && first && ev.text != "" && len(ev.logprobs) == 0 {
			return backend.Result{}, fmt.Errorf("ollama: %w", backend.ErrNoLogprobs)
		}
		if ev.text != "" || len(ev.logprobs) > 0 || len(ev.calls) > 0 {
			first = false
			tokens := len(ev.logprobs)
			if ev.text != "" || len(ev.calls) > 0 {
				tokens = max(tokens, 1)
			}
			if err := emit(backend.Delta{Text: ev.text, Tokens: tokens, Logprobs: ev.logprobs, ToolCalls: ev.calls}); err != nil {
				return backend.Result{}, err
			}
		}
		// Checked after every line, not only when a read blocks: data
		// already buffered must not let a cancelled generation "succeed".
		if err := ctx.Err(); err != nil {
			return backend.Result{}, fmt.Errorf("ollama: %w", err)
		}
		if ev.done {
			return ev.result, nil
		}
	}
	if err := ctx.Err(); err != nil {
		return backend.Result{}, fmt.Errorf("ollama: %w", err)
	}
	err := sc.Err()
	switch {
	case errors.Is(err, bufio.ErrTooLong):
		return backend.Result{}, fmt.Errorf("%w: ollama: stream line longer than %d bytes", backend.ErrUnavailable, maxLine)
	case err != nil:
		return backend.Result{}, fmt.Errorf("%w: ollama: %w: %v", backend.ErrUnavailable, errStreamEnded, err)
	}
	return backend.Result{}, fmt.Errorf("%w: ollama: %w", backend.ErrUnavailable, errStreamEnded)
}
