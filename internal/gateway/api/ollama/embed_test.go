package ollama

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

func TestParseEmbed(t *testing.T) {
	for body, want := range map[string]protocol.Request{
		`{"model":"m","input":"hi"}`: {Input: []string{"hi"}},
		`{"model":"m","input":["a","b"],"truncate":false,"dimensions":4,"keep_alive":"5m"}`: {Input: []string{"a", "b"}, Dimensions: 4, Truncate: new(bool)},
		`{"model":"m","input":"","options":{"num_thread":2}}`:                               {},
		`{"model":"m","input":[],"options":null}`:                                           {},
		`{"model":"m"}`: {},
	} {
		p, e := ParseEmbed([]byte(body))
		if e != nil {
			t.Fatalf("%s: %v", body, e)
		}
		r := p.Request
		if r.Kind != protocol.KindEmbed || r.Model != "m" || !slices.Equal(r.Input, want.Input) || r.Dimensions != want.Dimensions ||
			(r.Truncate == nil) != (want.Truncate == nil) || r.Truncate != nil && *r.Truncate != *want.Truncate {
			t.Errorf("%s: %+v, want %+v", body, r, want)
		}
	}
	for body, param := range map[string]string{
		`{"input":"a"}`:                          "model",
		`{"model":"m","input":5}`:                "input",
		`{"model":"m","input":["a",""]}`:         "input[1]",
		`{"model":"m","input":["a",1]}`:          "input[1]",
		`{"model":"m","input":"a","truncate":1}`: "truncate",
		`{"model":"m","dimensions":-1}`:          "dimensions",
		`{"model":"m","options":[]}`:             "options",
	} {
		if _, e := ParseEmbed([]byte(body)); e == nil || e.Param != param {
			t.Errorf("%s: %+v, want an error on %q", body, e, param)
		}
	}
	p, e := ParseEmbeddings([]byte(`{"model":"m","prompt":"hi","options":{}}`))
	if e != nil || !slices.Equal(p.Request.Input, []string{"hi"}) || p.Request.Kind != protocol.KindEmbed {
		t.Fatalf("legacy: %+v %v", p, e)
	}
	if p, e := ParseEmbeddings([]byte(`{"model":"m","prompt":""}`)); e != nil || len(p.Request.Input) != 0 {
		t.Fatalf("legacy, empty prompt: %+v %v", p, e)
	}
}

// TestWriteEmbed: Ollama's shapes, with an empty list (not null) for no
// input.
func TestWriteEmbed(t *testing.T) {
	w := httptest.NewRecorder()
	WriteEmbed(w, "m", nil, 0, time.Millisecond)
	if w.Code != http.StatusOK || w.Body.String() != `{"model":"m","embeddings":[],"total_duration":1000000}`+"\n" {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	w = httptest.NewRecorder()
	WriteEmbed(w, "m", [][]float32{{0.5, 1}}, 3, 0)
	if w.Body.String() != `{"model":"m","embeddings":[[0.5,1]],"prompt_eval_count":3}`+"\n" {
		t.Fatalf("%s", w.Body)
	}
	w = httptest.NewRecorder()
	WriteLegacyEmbedding(w, nil)
	var legacy map[string][]float64
	if json.Unmarshal(w.Body.Bytes(), &legacy) != nil || legacy["embedding"] == nil || len(legacy["embedding"]) != 0 {
		t.Fatalf("legacy: %s", w.Body)
	}
}

func FuzzParseEmbed(f *testing.F) {
	for _, body := range []string{
		`{"model":"m","input":"hi"}`,
		`{"model":"m","input":["a","b"],"truncate":false,"dimensions":4}`,
		`{"model":"m","input":["a",""],"options":{"x":1}}`,
		`{"model":"m","input":[1],"keep_alive":0}`,
		`[]`, `null`, ``, `{"model":`,
	} {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, parse := range []func([]byte) (EmbedParams, *apierr.Error){ParseEmbed, ParseEmbeddings} {
			p, e := parse(body)
			if e != nil {
				if e.Status != http.StatusBadRequest || e.Message == "" || e.Code == "" {
					t.Fatalf("bad error %+v", e)
				}
				continue
			}
			r := p.Request
			if r.Kind != protocol.KindEmbed || r.Model == "" || len(r.Input) > protocol.MaxEmbedInputs || r.Dimensions < 0 ||
				r.Dimensions > protocol.MaxEmbeddingDims || slices.Contains(r.Input, "") {
				t.Fatalf("accepted an unusable request %+v", p)
			}
		}
	})
}
