package sim

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// Generate runs req through the simulated model, emitting one Delta per
// token (a Delta may hold more than one token, or a token may be held back,
// only while text could be the start of a stop string). Usage counts every
// generated token, EOS excluded, as Ollama's eval_count does: with a stop
// string it includes the tokens whose text was cut.
func (s *Sim) Generate(ctx context.Context, req protocol.Request, emit func(backend.Delta) error) (res backend.Result, err error) {
	m, ok := s.lookup(req.Model)
	if !ok {
		return backend.Result{}, fmt.Errorf("sim: %w: %s", backend.ErrModelNotFound, notFoundMessage(req.Model))
	}
	if req.SendsTools() && !slices.Contains(m.capabilities(), protocol.CapTools) {
		// Ollama's words, so clients that match on them work.
		return backend.Result{}, fmt.Errorf("sim: %w: %s does not support tools", backend.ErrBadRequest, req.Model)
	}
	if req.ImageCount() > 0 && !slices.Contains(m.capabilities(), protocol.CapVision) {
		return backend.Result{}, fmt.Errorf("sim: %w: model %s does not accept images (it has no vision capability)", backend.ErrBadRequest, req.Model)
	}
	prompt, err := render(req)
	if err != nil {
		return backend.Result{}, fmt.Errorf("sim: %w", err)
	}
	if req.Kind == protocol.KindGenerate {
		// The answer's context is the whole sequence: the earlier context
		// and prompt (render) and the answer.
		var text strings.Builder
		inner := emit
		emit = func(d backend.Delta) error {
			text.WriteString(d.Text)
			return inner(d)
		}
		defer func() {
			if err == nil {
				res.Context = encodeContext(prompt + text.String())
			}
		}()
	}
	g := &generation{vocab: s.vocab, m: m, st: newSeqState(), max: m.DefaultMaxTokens}
	for _, t := range tokenize(prompt) {
		g.push(t)
	}
	g.promptTokens = g.st.pos
	cached := 0
	if m.cache != nil {
		cached = m.cache.lookup(g.blocks) * CacheBlockTokens
	}
	s.counts.add(g.promptTokens, cached)
	g.prefill = m.prefill(g.promptTokens - cached)
	o := req.Options
	if o.MaxTokens > 0 {
		g.max = o.MaxTokens
	}
	g.samp = sampling{topP: 1, ignoreEOS: m.IgnoreEOS}
	if o.Temperature != nil && *o.Temperature > 0 {
		g.samp.temperature = *o.Temperature
		// Without a seed, sampling differs from run to run, as in Ollama.
		g.samp.seed = rand.Uint64()
		if o.Seed != nil {
			g.samp.seed = uint64(*o.Seed)
		}
	}
	if o.TopP != nil && *o.TopP > 0 && *o.TopP < 1 {
		g.samp.topP = *o.TopP
	}
	if o.Logprobs {
		g.topN = max(o.TopLogprobs, 0)
		g.logprobs = true
	}
	for _, stop := range o.Stop {
		if stop != "" { // an empty stop string would end every answer at once
			g.stops = append(g.stops, stop)
		}
	}
	if res, ok, err := g.structured(ctx, &req, emit); ok {
		return res, err
	}
	return g.run(ctx, emit)
}

// The simulator's token context (protocol.Request.Context) is the text's
// Unicode code points: any text has one, and it decodes back exactly, so
// continuing from a context is generating after that text.

func encodeContext(text string) []int {
	out := make([]int, 0, len(text))
	for _, r := range text {
		out = append(out, int(r))
	}
	return out
}

func decodeContext(ids []int) (string, error) {
	var b strings.Builder
	for i, id := range ids {
		if id < 0 || id > unicode.MaxRune || !utf8.ValidRune(rune(id)) {
			return "", fmt.Errorf("%w: context[%d] = %d is no token id of this model", backend.ErrBadRequest, i, id)
		}
		b.WriteRune(rune(id))
	}
	return b.String(), nil
}

// generation is one Generate call in progress.
type generation struct {
	vocab        *vocab
	m            *model
	st           seqState
	promptTokens int
	max          int
	samp         sampling
	logprobs     bool
	topN         int
	stops        []string
	// prefill is the prompt processing time before the first token;
	// blocks are the sequence's block hashes for the prefix cache (only
	// collected when the model has one).
	prefill time.Duration
	blocks  []uint64

	// held is generated text not yet emitted because it may begin a stop
	// string; heldTokens and heldLP are the tokens generated since the last
	// emit.
	held       string
	heldTokens int
	heldLP     []protocol.TokenLogprob
}

func (g *generation) run(ctx context.Context, emit func(backend.Delta) error) (backend.Result, error) {
	start := time.Now()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var per time.Duration
	if g.m.TokensPerSecond > 0 {
		per = time.Duration(float64(time.Second) / g.m.TokensPerSecond)
	}
	var first time.Time
	n, finish := 0, "length"
	for n < g.max {
		// Deadlines from start rather than a sleep per token, so that slow
		// emits do not add up to a slower rate than configured.
		deadline := start.Add(g.m.FirstToken + g.prefill + time.Duration(n)*per)
		if err := pace(ctx, timer, deadline); err != nil {
			return backend.Result{}, fmt.Errorf("sim: %w", err)
		}
		if first.IsZero() {
			first = time.Now()
			// The prompt is processed: its blocks are in the cache now.
			g.cacheBlocks()
		}
		d := g.vocab.next(g.m.Weights, g.st)
		slot := g.vocab.choose(&d, g.samp, g.m.Weights, g.st)
		idx := d.cand[slot]
		if idx == eosIndex {
			finish = "stop"
			break
		}
		tok := g.vocab.texts[idx]
		if g.logprobs {
			g.heldLP = append(g.heldLP, g.tokenLogprob(&d, slot))
		}
		g.push(tok)
		n++
		stopped, err := g.add(tok, emit)
		if err != nil {
			return backend.Result{}, err
		}
		if stopped {
			finish = "stop"
			g.held = ""
			break
		}
	}
	if err := g.flush(len(g.held), emit); err != nil {
		return backend.Result{}, err
	}
	if first.IsZero() {
		first = time.Now()
	}
	// The answer's blocks too: a follow-up turn starts with prompt and
	// answer.
	g.cacheBlocks()
	return backend.Result{
		Usage:        protocol.Usage{PromptTokens: uint64(g.promptTokens), CompletionTokens: uint64(n)},
		FinishReason: finish,
		PromptEval:   first.Sub(start),
		Eval:         time.Since(first),
	}, nil
}

// push appends a token to the sequence, noting each full cache block.
func (g *generation) push(tok string) {
	g.st = g.st.push(tok)
	if g.m.cache != nil && g.st.pos%CacheBlockTokens == 0 {
		g.blocks = append(g.blocks, g.st.hash)
	}
}

// cacheBlocks puts the sequence's blocks so far in the prefix cache.
func (g *generation) cacheBlocks() {
	if g.m.cache != nil {
		g.m.cache.insert(g.blocks)
	}
}

// pace waits until deadline or ctx ends, whichever is first; it always
// reports a cancelled ctx, even when no wait is needed.
func pace(ctx context.Context, timer *time.Timer, deadline time.Time) error {
	wait := time.Until(deadline)
	if wait <= 0 {
		return ctx.Err()
	}
	timer.Reset(wait)
	select {
	case <-ctx.Done():
		timer.Stop()
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

// add appends a token's text and emits what can no longer be part of a stop
// string. stopped reports that a stop string was found; the text before it
// has then been emitted and the rest dropped.
func (g *generation) add(tok string, emit func(backend.Delta) error) (stopped bool, err error) {
	g.held += tok
	g.heldTokens++
	if len(g.stops) == 0 {
		return false, g.flush(len(g.held), emit)
	}
	cut := -1
	for _, s := range g.stops {
		if i := strings.Index(g.held, s); i >= 0 && (cut < 0 || i < cut) {
			cut = i
		}
	}
	if cut >= 0 {
		return true, g.flush(cut, emit)
	}
	keep := 0 // longest suffix of held that starts some stop string
	for _, s := range g.stops {
		for k := min(len(s)-1, len(g.held)); k > keep; k-- {
			if strings.HasSuffix(g.held, s[:k]) {
				keep = k
				break
			}
		}
	}
	return false, g.flush(len(g.held)-keep, emit)
}

// flush emits the first n bytes of held text with the tokens generated
// since the last emit. emit's error is returned as it is.
func (g *generation) flush(n int, emit func(backend.Delta) error) error {
	if n <= 0 {
		return nil
	}
	d := backend.Delta{Text: g.held[:n], Tokens: g.heldTokens, Logprobs: g.heldLP}
	g.held, g.heldTokens, g.heldLP = g.held[n:], 0, nil
	return emit(d)
}

// tokenLogprob describes candidate slot of d for a client that asked for
// logprobs. The values are the model's own distribution (temperature 1,
// before top-p), whatever the request's sampling, so that re-scoring a
// response does not depend on how it was sampled.
func (g *generation) tokenLogprob(d *dist, slot int) protocol.TokenLogprob {
	idx := d.cand[slot]
	lp := protocol.TokenLogprob{Token: g.vocab.texts[idx], Logprob: g.vocab.logprob(d, idx)}
	for _, alt := range g.vocab.top(d, g.topN) {
		lp.Top = append(lp.Top, protocol.TopLogprob{
			Token:   g.vocab.texts[d.cand[alt]],
			Logprob: math.Log1p(-floorMass) + d.logit[alt] - d.logZ,
		})
	}
	return lp
}
