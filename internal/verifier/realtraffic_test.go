package verifier

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/backend/ollama"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/verify"
)

// noLogprobs is a reference that returns no log-probabilities (an older
// Ollama, another server).
type noLogprobs struct{ backend.Backend }

func (b noLogprobs) Generate(ctx context.Context, req protocol.Request, emit func(backend.Delta) error) (backend.Result, error) {
	return b.Backend.Generate(ctx, req, func(d backend.Delta) error {
		d.Logprobs = nil
		return emit(d)
	})
}

// realOllama is a client of the Ollama at OLLAMA_URL, or skips.
func realOllama(t *testing.T) *ollama.Client {
	t.Helper()
	u := os.Getenv("OLLAMA_URL")
	if u == "" {
		t.Skip("OLLAMA_URL not set: start a test Ollama (v0.13.5, models tiny and tiny-q4sim) with shared/scripts/ollama-test-server.sh")
	}
	return ollama.New(u, nil)
}

// traffic is n greedy requests for "tiny" as consumers send them, and the
// answers model gives them: "tiny" for an honest provider, "tiny-q4sim"
// (the same weights rounded to 4 bits) for one that claims tiny.
func traffic(t *testing.T, ctx context.Context, b backend.Backend, model string, n int, temp float64) ([]protocol.Request, []verify.Response) {
	t.Helper()
	mix := verify.DefaultPromptMix("tiny")
	mix.Seed = 7
	var reqs []protocol.Request
	var resps []verify.Response
	for i := range n {
		req := mix.Canary(i)
		req.System = ""
		req.Options.MaxTokens = 48
		req.Options.Temperature = &temp
		served := req
		served.Model = model
		resp, err := verify.Collect(ctx, b, served)
		if err != nil {
			t.Fatal(err)
		}
		reqs, resps = append(reqs, req), append(resps, resp)
	}
	return reqs, resps
}

// TestRealTrafficJudgedOnOllama: greedy traffic a provider served is
// judged on the real Ollama by replay, with the deficits of the
// provider's tokens where the reference returns log-probabilities, and by
// replay alone where it returns none: the tiny-q4sim answers claimed as
// tiny fail, the tiny answers pass.
func TestRealTrafficJudgedOnOllama(t *testing.T) {
	o := realOllama(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const n = 8
	for _, ref := range []struct {
		name string
		b    backend.Backend
	}{{"logprobs", o}, {"no logprobs", noLogprobs{o}}} {
		v, err := New(Config{Gateway: "http://unused", APIKey: "k", Reference: ref.b})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			model string
			pass  bool
		}{{"tiny", true}, {"tiny-q4sim", false}} {
			reqs, resps := traffic(t, ctx, o, c.model, n, 0)
			failed, tokens, refDecoded := 0, 0, 0
			for i := range reqs {
				rp, verdict, ok := v.replaySample(ctx, reqs[i], resps[i], false)
				if !ok {
					t.Fatalf("%s, %s: a greedy sample was not judged", ref.name, c.model)
				}
				if rp.Logprobs != (ref.name == "logprobs") {
					t.Errorf("%s: replay logprobs %v", ref.name, rp.Logprobs)
				}
				if !verdict.Pass {
					failed++
				}
				tokens += rp.Tokens
				refDecoded += rp.RefDecoded
			}
			t.Logf("%s, %s served as tiny: %d of %d greedy samples failed (%d tokens; the reference decoded %d)", ref.name, c.model, failed, n, tokens, refDecoded)
			switch {
			case c.pass && failed > 0:
				t.Errorf("%s: %d of %d honest samples failed", ref.name, failed, n)
			case !c.pass && failed < n/2:
				t.Errorf("%s: only %d of %d samples of tiny-q4sim served as tiny failed", ref.name, failed, n)
			}
		}
		v.mu.Lock()
		said := v.noLogprobs
		v.mu.Unlock()
		if said != (ref.name == "no logprobs") {
			t.Errorf("%s: noLogprobs %v", ref.name, said)
		}
	}
}

// TestRealSampledTrafficOnOllama: a sampled answer (temperature > 0) is
// judged by the deficits of its tokens where the reference returns
// log-probabilities (the cost logged), and not at all where it returns
// none.
func TestRealSampledTrafficOnOllama(t *testing.T) {
	o := realOllama(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	reqs, resps := traffic(t, ctx, o, "tiny", 4, 0.8)
	v, err := New(Config{Gateway: "http://unused", APIKey: "k", Reference: o})
	if err != nil {
		t.Fatal(err)
	}
	calls, decoded, tokens := 0, 0, 0
	for i := range reqs {
		rp, verdict, ok := v.replaySample(ctx, reqs[i], resps[i], false)
		if !ok || !verdict.Pass {
			t.Errorf("honest sampled answer: judged %v, %+v", ok, verdict)
		}
		calls, decoded, tokens = calls+rp.Replays, decoded+rp.RefDecoded, tokens+rp.Tokens
	}
	t.Logf("4 sampled answers: %d reference calls decoding %d tokens checked %d tokens", calls, decoded, tokens)
	none, err := New(Config{Gateway: "http://unused", APIKey: "k", Reference: noLogprobs{o}})
	if err != nil {
		t.Fatal(err)
	}
	none.noLogprobs = true // learned from an earlier replay
	if _, _, ok := none.replaySample(ctx, reqs[0], resps[0], false); ok {
		t.Error("a sampled answer was judged without log-probabilities")
	}
}

// TestRealEarlyStopScored: a greedy answer that claims to have stopped
// where the real Ollama goes on is scored at its end from the reference's
// log-probabilities (the end rule's input), and judged with it.
func TestRealEarlyStopScored(t *testing.T) {
	o := realOllama(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	reqs, resps := traffic(t, ctx, o, "tiny", 2, 0)
	v, err := New(Config{Gateway: "http://unused", APIKey: "k", Reference: o})
	if err != nil {
		t.Fatal(err)
	}
	for i := range reqs {
		// The provider's answer of 48 tokens, cut to its first half and
		// claimed as a natural stop.
		resp := resps[i]
		resp.Text, resp.FinishReason = resp.Text[:len(resp.Text)/2], "stop"
		resp.Usage.CompletionTokens /= 2
		rp, verdict, ok := v.replaySample(ctx, reqs[i], resp, false)
		if !ok || !rp.Logprobs {
			t.Fatalf("not judged with log-probabilities: %v %+v", ok, rp)
		}
		if !rp.EarlyStop || !rp.EndScored {
			t.Fatalf("the early stop was not scored: %+v", rp)
		}
		t.Logf("stopped after %d tokens: ending there is %.2f nats below the reference's best; verdict %+v", rp.Tokens, rp.EndDeficit, verdict)
	}
}
