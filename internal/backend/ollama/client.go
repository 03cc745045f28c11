// Package ollama is a backend.Backend that talks to an Ollama server (or
// the simulator's Ollama-compatible server) over its HTTP API: /api/tags
// and /api/show for the model list, streaming /api/chat and /api/generate
// for generation. It only uses the API, never Ollama's Go packages, so it
// works with any Ollama version that speaks it; fields newer versions add
// (logprobs) are sent and read when present and ignored by older servers.
package ollama

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// Client is an Ollama API client. It is safe for concurrent use.
type Client struct {
	base string
	hc   *http.Client
}

var _ backend.Backend = (*Client)(nil)

// New returns a client of the Ollama server at baseURL, e.g.
// "http://127.0.0.1:11434" (a bare "host:port", as in OLLAMA_HOST, gets
// "http://"). A nil hc gets a client with connect and TLS timeouts but no
// overall timeout: a generation streams for as long as the model writes,
// and callers bound it with their context.
func New(baseURL string, hc *http.Client) *Client {
	base := strings.TrimRight(baseURL, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	if hc == nil {
		hc = &http.Client{Transport: newTransport()}
	}
	return &Client{base: base, hc: hc}
}

func newTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = 10 * time.Second
	// A provider runs several generations at once against one server.
	t.MaxIdleConnsPerHost = 32
	return t
}

// Models lists the server's models from /api/tags, each identified by its
// content (identity.go), with /api/tags' own digest beside it as
// BackendDigest. /api/show gives the identity and the context length; a
// model it cannot describe is left out (its identity is unknown, and
// advertising the manifest digest instead would name another model than
// the same weights elsewhere), unless every model fails, which is an error.
func (c *Client) Models(ctx context.Context) ([]backend.Model, error) {
	var tags struct {
		Models []struct {
			Name    string `json:"name"`
			Size    int64  `json:"size"`
			Digest  string `json:"digest"`
			Details struct {
				Family            string `json:"family"`
				ParameterSize     string `json:"parameter_size"`
				QuantizationLevel string `json:"quantization_level"`
			} `json:"details"`
		} `json:"models"`
	}
	if err := c.call(ctx, http.MethodGet, "/api/tags", nil, &tags); err != nil {
		return nil, err
	}
	noLogprobs := c.tooOldForLogprobs(ctx)
	out := make([]backend.Model, 0, len(tags.Models))
	var firstErr error
	for _, m := range tags.Models {
		d, err := c.describe(ctx, m.Name)
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("ollama: %w", ctx.Err())
			}
			firstErr = cmp.Or(firstErr, err)
			continue
		}
		out = append(out, backend.Model{
			Name: m.Name, Digest: cmp.Or(d.identity, m.Digest), BackendDigest: m.Digest,
			Quantization: m.Details.QuantizationLevel, Family: m.Details.Family, ParameterSize: m.Details.ParameterSize,
			ContextLength: d.contextLength, SizeBytes: m.Size, NoLogprobs: noLogprobs, Capabilities: d.capabilities,
		})
	}
	if len(out) == 0 && firstErr != nil {
		return nil, firstErr
	}
	return out, nil
}

// Identity returns the identity of one model of the server (identity.go):
// what Models reports as its Digest. Verifiers that look a provider's
// digest up in their reference compare it with this.
func (c *Client) Identity(ctx context.Context, model string) (string, error) {
	d, err := c.describe(ctx, model)
	if err != nil || d.identity != "" {
		return d.identity, err
	}
	ms, err := c.Models(ctx)
	if err != nil {
		return "", err
	}
	for _, m := range ms {
		if m.Name == model || m.Name == model+":latest" {
			return m.Digest, nil
		}
	}
	return "", fmt.Errorf("%w: ollama: %s", backend.ErrModelNotFound, model)
}

// logprobsSince is the first Ollama release that returns log-probabilities
// on /api/chat and /api/generate.
var logprobsSince = [3]int{0, 12, 11}

// tooOldForLogprobs reports whether /api/version names a release before
// logprobsSince. A version it cannot read, and "0.0.0" (what source builds
// and the simulator report), count as current; an agent still notices a
// backend that returns none when a job asks (provider session.go).
func (c *Client) tooOldForLogprobs(ctx context.Context) bool {
	var v struct {
		Version string `json:"version"`
	}
	if c.call(ctx, http.MethodGet, "/api/version", nil, &v) != nil {
		return false
	}
	got, ok := parseVersion(v.Version)
	return ok && got != [3]int{} && cmpVersion(got, logprobsSince) < 0
}

// parseVersion reads "major.minor.patch", with an optional "v" before and
// anything after a "-" or "+" ignored.
func parseVersion(s string) ([3]int, bool) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "v")
	if i := strings.IndexAny(s, "-+"); i >= 0 {
		s = s[:i]
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return [3]int{}, false
	}
	var out [3]int
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return [3]int{}, false
		}
		out[i] = n
	}
	return out, true
}

func cmpVersion(a, b [3]int) int {
	for i := range a {
		if c := cmp.Compare(a[i], b[i]); c != 0 {
			return c
		}
	}
	return 0
}

// description is what Models reads from /api/show.
type description struct {
	identity      string // "" when the server names no content-addressed weights
	contextLength int    // 0 when unknown
	capabilities  []string
}

// describe reads a model's identity and its context length
// ("<general.architecture>.context_length" of model_info) from /api/show.
func (c *Client) describe(ctx context.Context, model string) (description, error) {
	var show struct {
		showInfo
		ModelInfo    map[string]any `json:"model_info"`
		Capabilities []string       `json:"capabilities"`
	}
	if err := c.call(ctx, http.MethodPost, "/api/show", map[string]string{"model": model}, &show); err != nil {
		return description{}, err
	}
	d := description{identity: show.identity(), capabilities: show.Capabilities}
	if len(d.capabilities) > protocol.MaxCapabilities {
		d.capabilities = d.capabilities[:protocol.MaxCapabilities]
	}
	arch, _ := show.ModelInfo["general.architecture"].(string)
	n, _ := show.ModelInfo[arch+".context_length"].(float64)
	if arch != "" && n > 0 && n <= 1<<40 {
		d.contextLength = int(n)
	}
	return d, nil
}

// call does a small JSON request and decodes the JSON answer into out.
func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	resp, err := c.send(ctx, method, path, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// Model lists are small; the cap keeps a broken server from filling
	// memory.
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(out); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("ollama: %s: %w", path, ctx.Err())
		}
		return fmt.Errorf("%w: ollama: %s: bad response: %v", backend.ErrUnavailable, path, err)
	}
	return nil
}

// send does one request and returns the response when its status is 2xx;
// otherwise it maps the status and Ollama's {"error": ...} body to the
// backend errors.
func (c *Client) send(ctx context.Context, method, path string, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("%w: ollama: encoding request: %v", backend.ErrBadRequest, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("%w: ollama: %v", backend.ErrUnavailable, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/x-ndjson, application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("ollama: %s: %w", path, ctx.Err())
		}
		return nil, fmt.Errorf("%w: ollama: %v", backend.ErrUnavailable, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, statusError(path, resp)
}

// statusError turns a non-2xx response into an error wrapping the backend
// error callers branch on, with Ollama's own message.
func statusError(path string, resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e struct {
		Error string `json:"error"`
	}
	msg := strings.TrimSpace(string(b))
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	kind := backend.ErrUnavailable
	switch {
	case resp.StatusCode == http.StatusNotFound && path != "/api/tags":
		// On the model endpoints a 404 is Ollama's "model not found"; on
		// /api/tags it means the server is not an Ollama at all.
		kind = backend.ErrModelNotFound
	case resp.StatusCode == http.StatusBadRequest:
		kind = backend.ErrBadRequest
	}
	return fmt.Errorf("%w: ollama: %s: HTTP %d: %s", kind, path, resp.StatusCode, msg)
}

// genCommon holds the fields /api/chat and /api/generate share, with
// Ollama's names.
type genCommon struct {
	Model   string     `json:"model"`
	Stream  bool       `json:"stream"`
	Options genOptions `json:"options,omitzero"`
	// Logprobs and TopLogprobs are top-level request fields in newer
	// Ollama versions; older ones (v0.6.5 included) ignore them.
	Logprobs    bool `json:"logprobs,omitempty"`
	TopLogprobs int  `json:"top_logprobs,omitempty"`
	// Format is "json" or a JSON Schema (structured output).
	Format json.RawMessage `json:"format,omitempty"`
}

type chatBody struct {
	genCommon
	Messages []genMessage    `json:"messages"`
	Tools    []protocol.Tool `json:"tools,omitempty"`
}

type generateBody struct {
	genCommon
	Prompt string `json:"prompt"`
	System string `json:"system,omitempty"`
	Raw    bool   `json:"raw,omitempty"`
}

type genMessage struct {
	Role       string         `json:"role"`
	Content    string         `json:"content"`
	ToolCalls  []wireToolCall `json:"tool_calls,omitempty"`
	ToolName   string         `json:"tool_name,omitempty"`
	ToolCallID string         `json:"tool_call_id,omitempty"`
}

// wireToolCall is Ollama's ToolCall: the arguments are an object.
type wireToolCall struct {
	ID       string `json:"id,omitempty"`
	Function struct {
		Index     int             `json:"index"`
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	} `json:"function"`
}

func toWireToolCalls(calls []protocol.ToolCall) []wireToolCall {
	out := make([]wireToolCall, 0, len(calls))
	for i, tc := range calls {
		w := wireToolCall{ID: tc.ID}
		w.Function.Index, w.Function.Name, w.Function.Arguments = i, tc.Name, json.RawMessage(tc.Arguments)
		out = append(out, w)
	}
	return out
}

// offeredTools are the tools Ollama is sent: none for tool_choice "none",
// only the named function when one is forced (Ollama cannot force a call;
// this is the closest it comes), else all.
func offeredTools(req *protocol.Request) []protocol.Tool {
	if !req.SendsTools() {
		return nil
	}
	if req.ToolChoiceFunction != "" {
		for _, t := range req.Tools {
			if t.Function.Name == req.ToolChoiceFunction {
				return []protocol.Tool{t}
			}
		}
	}
	return req.Tools
}

// genOptions holds only what the request sets, so the model's own defaults
// apply to the rest.
type genOptions struct {
	NumPredict  int      `json:"num_predict,omitempty"`
	Temperature *float64 `json:"temperature,omitempty"`
	TopP        *float64 `json:"top_p,omitempty"`
	Seed        *int64   `json:"seed,omitempty"`
	Stop        []string `json:"stop,omitempty"`
}

func toGenRequest(req protocol.Request) (path string, body any, err error) {
	o := req.Options
	common := genCommon{
		Model: req.Model, Stream: !req.Buffered, Logprobs: o.Logprobs, Format: req.Format,
		Options: genOptions{Temperature: o.Temperature, TopP: o.TopP, Seed: o.Seed, Stop: o.Stop},
	}
	if o.MaxTokens > 0 {
		common.Options.NumPredict = o.MaxTokens
	}
	if o.Logprobs {
		common.TopLogprobs = o.TopLogprobs
	}
	switch req.Kind {
	case protocol.KindChat:
		// Ollama wants the array even when empty.
		msgs := make([]genMessage, 0, len(req.Messages))
		for _, m := range req.Messages {
			gm := genMessage{Role: m.Role, Content: m.Content, ToolName: m.ToolName, ToolCallID: m.ToolCallID}
			if len(m.ToolCalls) > 0 {
				gm.ToolCalls = toWireToolCalls(m.ToolCalls)
			}
			msgs = append(msgs, gm)
		}
		return "/api/chat", chatBody{genCommon: common, Messages: msgs, Tools: offeredTools(&req)}, nil
	case protocol.KindGenerate:
		return "/api/generate", generateBody{genCommon: common, Prompt: req.Prompt, System: req.System, Raw: req.Raw}, nil
	default:
		return "", nil, fmt.Errorf("%w: ollama: unknown request kind %q", backend.ErrBadRequest, req.Kind)
	}
}

// Generate streams req from /api/chat or /api/generate. Each chunk with
// text becomes a Delta of one token (Ollama sends one chunk per sampled
// token, except that it merges the pieces of a UTF-8 character and holds
// back text near stop strings, so Usage — Ollama's eval_count — can exceed
// the deltas' sum). Chunks with logprobs count one token per logprob.
func (c *Client) Generate(ctx context.Context, req protocol.Request, emit func(backend.Delta) error) (backend.Result, error) {
	path, body, err := toGenRequest(req)
	if err != nil {
		return backend.Result{}, err
	}
	resp, err := c.send(ctx, http.MethodPost, path, body)
	if err != nil {
		return backend.Result{}, err
	}
	// Closing the body before the stream ends drops the connection, which
	// is how Ollama learns to stop generating.
	defer resp.Body.Close()
	res, err := readStream(ctx, resp.Body, req.Options.Logprobs, emit)
	if err == nil {
		// After done the body holds at most its end: reading it lets the
		// connection go back to the pool instead of being closed, which
		// would make the next job pay for a new one.
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	}
	return res, err
}

// errStreamEnded is wrapped when the server stops before done:true.
var errStreamEnded = errors.New("stream ended early")
