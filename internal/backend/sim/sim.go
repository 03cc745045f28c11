// Package sim is a deterministic stand-in for a language model server. It
// serves tests in-process (Sim implements backend.Backend), stands in for
// Ollama when none is installed (`idlegrid up`), runs standalone behind an
// Ollama-compatible HTTP API (Server, `idlegrid sim`), is a zero-cost
// upstream for benchmarks, and gives verification and routing something
// with real structure to work on:
//
//   - the next token is a pure function of the model's Weights, the token
//     sequence so far (prompt then generated tokens, through a rolling hash)
//     and, only when the temperature is above zero, the seed and position.
//     Continuing from a prompt followed by the first k generated tokens
//     yields the rest of the same answer, as a real model with a prefix
//     cache does;
//   - each position has a small candidate set with softmax log-probabilities,
//     so the tokens of one Weights are improbable under another;
//   - time to first token and tokens per second are configurable, and
//     cancellation stops a generation at once;
//   - optionally, prompt processing takes time per token and a bounded
//     prefix cache per model skips the tokens it holds, so time to first
//     token depends on where a conversation was served before, which makes
//     prefix-aware routing measurable.
//
// The model is the same on every machine: it uses its own hash-based PRNG,
// never math/rand, and no clock except for pacing.
package sim

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// Config lists the models a Sim serves.
type Config struct {
	Models []ModelConfig
}

// ModelConfig describes one simulated model.
type ModelConfig struct {
	// Name as clients ask for it. "name" and "name:latest" are the same
	// model, as in Ollama.
	Name string
	// Weights stands for the model's weights: different Weights give a
	// different model (different text, different digest).
	Weights uint64
	// Quantization, Family and ParameterSize are reported as metadata;
	// Quantization also enters the digest.
	Quantization  string
	Family        string
	ParameterSize string
	// ContextLength is reported by Models and /api/show; generation does
	// not enforce it.
	ContextLength int
	// EmbeddingLength is the size of the model's embedding vectors
	// (0: DefaultEmbeddingLength).
	EmbeddingLength int
	// SizeBytes is the size reported by /api/tags.
	SizeBytes int64
	// FirstToken is the time to the first token.
	FirstToken time.Duration
	// TokensPerSecond paces later tokens; 0 means no delay at all.
	TokensPerSecond float64
	// DefaultMaxTokens caps a generation whose request gives no MaxTokens;
	// 0 means 128.
	DefaultMaxTokens int
	// IgnoreEOS never lets the model end by itself: every generation runs
	// to its token limit (finish reason "length"), for benchmarks and tests
	// that need long streams. The log-probabilities are unchanged.
	IgnoreEOS bool
	// PromptTokensPerSecond is the prompt processing rate: each prompt
	// token not found in the prefix cache adds 1/PromptTokensPerSecond to
	// the time to first token. 0 (the default) makes prompt processing
	// free, so the time to first token is FirstToken alone.
	PromptTokensPerSecond float64
	// PrefixCacheTokens sizes the model's prefix cache, like a real
	// server's KV cache: the token sequences of recent requests (prompt and
	// answer) in blocks of CacheBlockTokens, least recently used evicted
	// first. A prompt that starts with cached blocks skips processing them.
	// 0 (the default) disables the cache.
	PrefixCacheTokens int
	// Capabilities the model advertises, with Ollama's names; nil means
	// DefaultCapabilities. A request with tools for a model without
	// "tools" is refused, as Ollama refuses it.
	Capabilities []string
}

// DefaultCapabilities are a simulated model's: it completes text and
// calls tools (structured.go).
func DefaultCapabilities() []string {
	return []string{protocol.CapCompletion, protocol.CapTools}
}

// capabilities are the model's, defaulted.
func (m *model) capabilities() []string {
	if m.Capabilities == nil {
		return DefaultCapabilities()
	}
	return slices.Clone(m.Capabilities)
}

// fallbackMaxTokens is the limit when neither request nor config sets one.
const fallbackMaxTokens = 128

// DefaultConfig is one fast model named "sim": 20 ms to the first token,
// then 200 tokens/s — quick enough for tests and demos, slow enough that a
// stream is visibly a stream and can be cancelled midway.
func DefaultConfig() Config {
	return Config{Models: []ModelConfig{{
		Name:             "sim",
		Weights:          1,
		Quantization:     "Q8_0",
		Family:           "sim",
		ParameterSize:    "1B",
		ContextLength:    4096,
		SizeBytes:        1 << 20,
		FirstToken:       20 * time.Millisecond,
		TokensPerSecond:  200,
		DefaultMaxTokens: fallbackMaxTokens,
	}}}
}

// Sim is the simulator; it implements backend.Backend in-process and is safe
// for concurrent use.
type Sim struct {
	models []model
	vocab  *vocab
	counts cacheCounters
}

var _ backend.Backend = (*Sim)(nil)

// model is a configured model with its derived fields.
type model struct {
	ModelConfig
	canonical string
	digest    string
	cache     *prefixCache // nil without PrefixCacheTokens
}

// New checks cfg and builds a Sim.
func New(cfg Config) (*Sim, error) {
	if len(cfg.Models) == 0 {
		return nil, errors.New("sim: no models configured")
	}
	s := &Sim{vocab: newVocab()}
	seen := map[string]bool{}
	for _, mc := range cfg.Models {
		c := canonicalName(mc.Name)
		switch {
		case strings.TrimSpace(mc.Name) == "":
			return nil, errors.New("sim: a model has no name")
		case seen[c]:
			return nil, fmt.Errorf("sim: model %q configured twice", mc.Name)
		case mc.TokensPerSecond < 0 || mc.FirstToken < 0 || mc.DefaultMaxTokens < 0 || mc.PromptTokensPerSecond < 0 || mc.PrefixCacheTokens < 0 || mc.EmbeddingLength < 0:
			return nil, fmt.Errorf("sim: model %q: negative timing, rate, token limit or cache size", mc.Name)
		case math.IsInf(mc.TokensPerSecond, 0) || math.IsNaN(mc.TokensPerSecond) || math.IsInf(mc.PromptTokensPerSecond, 0) || math.IsNaN(mc.PromptTokensPerSecond):
			return nil, fmt.Errorf("sim: model %q: rates must be finite numbers", mc.Name)
		}
		seen[c] = true
		if mc.DefaultMaxTokens == 0 {
			mc.DefaultMaxTokens = fallbackMaxTokens
		}
		md := model{ModelConfig: mc, canonical: c, digest: Digest(mc.Weights, mc.Quantization)}
		if mc.PrefixCacheTokens > 0 {
			md.cache = newPrefixCache(mc.PrefixCacheTokens)
		}
		s.models = append(s.models, md)
	}
	return s, nil
}

// Digest is the simulated model's digest: the hex sha256 of
// "idlegrid-sim\x00", Weights as 8 big-endian bytes, and the quantization —
// 64 hex characters like an Ollama digest.
func Digest(weights uint64, quantization string) string {
	h := sha256.New()
	h.Write([]byte("idlegrid-sim\x00"))
	h.Write(binary.BigEndian.AppendUint64(nil, weights))
	h.Write([]byte(quantization))
	return hex.EncodeToString(h.Sum(nil))
}

// canonicalName adds Ollama's default tag so that "sim" and "sim:latest"
// name the same model.
func canonicalName(name string) string {
	if !strings.Contains(name[strings.LastIndex(name, "/")+1:], ":") {
		return name + ":latest"
	}
	return name
}

// lookup finds a model by name, with or without its ":latest" tag.
func (s *Sim) lookup(name string) (*model, bool) {
	c := canonicalName(name)
	for i := range s.models {
		if s.models[i].canonical == c {
			return &s.models[i], true
		}
	}
	return nil, false
}

// Models lists the configured models.
func (s *Sim) Models(ctx context.Context) ([]backend.Model, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	out := make([]backend.Model, 0, len(s.models))
	for _, m := range s.models {
		out = append(out, backend.Model{
			Name: m.Name, Digest: m.digest, BackendDigest: m.digest, Quantization: m.Quantization, Family: m.Family,
			ParameterSize: m.ParameterSize, ContextLength: m.ContextLength, SizeBytes: m.SizeBytes,
			Capabilities: m.capabilities(),
		})
	}
	return out, nil
}

// notFoundMessage is Ollama's wording, so clients that match on it work.
func notFoundMessage(name string) string {
	return fmt.Sprintf("model %q not found, try pulling it first", name)
}

func errUnknownKind(k protocol.Kind) error {
	return fmt.Errorf("%w: unknown request kind %q", backend.ErrBadRequest, k)
}
