package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// apiRequest is the union of Ollama's ChatRequest and GenerateRequest
// fields the simulator understands; others are ignored, as Ollama does.
type apiRequest struct {
	Model       string         `json:"model"`
	Messages    []apiMessage   `json:"messages"`
	Prompt      string         `json:"prompt"`
	System      string         `json:"system"`
	Raw         bool           `json:"raw"`
	Stream      *bool          `json:"stream"`
	Options     map[string]any `json:"options"`
	Logprobs    bool           `json:"logprobs"`
	TopLogprobs int            `json:"top_logprobs"`
	// Tools have the same shape in Ollama's API and the protocol.
	Tools  []protocol.Tool `json:"tools"`
	Format json.RawMessage `json:"format"`
}

type apiMessage struct {
	Role       string        `json:"role"`
	Content    string        `json:"content"`
	ToolCalls  []apiToolCall `json:"tool_calls,omitempty"`
	ToolName   string        `json:"tool_name,omitempty"`
	ToolCallID string        `json:"tool_call_id,omitempty"`
}

// apiToolCall is Ollama's ToolCall: the arguments are an object.
type apiToolCall struct {
	ID       string `json:"id,omitempty"`
	Function struct {
		Index     int             `json:"index"`
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	} `json:"function"`
}

func toAPIToolCalls(calls []protocol.ToolCall, first int) []apiToolCall {
	out := make([]apiToolCall, 0, len(calls))
	for i, tc := range calls {
		a := apiToolCall{ID: tc.ID}
		a.Function.Index, a.Function.Name, a.Function.Arguments = first+i, tc.Name, json.RawMessage(tc.Arguments)
		out = append(out, a)
	}
	return out
}

// fromAPIToolCalls reads a message's calls; arguments must be an object.
func fromAPIToolCalls(calls []apiToolCall) ([]protocol.ToolCall, error) {
	var out []protocol.ToolCall
	for _, a := range calls {
		tc := protocol.ToolCall{ID: a.ID, Name: a.Function.Name, Arguments: "{}"}
		if len(a.Function.Arguments) > 0 && string(a.Function.Arguments) != "null" {
			var buf bytes.Buffer
			if err := json.Compact(&buf, a.Function.Arguments); err != nil || !protocol.IsJSONObject(buf.Bytes()) {
				return nil, errors.New("tool call arguments must be an object")
			}
			tc.Arguments = buf.String()
		}
		out = append(out, tc)
	}
	return out, nil
}

// apiTokenLogprob and apiLogprob are Ollama's TokenLogprob and Logprob.
type apiTokenLogprob struct {
	Token   string  `json:"token"`
	Logprob float64 `json:"logprob"`
	Bytes   []int   `json:"bytes,omitempty"`
}

type apiLogprob struct {
	apiTokenLogprob
	TopLogprobs []apiTokenLogprob `json:"top_logprobs,omitempty"`
}

// apiResponse is Ollama's ChatResponse (Message set) or GenerateResponse
// (Response set, even when empty).
type apiResponse struct {
	Model      string       `json:"model"`
	CreatedAt  time.Time    `json:"created_at"`
	Message    *apiMessage  `json:"message,omitempty"`
	Response   *string      `json:"response,omitempty"`
	Done       bool         `json:"done"`
	DoneReason string       `json:"done_reason,omitempty"`
	Logprobs   []apiLogprob `json:"logprobs,omitempty"`
	*apiMetrics
}

// apiMetrics are the final chunk's counts and nanosecond durations.
type apiMetrics struct {
	TotalDuration      time.Duration `json:"total_duration"`
	LoadDuration       time.Duration `json:"load_duration"`
	PromptEvalCount    uint64        `json:"prompt_eval_count"`
	PromptEvalDuration time.Duration `json:"prompt_eval_duration"`
	EvalCount          uint64        `json:"eval_count"`
	EvalDuration       time.Duration `json:"eval_duration"`
}

// toRequest translates the Ollama request into idlegrid's.
func (in *apiRequest) toRequest(chat bool) (protocol.Request, error) {
	req := protocol.Request{Kind: protocol.KindGenerate, Model: in.Model, Prompt: in.Prompt, System: in.System, Raw: in.Raw}
	if chat {
		req = protocol.Request{Kind: protocol.KindChat, Model: in.Model}
		for _, m := range in.Messages {
			calls, err := fromAPIToolCalls(m.ToolCalls)
			if err != nil {
				return req, err
			}
			req.Messages = append(req.Messages, protocol.ChatMessage{Role: strings.ToLower(m.Role), Content: m.Content,
				ToolCalls: calls, ToolName: m.ToolName, ToolCallID: m.ToolCallID})
		}
		req.Tools = in.Tools
	}
	if f := bytes.TrimSpace(in.Format); len(f) > 0 && string(f) != "null" && string(f) != `""` {
		if string(f) != `"json"` && !protocol.IsJSONObject(f) {
			return req, errors.New(`format must be "json" or a JSON schema object`)
		}
		req.Format = f
	}
	if in.TopLogprobs < 0 || in.TopLogprobs > 20 {
		return req, errors.New("top_logprobs must be between 0 and 20")
	}
	req.Options.Logprobs, req.Options.TopLogprobs = in.Logprobs, in.TopLogprobs
	o := &req.Options
	for key, v := range in.Options {
		var err error
		switch key {
		case "num_predict":
			var n float64
			if n, err = number(key, v); err == nil && n > 0 {
				o.MaxTokens = int(min(n, 1<<30))
			}
		case "temperature":
			o.Temperature, err = numberPtr(key, v)
		case "top_p":
			o.TopP, err = numberPtr(key, v)
		case "seed":
			var n float64
			if n, err = number(key, v); err == nil {
				seed := int64(n)
				o.Seed = &seed
			}
		case "stop":
			o.Stop, err = stringList(key, v)
		}
		if err != nil {
			return req, err
		}
	}
	return req, nil
}

func number(key string, v any) (float64, error) {
	n, ok := v.(float64)
	if !ok {
		return 0, fmt.Errorf("option %q must be a number", key)
	}
	return n, nil
}

func numberPtr(key string, v any) (*float64, error) {
	n, err := number(key, v)
	if err != nil {
		return nil, err
	}
	return &n, nil
}

func stringList(key string, v any) ([]string, error) {
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("option %q must be of type array", key)
	}
	out := make([]string, 0, len(list))
	for _, item := range list {
		s, ok := item.(string)
		if !ok {
			return nil, fmt.Errorf("option %q must be an array of strings", key)
		}
		out = append(out, s)
	}
	return out, nil
}

// Sentinels that end a generation on purpose.
var (
	errInjected = errors.New("sim: injected fault")
	errDrop     = errors.New("sim: dropping the connection")
)

// outcome of one generation, for Stats.
type outcome int

const (
	completed outcome = iota
	cancelled
	failed
)

func (s *Server) handleGeneration(chat bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		var in apiRequest
		if err := decodeBody(w, r, &in); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		if in.Model == "" {
			writeError(w, http.StatusBadRequest, "model is required")
			return
		}
		if _, ok := s.sim.lookup(in.Model); !ok {
			writeError(w, http.StatusNotFound, notFoundMessage(in.Model))
			return
		}
		req, err := in.toRequest(chat)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		s.active.Add(1)
		defer s.active.Add(-1)
		g := &serving{
			w: w, rc: http.NewResponseController(w), ctx: r.Context(), chat: chat, model: in.Model,
			stream: in.Stream == nil || *in.Stream, faults: s.currentFaults(), start: time.Now(),
		}
		res, err := s.sim.Generate(g.ctx, req, g.emit)
		switch g.finish(res, err) {
		case completed:
			s.completed.Add(1)
		case cancelled:
			s.cancelled.Add(1)
		case failed:
			s.failed.Add(1)
			if errors.Is(err, errDrop) {
				dropConnection(w)
			}
		}
	}
}

// serving is one chat or generate response being written.
type serving struct {
	w      http.ResponseWriter
	rc     *http.ResponseController
	ctx    context.Context
	chat   bool
	model  string
	stream bool
	faults Faults
	start  time.Time

	sent     int          // tokens written (streaming) or generated
	wrote    bool         // a line has been written
	writeErr error        // the client went away
	text     []string     // non-streaming: text so far
	logprobs []apiLogprob // non-streaming: logprobs so far
	calls    []apiToolCall
}

func (g *serving) emit(d backend.Delta) error {
	lps := toAPILogprobs(d.Logprobs)
	calls := toAPIToolCalls(d.ToolCalls, len(g.calls))
	if g.stream {
		c := g.chunk(d.Text, lps)
		if len(calls) > 0 && c.Message != nil {
			c.Message.ToolCalls = calls
		}
		if err := g.writeLine(c); err != nil {
			return err
		}
		g.calls = append(g.calls, calls...)
	} else {
		g.text = append(g.text, d.Text)
		g.logprobs = append(g.logprobs, lps...)
		g.calls = append(g.calls, calls...)
	}
	g.sent += d.Tokens
	f := g.faults
	switch {
	case f.ErrorAfter > 0 && g.sent >= f.ErrorAfter:
		return fmt.Errorf("%w after %d tokens", errInjected, g.sent)
	case f.StallAfter > 0 && g.sent >= f.StallAfter:
		<-g.ctx.Done()
		return g.ctx.Err()
	case f.DropAfter > 0 && g.sent >= f.DropAfter:
		return errDrop
	}
	return nil
}

// finish writes the end of the response and classifies the generation.
func (g *serving) finish(res backend.Result, err error) outcome {
	if err != nil {
		switch {
		case g.writeErr != nil || g.ctx.Err() != nil:
			return cancelled
		case errors.Is(err, errDrop):
		case g.wrote:
			_ = g.writeLine(map[string]string{"error": err.Error()})
		default:
			writeError(g.w, http.StatusInternalServerError, err.Error())
		}
		return failed
	}
	last := g.chunk(strings.Join(g.text, ""), g.logprobs)
	if !g.stream && last.Message != nil {
		last.Message.ToolCalls = g.calls
	}
	last.Done, last.DoneReason = true, res.FinishReason
	last.apiMetrics = &apiMetrics{
		TotalDuration:      time.Since(g.start),
		PromptEvalCount:    res.Usage.PromptTokens,
		PromptEvalDuration: res.PromptEval,
		EvalCount:          res.Usage.CompletionTokens,
		EvalDuration:       res.Eval,
	}
	if !g.stream {
		writeJSON(g.w, http.StatusOK, last)
		return completed
	}
	if g.writeLine(last) != nil {
		return cancelled
	}
	return completed
}

func (g *serving) chunk(text string, lps []apiLogprob) *apiResponse {
	c := &apiResponse{Model: g.model, CreatedAt: time.Now().UTC(), Logprobs: lps}
	if g.chat {
		c.Message = &apiMessage{Role: "assistant", Content: text}
	} else {
		c.Response = &text
	}
	return c
}

// writeLine writes one NDJSON line and flushes it to the client at once.
func (g *serving) writeLine(v any) error {
	if !g.wrote {
		g.w.Header().Set("Content-Type", "application/x-ndjson")
		g.wrote = true
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	if _, err := g.w.Write(append(b, '\n')); err != nil {
		g.writeErr = err
		return fmt.Errorf("sim: write: %w", err)
	}
	if err := g.rc.Flush(); err != nil {
		g.writeErr = err
		return fmt.Errorf("sim: flush: %w", err)
	}
	return nil
}

// dropConnection closes the client's TCP connection under the response.
// When the connection cannot be taken over (HTTP/2), aborting the handler
// resets the stream, which is the closest equivalent.
func dropConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

func toAPILogprobs(in []protocol.TokenLogprob) []apiLogprob {
	if len(in) == 0 {
		return nil
	}
	out := make([]apiLogprob, 0, len(in))
	for _, lp := range in {
		a := apiLogprob{apiTokenLogprob: apiTokenLogprob{Token: lp.Token, Logprob: lp.Logprob, Bytes: byteInts(lp.Token)}}
		for _, t := range lp.Top {
			a.TopLogprobs = append(a.TopLogprobs, apiTokenLogprob{Token: t.Token, Logprob: t.Logprob, Bytes: byteInts(t.Token)})
		}
		out = append(out, a)
	}
	return out
}

// byteInts is a token's UTF-8 bytes as Ollama reports them.
func byteInts(s string) []int {
	out := make([]int, len(s))
	for i := range len(s) {
		out[i] = int(s[i])
	}
	return out
}
