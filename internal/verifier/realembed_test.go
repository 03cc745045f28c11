package verifier

import (
	"context"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/verify"
)

// TestRealEmbedSamplesJudgedOnOllama: embed answers a provider served are
// recomputed on the real Ollama: tiny's vectors pass, tiny-q4sim's (the
// same weights rounded to 4 bits) claimed as tiny fail on the embedding
// rule.
func TestRealEmbedSamplesJudgedOnOllama(t *testing.T) {
	o := realOllama(t)
	// Minutes: a shared test Ollama queues these behind other clients' work.
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	v, err := New(Config{Gateway: "http://unused", APIKey: "k", Reference: o})
	if err != nil {
		t.Fatal(err)
	}
	mix := verify.DefaultPromptMix("tiny")
	const n = 4
	for _, c := range []struct {
		model string
		pass  bool
	}{{"tiny", true}, {"tiny-q4sim", false}} {
		failed := 0
		for i := range n {
			req := mix.Embed(i, 3)
			served := req
			served.Model = c.model
			got, err := o.Embed(ctx, served)
			if err != nil {
				t.Fatal(err)
			}
			e, verdict, ok := v.judgeEmbeddings(ctx, req, got.Vectors, protocol.Usage{PromptTokens: got.PromptTokens})
			if !ok {
				t.Fatalf("%s: sample %d not judged", c.model, i)
			}
			if !verdict.Pass {
				failed++
				if verdict.Rule != verify.RuleEmbedding {
					t.Errorf("%s: failed on rule %q: %s", c.model, verdict.Rule, verdict.Reason)
				}
			}
			if i == 0 {
				t.Logf("%s served as tiny: cosines %v, verdict %+v", c.model, e.Cosines, verdict)
			}
		}
		if want := map[bool]int{true: 0, false: n}[c.pass]; failed != want {
			t.Errorf("%s served as tiny: %d of %d samples failed, want %d", c.model, failed, n, want)
		}
	}
}
