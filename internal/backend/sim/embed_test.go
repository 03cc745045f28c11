package sim

import (
	"errors"
	"math"
	"testing"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

func embedReq(model string, inputs ...string) protocol.Request {
	return protocol.Request{Kind: protocol.KindEmbed, Model: model, Input: inputs}
}

func cosine(a, b []float32) float64 {
	var dot, na, nb float64
	for i := range a {
		dot, na, nb = dot+float64(a[i])*float64(b[i]), na+float64(a[i])*float64(a[i]), nb+float64(b[i])*float64(b[i])
	}
	return dot / math.Sqrt(na*nb)
}

// TestEmbed: one unit vector per input, the same bits every time; texts
// that share words are closer than texts that do not; other weights give
// unrelated vectors; the prompt tokens are the inputs' tokens.
func TestEmbed(t *testing.T) {
	other := ModelConfig{Name: "other", Weights: 2, EmbeddingLength: 32}
	s := newSim(t, fastConfig(other))
	inputs := []string{"the cat sat on the mat", "the cat sat on a mat", "stock prices fell sharply today"}
	res, err := s.Embed(t.Context(), embedReq("sim", inputs...))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Vectors) != 3 || len(res.Vectors[0]) != DefaultEmbeddingLength {
		t.Fatalf("%d vectors of %d dimensions", len(res.Vectors), len(res.Vectors[0]))
	}
	want := uint64(0)
	for _, in := range inputs {
		want += uint64(len(tokenize(in)))
	}
	if res.PromptTokens != want {
		t.Fatalf("prompt tokens %d, want %d", res.PromptTokens, want)
	}
	for i, v := range res.Vectors {
		if n := cosine(v, v); math.Abs(n-1) > 1e-6 {
			t.Fatalf("vector %d is not a unit vector", i)
		}
	}
	again, err := s.Embed(t.Context(), embedReq("sim:latest", inputs[0]))
	if err != nil || !equalVectors(again.Vectors[0], res.Vectors[0]) {
		t.Fatalf("the same text embedded alone differs (%v)", err)
	}
	near, far := cosine(res.Vectors[0], res.Vectors[1]), cosine(res.Vectors[0], res.Vectors[2])
	if near < 0.5 || far > 0.5 || near <= far {
		t.Fatalf("cosine of near texts %.3f, of unrelated ones %.3f", near, far)
	}
	o, err := s.Embed(t.Context(), embedReq("other", inputs[0]))
	if err != nil || len(o.Vectors[0]) != 32 {
		t.Fatalf("other model: %v", err)
	}
	cut, err := s.Embed(t.Context(), protocol.Request{Kind: protocol.KindEmbed, Model: "sim", Input: inputs[:1], Dimensions: 8})
	if err != nil || len(cut.Vectors[0]) != 8 || math.Abs(cosine(cut.Vectors[0], cut.Vectors[0])-1) > 1e-6 {
		t.Fatalf("dimensions 8: %v", err)
	}
}

func equalVectors(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

func TestEmbedErrors(t *testing.T) {
	short := ModelConfig{Name: "short", Weights: 3, ContextLength: 4}
	s := newSim(t, fastConfig(short))
	no := false
	for name, tc := range map[string]struct {
		req  protocol.Request
		want error
	}{
		"unknown model":         {embedReq("nope", "x"), backend.ErrModelNotFound},
		"not an embed request":  {protocol.Request{Kind: protocol.KindChat, Model: "sim"}, backend.ErrBadRequest},
		"too many dimensions":   {protocol.Request{Kind: protocol.KindEmbed, Model: "sim", Input: []string{"x"}, Dimensions: DefaultEmbeddingLength + 1}, backend.ErrBadRequest},
		"too long, no truncate": {protocol.Request{Kind: protocol.KindEmbed, Model: "short", Input: []string{"one two three four five"}, Truncate: &no}, backend.ErrBadRequest},
	} {
		if _, err := s.Embed(t.Context(), tc.req); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	// Truncated by default: the first ContextLength tokens only.
	long, err := s.Embed(t.Context(), embedReq("short", "one two three four five"))
	if err != nil || long.PromptTokens != 4 {
		t.Fatalf("truncated: %+v, %v", long.PromptTokens, err)
	}
	first, _ := s.Embed(t.Context(), embedReq("short", "one two three four"))
	if !equalVectors(long.Vectors[0], first.Vectors[0]) {
		t.Fatal("a truncated input is not its first tokens' vector")
	}
}

// TestPerturbedEmbeddings: a perturbed model's vectors stay close to the
// model's, closer the smaller its noise, and the same seed gives the same
// bits.
func TestPerturbedEmbeddings(t *testing.T) {
	s := newSim(t, fastConfig())
	inputs := []string{"hello", "the cat sat on the mat", "a somewhat longer sentence about idle graphics cards earning their keep"}
	ref, err := s.Embed(t.Context(), embedReq("sim", inputs...))
	if err != nil {
		t.Fatal(err)
	}
	worst := func(noise float64) float64 {
		p := &Perturbed{Sim: s, Noise: noise, Seed: 9}
		got, err := p.Embed(t.Context(), embedReq("sim", inputs...))
		if err != nil {
			t.Fatal(err)
		}
		again, _ := p.Embed(t.Context(), embedReq("sim", inputs...))
		w := 1.0
		for i := range got.Vectors {
			if !equalVectors(got.Vectors[i], again.Vectors[i]) {
				t.Fatalf("noise %v: the same seed gave other bits", noise)
			}
			w = min(w, cosine(got.Vectors[i], ref.Vectors[i]))
		}
		return w
	}
	if c := worst(0); c < 1-1e-7 {
		t.Fatalf("no noise: cosine %v", c)
	}
	hw, quant := worst(0.01), worst(0.1)
	t.Logf("worst cosine to the model: noise 0.01 %.7f, noise 0.1 %.7f", hw, quant)
	if !(hw > quant) || hw < 0.9999 || quant > 0.9999 {
		t.Fatalf("noise 0.01 gives cosine %.7f, noise 0.1 %.7f", hw, quant)
	}
}
