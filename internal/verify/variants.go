package verify

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// Provider variants: backends that answer like an honest provider on
// other hardware, or like a cheater that claims the reference's model.
// The benchmark and the tests run the judges against them; they are not
// used to serve anything.

// Inflate is a cheater that serves its backend's answers but claims more
// completion tokens than it generated: Factor times as many, plus Extra.
type Inflate struct {
	Backend backend.Backend
	Factor  float64
	Extra   uint64
}

var _ backend.Backend = (*Inflate)(nil)

// Models lists the backend's models.
func (c *Inflate) Models(ctx context.Context) ([]backend.Model, error) {
	return c.Backend.Models(ctx)
}

// Generate passes the answer through and inflates its usage.
func (c *Inflate) Generate(ctx context.Context, req protocol.Request, emit func(backend.Delta) error) (backend.Result, error) {
	res, err := c.Backend.Generate(ctx, req, emit)
	if err != nil {
		return res, err
	}
	res.Usage.CompletionTokens = uint64(math.Ceil(float64(res.Usage.CompletionTokens)*max(c.Factor, 1))) + c.Extra
	return res, nil
}

// Truncate is a cheater that saves compute by generating at most Cap
// tokens and, when it had to cut the answer short, claims that the model
// stopped by itself (finish "stop", usage of the tokens it sent). An
// answer shorter than Cap is served honestly.
type Truncate struct {
	Backend backend.Backend
	Cap     int
}

var _ backend.Backend = (*Truncate)(nil)

// Models lists the backend's models.
func (c *Truncate) Models(ctx context.Context) ([]backend.Model, error) {
	return c.Backend.Models(ctx)
}

// Generate runs req with the token limit lowered to Cap.
func (c *Truncate) Generate(ctx context.Context, req protocol.Request, emit func(backend.Delta) error) (backend.Result, error) {
	limit := req.Options.MaxTokens
	if c.Cap > 0 && (limit <= 0 || limit > c.Cap) {
		req.Options.MaxTokens = c.Cap
	}
	res, err := c.Backend.Generate(ctx, req, emit)
	if err != nil {
		return res, err
	}
	if res.FinishReason == "length" && req.Options.MaxTokens != limit {
		res.FinishReason = "stop"
	}
	return res, nil
}

// Replay is a cheater that answers from a cache of earlier answers: the
// first request is served by its backend, every later one gets the
// answer to an earlier, different prompt (with that answer's usage).
type Replay struct {
	Backend backend.Backend

	mu      sync.Mutex
	answers []replayed
	next    int
}

type replayed struct {
	prompt string
	text   string
	res    backend.Result
}

var _ backend.Backend = (*Replay)(nil)

// Models lists the backend's models.
func (c *Replay) Models(ctx context.Context) ([]backend.Model, error) {
	return c.Backend.Models(ctx)
}

// Generate answers req from the cache when it holds an answer to another
// prompt, and from the backend otherwise.
func (c *Replay) Generate(ctx context.Context, req protocol.Request, emit func(backend.Delta) error) (backend.Result, error) {
	key := promptKey(req)
	c.mu.Lock()
	var hit *replayed
	for i := range c.answers {
		a := &c.answers[(c.next+i)%len(c.answers)]
		if a.prompt != key {
			hit = a
			c.next = (c.next + i + 1) % len(c.answers)
			break
		}
	}
	c.mu.Unlock()
	if hit != nil {
		if hit.text != "" {
			if err := emit(backend.Delta{Text: hit.text, Tokens: int(hit.res.Usage.CompletionTokens)}); err != nil {
				return backend.Result{}, err
			}
		}
		return hit.res, nil
	}
	var sb strings.Builder
	res, err := c.Backend.Generate(ctx, req, func(d backend.Delta) error {
		sb.WriteString(d.Text)
		return emit(d)
	})
	if err != nil {
		return res, err
	}
	c.mu.Lock()
	if len(c.answers) < 16 {
		c.answers = append(c.answers, replayed{prompt: key, text: sb.String(), res: res})
	}
	c.mu.Unlock()
	return res, nil
}

// promptKey identifies a request's prompt.
func promptKey(req protocol.Request) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\x00%s\x00%s", req.Kind, req.System, req.Prompt)
	for _, m := range req.Messages {
		fmt.Fprintf(&b, "\x00%s\x00%s", m.Role, m.Content)
	}
	return b.String()
}

// Fabricate is a cheater that runs no model: it answers with words drawn
// from Words (each with its leading space), between MinWords and MaxWords
// of them, chosen by a hash of the prompt and Seed, and claims the model
// stopped by itself. Drawing Words from the model's own answers makes the
// text look like the model's and keeps every token in its vocabulary.
type Fabricate struct {
	Claims   []backend.Model
	Words    []string
	MinWords int
	MaxWords int
	Seed     uint64
}

var _ backend.Backend = (*Fabricate)(nil)

// Models lists the models it claims.
func (c *Fabricate) Models(context.Context) ([]backend.Model, error) { return c.Claims, nil }

// Generate emits made-up text.
func (c *Fabricate) Generate(ctx context.Context, req protocol.Request, emit func(backend.Delta) error) (backend.Result, error) {
	if err := ctx.Err(); err != nil {
		return backend.Result{}, err
	}
	words := c.Words
	if len(words) == 0 {
		words = fallbackWords
	}
	h := fnv64(promptKey(req)) ^ c.Seed
	lo, hi := max(c.MinWords, 1), max(c.MaxWords, c.MinWords, 1)
	n := lo + int(mix(h)%uint64(hi-lo+1))
	if req.Options.MaxTokens > 0 {
		n = min(n, req.Options.MaxTokens)
	}
	var sb strings.Builder
	for i := range n {
		w := words[mix(h+uint64(i)+1)%uint64(len(words))]
		if !strings.HasPrefix(w, " ") {
			w = " " + w
		}
		sb.WriteString(w)
	}
	toks := len(splitTokens(sb.String()))
	if sb.Len() > 0 {
		if err := emit(backend.Delta{Text: sb.String(), Tokens: toks}); err != nil {
			return backend.Result{}, err
		}
	}
	return backend.Result{
		Usage:        protocol.Usage{PromptTokens: uint64(len(splitTokens(promptText(req)))), CompletionTokens: uint64(toks)},
		FinishReason: "stop",
	}, nil
}

// promptText is the text of req's prompt, without any template.
func promptText(req protocol.Request) string {
	parts := []string{req.System, req.Prompt}
	for _, m := range req.Messages {
		parts = append(parts, m.Content)
	}
	return strings.Join(parts, " ")
}

// fallbackWords are English words for a Fabricate without Words.
var fallbackWords = strings.Fields(`the of and to in is that for it as with was on be by this are
from at or an have not which but all were they their one can has more will about there been would
if its so when what than into other also some time could these two may then first any only new
like such very after most made over many where before through much good should people because well`)

// fnv64 is FNV-1a.
func fnv64(s string) uint64 {
	h := uint64(0xcbf29ce484222325)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 0x100000001b3
	}
	return h
}

// mix is the splitmix64 finalizer.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Reseed is an honest provider that sets a different sampling seed on
// every request: irrelevant under greedy decoding, which must not change
// a single token.
type Reseed struct {
	Backend backend.Backend

	mu sync.Mutex
	n  int64
}

var _ backend.Backend = (*Reseed)(nil)

// Models lists the backend's models.
func (c *Reseed) Models(ctx context.Context) ([]backend.Model, error) {
	return c.Backend.Models(ctx)
}

// Generate runs req with a fresh seed.
func (c *Reseed) Generate(ctx context.Context, req protocol.Request, emit func(backend.Delta) error) (backend.Result, error) {
	c.mu.Lock()
	c.n++
	seed := int64(mix(uint64(c.n)) >> 1)
	c.mu.Unlock()
	req.Options.Seed = &seed
	return c.Backend.Generate(ctx, req, emit)
}

// Substitute is a cheater that claims one model and serves another: it
// advertises its backend's models as they are, but runs every request for
// Claim on Serve instead (a cheaper quantization of the same weights,
// say), text and embeddings alike.
type Substitute struct {
	Backend      backend.Backend
	Claim, Serve string
}

var (
	_ backend.Backend  = (*Substitute)(nil)
	_ backend.Embedder = (*Substitute)(nil)
)

// Models lists the backend's models.
func (c *Substitute) Models(ctx context.Context) ([]backend.Model, error) {
	return c.Backend.Models(ctx)
}

func (c *Substitute) swap(req *protocol.Request) {
	if strings.TrimSuffix(req.Model, ":latest") == strings.TrimSuffix(c.Claim, ":latest") {
		req.Model = c.Serve
	}
}

// Generate runs req on Serve when it asks for Claim.
func (c *Substitute) Generate(ctx context.Context, req protocol.Request, emit func(backend.Delta) error) (backend.Result, error) {
	c.swap(&req)
	return c.Backend.Generate(ctx, req, emit)
}

// Embed computes req's vectors on Serve when it asks for Claim; a backend
// that cannot embed answers backend.ErrBadRequest.
func (c *Substitute) Embed(ctx context.Context, req protocol.Request) (backend.Embeddings, error) {
	e, ok := c.Backend.(backend.Embedder)
	if !ok {
		return backend.Embeddings{}, fmt.Errorf("%w: the backend cannot embed", backend.ErrBadRequest)
	}
	c.swap(&req)
	return e.Embed(ctx, req)
}
