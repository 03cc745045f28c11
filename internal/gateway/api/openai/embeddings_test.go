package openai

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/idlegrid/idlegrid/internal/gateway/api/jsonfield"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

func TestParseEmbeddings(t *testing.T) {
	p, e := ParseEmbeddings([]byte(`{"model":"m","input":["a","b"],"encoding_format":"base64","dimensions":8,"user":"u","provider":{"sort":"price"}}`))
	if e != nil {
		t.Fatal(e)
	}
	r := p.Request
	if r.Kind != protocol.KindEmbed || r.Model != "m" || !slices.Equal(r.Input, []string{"a", "b"}) || r.Dimensions != 8 || !p.Base64 || p.User != "u" || p.ProviderObject == nil {
		t.Fatalf("%+v", p)
	}
	p, e = ParseEmbeddings([]byte(`{"model":"m","input":"one","encoding_format":null,"dimensions":null}`))
	if e != nil || !slices.Equal(p.Request.Input, []string{"one"}) || p.Base64 || p.Request.Dimensions != 0 {
		t.Fatalf("%+v %v", p, e)
	}
	for body, want := range map[string]struct{ param, code string }{
		`{"input":"x"}`:                                     {"model", jsonfield.CodeMissing},
		`{"model":"m"}`:                                     {"input", jsonfield.CodeMissing},
		`{"model":"m","input":""}`:                          {"input", jsonfield.CodeInvalidValue},
		`{"model":"m","input":[]}`:                          {"input", codeEmptyArray},
		`{"model":"m","input":["a",""]}`:                    {"input[1]", jsonfield.CodeInvalidValue},
		`{"model":"m","input":[1,2]}`:                       {"input", jsonfield.CodeUnsupportedValue},
		`{"model":"m","input":[[1],[2]]}`:                   {"input", jsonfield.CodeUnsupportedValue},
		`{"model":"m","input":["a",{}]}`:                    {"input[1]", jsonfield.CodeInvalidType},
		`{"model":"m","input":5}`:                           {"input", jsonfield.CodeInvalidType},
		`{"model":"m","input":"x","encoding_format":"hex"}`: {"encoding_format", jsonfield.CodeInvalidValue},
		`{"model":"m","input":"x","dimensions":0}`:          {"dimensions", jsonfield.CodeInvalidValue},
		`{"model":"m","input":"x","dimensions":"8"}`:        {"dimensions", jsonfield.CodeInvalidType},
	} {
		_, e := ParseEmbeddings([]byte(body))
		if e == nil || e.Param != want.param || e.Code != want.code {
			t.Errorf("%s: %+v, want param %q code %q", body, e, want.param, want.code)
		}
	}
	many := `{"model":"m","input":[` + strings.Repeat(`"x",`, protocol.MaxEmbedInputs) + `"x"]}`
	if _, e := ParseEmbeddings([]byte(many)); e == nil || e.Param != "input" {
		t.Errorf("%d inputs: %+v", protocol.MaxEmbedInputs+1, e)
	}
}

// TestWriteEmbeddings: OpenAI's shape, with base64 the little-endian
// float32 bytes of the same vector.
func TestWriteEmbeddings(t *testing.T) {
	vs := [][]float32{{0.5, -0.25}, {1, 0}}
	for _, b64 := range []bool{false, true} {
		w := httptest.NewRecorder()
		WriteEmbeddings(w, NewEmbeddingsResponse(EmbedParams{Base64: b64}, "m", vs, 7))
		var got struct {
			Object string `json:"object"`
			Model  string `json:"model"`
			Data   []struct {
				Object    string          `json:"object"`
				Index     int             `json:"index"`
				Embedding json.RawMessage `json:"embedding"`
			} `json:"data"`
			Usage map[string]int `json:"usage"`
		}
		if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &got) != nil || got.Object != "list" || got.Model != "m" || len(got.Data) != 2 ||
			got.Usage["prompt_tokens"] != 7 || got.Usage["total_tokens"] != 7 {
			t.Fatalf("base64 %v: %d %s", b64, w.Code, w.Body)
		}
		for i, d := range got.Data {
			var v []float32
			if b64 {
				var s string
				json.Unmarshal(d.Embedding, &s)
				raw, _ := base64.StdEncoding.DecodeString(s)
				for k := 0; k+4 <= len(raw); k += 4 {
					v = append(v, math.Float32frombits(binary.LittleEndian.Uint32(raw[k:])))
				}
			} else {
				json.Unmarshal(d.Embedding, &v)
			}
			if d.Object != "embedding" || d.Index != i || !slices.Equal(v, vs[i]) {
				t.Fatalf("base64 %v: data[%d] = %s %d %v", b64, i, d.Object, d.Index, v)
			}
		}
	}
}

func FuzzParseEmbeddings(f *testing.F) {
	for _, body := range []string{
		`{"model":"m","input":"hello"}`,
		`{"model":"m","input":["a","b"],"encoding_format":"base64","dimensions":8}`,
		`{"model":"m","input":[[1,2],[3]]}`,
		`{"model":"m","input":[1,-2]}`,
		`{"model":"m","input":["",null]}`,
		`{"model":"m","input":"x","dimensions":1e9,"provider":{"order":["a"]}}`,
		`[]`, `null`, ``, `{"model":`,
	} {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, e := ParseEmbeddings(body)
		if e != nil {
			if e.Status != http.StatusBadRequest || e.Type != "invalid_request_error" || e.Message == "" || e.Code == "" {
				t.Fatalf("bad error %+v", e)
			}
			return
		}
		r := p.Request
		if r.Kind != protocol.KindEmbed || r.Model == "" || len(r.Input) == 0 || len(r.Input) > protocol.MaxEmbedInputs ||
			r.Dimensions < 0 || r.Dimensions > protocol.MaxEmbeddingDims || slices.Contains(r.Input, "") {
			t.Fatalf("accepted an unusable request %+v", p)
		}
	})
}
