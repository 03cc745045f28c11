package verify

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// Canary judges greedy canaries where neither the provider's backend nor
// the reference returns log-probabilities (Ollama v0.6.5): only texts can
// be compared.
//
// Comparing the provider's answer with the reference's whole answer
// would fail an honest provider at its first near-tie flip, after which
// the two texts share nothing. So the reference replays the answer
// instead: it generates greedily, and at the first token where the
// provider's text differs it counts a divergence, takes the provider's
// token and generates again from the provider's own prefix — the greedy
// counterpart of teacher forcing. An honest answer diverges only at
// near-ties; another model, a cheaper quantization or made-up text
// diverges much more often. One case is a batch of canaries; it fails
// when its divergences (or early stops) exceed what a provider flipping
// at most FlipRate of its tokens reaches with probability Alpha.
type Canary struct {
	// FlipRate is the share of tokens at which an honest provider may
	// take another greedy choice than the reference (hardware noise at
	// near-ties).
	FlipRate float64
	// Alpha is the most probability with which an honest provider
	// flipping at FlipRate fails a case.
	Alpha float64
	// MinDivergences is the fewest divergences that can fail a case.
	MinDivergences int
	// MaxReplays caps the reference generations per canary; text left
	// after the cap is not compared.
	MaxReplays int
	// CountSlack, CountSlackRate and DefaultMaxTokens are as in Judge.
	CountSlack       int
	CountSlackRate   float64
	DefaultMaxTokens int
	// TopLogprobs is how many candidates per position the replay asks
	// the reference for (0: none). Where the reference returns them, each
	// divergence gets the provider's token's deficit there (Replayed.
	// Deficits) at no extra generation: the replay that diverged already
	// ran from the provider's prefix.
	TopLogprobs int
	// Step, when positive, caps each reference generation at that many
	// tokens: 1 checks a sampled answer token by token, each call
	// decoding one token from the provider's prefix (which the
	// reference's prefix cache mostly holds), where a greedy replay from
	// a sampled answer would decode the rest of the budget at every
	// divergence. MaxReplays then bounds the tokens checked.
	Step int
}

// DefaultCanary tolerates honest providers that flip up to 2% of their
// greedy tokens, twice what the simulator's largest honest noise control
// does, and fails them with probability at most 10⁻⁶ per case.
func DefaultCanary() Canary {
	return Canary{FlipRate: 0.02, Alpha: 1e-6, MinDivergences: 3, MaxReplays: 8, CountSlack: 1, CountSlackRate: 0.02, TopLogprobs: 10}
}

// Replayed is one canary replayed against the reference.
type Replayed struct {
	// Tokens counts the provider's tokens the replay confirmed: matched
	// reference tokens and the provider's token at each divergence.
	Tokens int
	// Divergences counts the positions where the provider's token was not
	// the reference's greedy choice (an answer that runs on where the
	// reference ends counts one); FirstDivergence is the token index of
	// the first (-1: none).
	Divergences     int
	FirstDivergence int
	// EarlyStop: the provider claimed to stop by itself where the
	// reference goes on.
	EarlyStop bool
	// Unverified: the replay cap stopped the comparison before the end
	// of the text.
	Unverified bool
	// Claimed, Finish and Limit are the provider's claimed completion
	// tokens, finish reason and the request's token limit.
	Claimed uint64
	Finish  string
	Limit   int
	// Replays counts reference generations; RefPrompt and RefDecoded the
	// tokens they prefilled and decoded (the verifier's compute).
	Replays               int
	RefPrompt, RefDecoded int
	// Logprobs: the reference returned log-probabilities (it was asked
	// for them and supports them). Deficits then holds, for each
	// divergence where the reference scored the position, how far the
	// provider's token is below the reference's best there, in nats; a
	// token outside the reference's top candidates gets the deficit of
	// the last of them, a lower bound.
	Logprobs bool      `json:",omitempty"`
	Deficits []float64 `json:",omitempty"`
	// EndScored: the provider stopped by itself (finish "stop") where the
	// reference went on, and the reference scored that position;
	// EndDeficit is then how far ending there is below the reference's
	// best, in nats (endDeficit).
	EndScored  bool    `json:",omitempty"`
	EndDeficit float64 `json:",omitempty"`
}

// Replay replays resp, the provider's answer to the greedy request req,
// against the reference ref.
func (c Canary) Replay(ctx context.Context, ref backend.Backend, req protocol.Request, resp Response) (Replayed, error) {
	text := resp.Text
	limit := req.Options.MaxTokens
	if limit <= 0 {
		limit = c.DefaultMaxTokens
	}
	out := Replayed{FirstDivergence: -1, Claimed: resp.Usage.CompletionTokens, Finish: resp.FinishReason, Limit: limit}
	if limit <= 0 {
		limit = len(splitTokens(text)) + 1 // unknown: let the reference go one token past the text
	}
	pos := 0
	for {
		if out.Replays >= max(c.MaxReplays, 1) {
			out.Unverified = pos < len(text)
			break
		}
		if out.Tokens >= limit {
			// Text beyond the limit: count it, the length rule judges it.
			out.Tokens += len(splitTokens(text[pos:]))
			break
		}
		budget := limit - out.Tokens
		n := budget
		if c.Step > 0 {
			n = min(n, c.Step)
		}
		next := continueFrom(req, text[:pos], n)
		next.Options.Logprobs, next.Options.TopLogprobs = c.TopLogprobs > 0, max(c.TopLogprobs, 0)
		g, err := generate(ctx, ref, next)
		if err != nil {
			return Replayed{}, fmt.Errorf("verify: canary replay: %w", err)
		}
		out.Replays++
		out.RefPrompt += int(g.usage.PromptTokens)
		out.RefDecoded += int(g.usage.CompletionTokens)
		out.Logprobs = out.Logprobs || g.logprobs != nil
		matched, last, at := true, 0, 0
		for _, tk := range g.tokens {
			if tk == "" || !strings.HasPrefix(text[pos:], tk) {
				matched = false
				break
			}
			pos += len(tk)
			last = len(tk)
			out.Tokens++
			at++
		}
		if pos == len(text) {
			if !matched && resp.FinishReason == "stop" {
				out.EarlyStop = true // the reference goes on where the provider stopped
				if at < len(g.logprobs) && len(g.logprobs[at]) > 0 {
					out.EndScored, out.EndDeficit = true, endDeficit(g.logprobs[at])
				}
			}
			break
		}
		if matched && g.finish == "length" {
			if n < budget {
				continue // a step ended; the next one goes on from here
			}
			// The reference used the whole budget; the rest of the text is
			// beyond it.
			out.Tokens += len(splitTokens(text[pos:]))
			break
		}
		if last > 0 && midWord(text, pos) {
			// The last match ended inside one of the provider's words:
			// the provider's token there was longer than the reference's,
			// so the divergence is at that token.
			pos -= last
			out.Tokens--
			at--
		}
		// The provider's token here is not the reference's greedy choice
		// (or the reference ended): take the provider's and go on.
		out.Divergences++
		if out.FirstDivergence < 0 {
			out.FirstDivergence = out.Tokens
		}
		if at < len(g.logprobs) && len(g.logprobs[at]) > 0 {
			out.Deficits = append(out.Deficits, tokenDeficit(g.logprobs[at], text[pos:]))
		}
		pos += firstToken(text[pos:])
		out.Tokens++
	}
	return out, nil
}

// Decide judges a case made of replayed canaries.
func (c Canary) Decide(rs []Replayed) Verdict {
	tokens, div, early := 0, 0, 0
	for _, r := range rs {
		tokens += r.Tokens
		div += r.Divergences
		if r.EarlyStop {
			early++
		}
	}
	for i, r := range rs {
		switch {
		case r.Finish != "stop" && r.Finish != "length":
			return failed(RuleFinish, tokens, div, 0, "canary %d: finish reason %q is neither stop nor length", i, r.Finish)
		case !r.Unverified && r.Claimed > uint64(c.allowance(r.Tokens)):
			return failed(RuleCount, tokens, div, 0, "canary %d: %d completion tokens claimed, the text holds %d (allowed %d)", i, r.Claimed, r.Tokens, c.allowance(r.Tokens))
		case !r.Unverified && r.Finish == "length" && r.Limit > 0 && (c.allowance(r.Tokens) < r.Limit || r.Tokens > c.allowance(r.Limit)):
			return failed(RuleLength, tokens, div, 0, "canary %d: finish \"length\" with %d tokens, the limit is %d", i, r.Tokens, r.Limit)
		}
	}
	if need := poissonThreshold(c.FlipRate*float64(tokens), c.Alpha, c.MinDivergences); div >= need {
		return failed(RuleDivergence, tokens, div, 0, "%d greedy divergences in %d tokens of %d canaries; noise flipping %.1f%% of tokens reaches %d with probability ≤ %.0e",
			div, tokens, len(rs), 100*c.FlipRate, need, c.Alpha)
	}
	if need := poissonThreshold(c.FlipRate*float64(len(rs)), c.Alpha, 2); early >= need {
		return failed(RuleEarlyStop, tokens, div, 0, "%d of %d canaries stopped where the reference goes on (limit %d)", early, len(rs), need)
	}
	return pass(tokens, div, 0)
}

// midWord reports whether text runs on inside a word at byte pos.
func midWord(text string, pos int) bool {
	if pos <= 0 || pos >= len(text) {
		return false
	}
	before, _ := utf8.DecodeLastRuneInString(text[:pos])
	after, _ := utf8.DecodeRuneInString(text[pos:])
	return isWordRune(before) && isWordRune(after)
}

func (c Canary) allowance(counted int) int { return allowance(counted, c.CountSlack, c.CountSlackRate) }

// continueFrom is req with prefix as the start of the answer, greedy and
// limited to maxTokens more tokens: a chat gets prefix as a final
// assistant message (or appended to one), a completion request gets it
// appended to the prompt. The reference then continues the answer from
// prefix, as a server with a prefix cache continues a conversation.
func continueFrom(req protocol.Request, prefix string, maxTokens int) protocol.Request {
	r := req
	zero := 0.0
	r.Options.Temperature = &zero
	r.Options.MaxTokens = maxTokens
	r.Options.Logprobs, r.Options.TopLogprobs = false, 0
	if prefix == "" {
		return r
	}
	switch r.Kind {
	case protocol.KindChat:
		r.Messages = slices.Clone(req.Messages)
		if n := len(r.Messages); n > 0 && r.Messages[n-1].Role == "assistant" {
			r.Messages[n-1].Content += prefix
		} else {
			r.Messages = append(r.Messages, protocol.ChatMessage{Role: "assistant", Content: prefix})
		}
	default:
		r.Prompt += prefix
	}
	return r
}

// tokenDeficit is how far the candidate of top that rest starts with (the
// longest such) is below the best of top; with none, how far the last of
// top is, a lower bound.
func tokenDeficit(top []protocol.TopLogprob, rest string) float64 {
	best, worst := math.Inf(-1), math.Inf(1)
	mine, mineLen := math.NaN(), 0
	for _, t := range top {
		best, worst = max(best, t.Logprob), min(worst, t.Logprob)
		if t.Token != "" && len(t.Token) > mineLen && strings.HasPrefix(rest, t.Token) {
			mine, mineLen = t.Logprob, len(t.Token)
		}
	}
	if mineLen == 0 {
		mine = worst
	}
	return deficit(best, mine)
}

// endDeficit is how far ending at a position is below the reference's
// best candidate there: the best end-of-text candidate's deficit (a
// candidate with no text, or a special token such as "</s>" or
// "<|im_end|>", is how servers show one), or, with none among the
// candidates, the last candidate's, a lower bound.
func endDeficit(top []protocol.TopLogprob) float64 {
	best, worst, end := math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, t := range top {
		best, worst = max(best, t.Logprob), min(worst, t.Logprob)
		if endToken(t.Token) {
			end = max(end, t.Logprob)
		}
	}
	if math.IsInf(end, -1) {
		end = worst
	}
	return deficit(best, end)
}

// endToken reports whether a candidate's text is how a server shows an
// end-of-text token.
func endToken(tok string) bool {
	switch {
	case tok == "", tok == "</s>", tok == "<eos>", tok == "<|endoftext|>", tok == "<|eot_id|>", tok == "<end_of_turn>":
		return true
	case strings.HasPrefix(tok, "<|") && strings.HasSuffix(tok, "|>") && strings.Contains(tok, "end"):
		return true
	}
	return false
}

// joined is the text of tokens.
func joined(tokens []protocol.TokenLogprob) string {
	var sb strings.Builder
	for _, t := range tokens {
		sb.WriteString(t.Token)
	}
	return sb.String()
}

// generated is one reference generation, split into tokens; logprobs
// holds each token's top candidates when the reference returned them
// (nil otherwise).
type generated struct {
	tokens   []string
	logprobs [][]protocol.TopLogprob
	usage    protocol.Usage
	finish   string
}

func generate(ctx context.Context, b backend.Backend, req protocol.Request) (generated, error) {
	var g generated
	res, err := b.Generate(ctx, req, func(d backend.Delta) error {
		if n := len(d.Logprobs); n > 0 && n == max(d.Tokens, 1) && joined(d.Logprobs) == d.Text {
			// One entry per token: the tokens as the reference split them.
			for len(g.logprobs) < len(g.tokens) {
				g.logprobs = append(g.logprobs, nil)
			}
			for _, lp := range d.Logprobs {
				g.tokens = append(g.tokens, lp.Token)
				g.logprobs = append(g.logprobs, lp.Top)
			}
			return nil
		}
		if d.Tokens == 1 {
			g.tokens = append(g.tokens, d.Text)
		} else {
			g.tokens = append(g.tokens, splitTokens(d.Text)...)
		}
		return nil
	})
	if err != nil {
		return generated{}, err
	}
	g.usage, g.finish = res.Usage, res.FinishReason
	return g, nil
}

// Collect runs req on b and returns the response a provider would send.
func Collect(ctx context.Context, b backend.Backend, req protocol.Request) (Response, error) {
	var sb strings.Builder
	res, err := b.Generate(ctx, req, func(d backend.Delta) error {
		sb.WriteString(d.Text)
		return nil
	})
	if err != nil {
		return Response{}, err
	}
	return Response{Text: sb.String(), FinishReason: res.FinishReason, Usage: res.Usage}, nil
}
