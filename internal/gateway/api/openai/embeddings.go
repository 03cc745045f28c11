package openai

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"

	"github.com/idlegrid/idlegrid/internal/gateway/api/jsonfield"
	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/scheduler"
)

// EmbedParams is a parsed /v1/embeddings request.
type EmbedParams struct {
	// Request is the KindEmbed request providers run.
	Request protocol.Request
	// Base64 (encoding_format "base64") sends each vector as the base64 of
	// its float32 components, little-endian, instead of a JSON array.
	Base64 bool
	// User, Provider and ProviderObject are as in Params.
	User           string
	Provider       scheduler.Preferences
	ProviderObject jsonfield.Object
}

// ParseEmbeddings parses a /v1/embeddings body: model, input (a string or
// an array of 1 to 2048 strings, none empty, as OpenAI requires),
// encoding_format ("float", the default, or "base64"), dimensions (1 or
// more; the provider's backend refuses more than the model has), user and
// provider. Token-id inputs (arrays of integers) are refused: token ids
// depend on each provider's tokenizer, which the gateway does not know.
func ParseEmbeddings(body []byte) (EmbedParams, *apierr.Error) {
	var p EmbedParams
	o, e := jsonfield.DecodeBody(body)
	if e != nil {
		return p, e
	}
	p.Request.Kind = protocol.KindEmbed
	raw, ok := o.Get("model")
	if !ok {
		return p, jsonfield.Invalid(jsonfield.CodeMissing, "model", "you must provide a model parameter")
	}
	if p.Request.Model, e = jsonfield.AsString(raw, "model"); e != nil {
		return p, e
	}
	if p.Request.Model == "" {
		return p, jsonfield.Invalid(jsonfield.CodeMissing, "model", "you must provide a model parameter: 'model' is empty")
	}
	if p.Request.Input, e = parseEmbedInput(o); e != nil {
		return p, e
	}
	switch f, e := o.OptString("encoding_format", "encoding_format"); {
	case e != nil:
		return p, e
	case f == "base64":
		p.Base64 = true
	case f != "" && f != "float":
		return p, jsonfield.Invalid(jsonfield.CodeInvalidValue, "encoding_format", "invalid value for 'encoding_format': %q; supported values are 'float' and 'base64'", f)
	}
	if n, ok, e := o.OptIntIn("dimensions", "dimensions", 1, protocol.MaxEmbeddingDims); e != nil {
		return p, e
	} else if ok {
		p.Request.Dimensions = int(n)
	}
	if p.User, e = o.OptString("user", "user"); e != nil {
		return p, e
	}
	if p.Provider, p.ProviderObject, e = parseProvider(o); e != nil {
		return p, e
	}
	return p, nil
}

func parseEmbedInput(o jsonfield.Object) ([]string, *apierr.Error) {
	raw, ok := o.Get("input")
	if !ok {
		return nil, jsonfield.Invalid(jsonfield.CodeMissing, "input", "you must provide an input parameter")
	}
	if raw[0] == '"' {
		s, e := jsonfield.AsString(raw, "input")
		if e != nil {
			return nil, e
		}
		if s == "" {
			return nil, jsonfield.Invalid(jsonfield.CodeInvalidValue, "input", "'input' cannot be an empty string")
		}
		return []string{s}, nil
	}
	if raw[0] != '[' {
		return nil, jsonfield.TypeError("input", "a string or an array of strings", raw)
	}
	items, e := jsonfield.AsArray(raw, "input")
	if e != nil {
		return nil, e
	}
	switch {
	case len(items) == 0:
		e := jsonfield.Invalid(codeEmptyArray, "input", "'input' cannot be an empty array")
		return nil, e
	case len(items) > protocol.MaxEmbedInputs:
		return nil, jsonfield.Invalid(jsonfield.CodeInvalidValue, "input", "'input' can hold at most %d items, got %d", protocol.MaxEmbedInputs, len(items))
	}
	out := make([]string, len(items))
	for i, item := range items {
		param := fmt.Sprintf("input[%d]", i)
		if len(item) == 0 || item[0] != '"' {
			if len(item) > 0 && (item[0] == '[' || item[0] == '-' || item[0] >= '0' && item[0] <= '9') {
				return nil, jsonfield.Invalid(jsonfield.CodeUnsupportedValue, "input", "token-id inputs are not supported on this network: send the input as text")
			}
			return nil, jsonfield.TypeError(param, "a string", item)
		}
		if out[i], e = jsonfield.AsString(item, param); e != nil {
			return nil, e
		}
		if out[i] == "" {
			return nil, jsonfield.Invalid(jsonfield.CodeInvalidValue, param, "'%s' cannot be an empty string", param)
		}
	}
	return out, nil
}

// EmbeddingsResponse is /v1/embeddings' answer.
type EmbeddingsResponse struct {
	Object string          `json:"object"` // "list"
	Data   []EmbeddingData `json:"data"`
	Model  string          `json:"model"`
	Usage  EmbeddingsUsage `json:"usage"`
}

// EmbeddingData is one input's vector: a []float32 or, with
// encoding_format "base64", a string.
type EmbeddingData struct {
	Object    string `json:"object"` // "embedding"
	Index     int    `json:"index"`
	Embedding any    `json:"embedding"`
}

// EmbeddingsUsage counts the inputs' tokens; embeddings generate none.
type EmbeddingsUsage struct {
	PromptTokens uint64 `json:"prompt_tokens"`
	TotalTokens  uint64 `json:"total_tokens"`
}

// NewEmbeddingsResponse builds the answer for model (as the consumer named
// it) from the vectors in input order and the prompt tokens billed.
func NewEmbeddingsResponse(p EmbedParams, model string, vectors [][]float32, promptTokens uint64) EmbeddingsResponse {
	r := EmbeddingsResponse{Object: "list", Data: make([]EmbeddingData, len(vectors)), Model: model,
		Usage: EmbeddingsUsage{PromptTokens: promptTokens, TotalTokens: promptTokens}}
	for i, v := range vectors {
		var emb any = v
		if p.Base64 {
			emb = Base64Vector(v)
		}
		r.Data[i] = EmbeddingData{Object: "embedding", Index: i, Embedding: emb}
	}
	return r
}

// Base64Vector is v as encoding_format "base64" sends it: the standard
// base64 of its float32 components, 4 bytes little-endian each.
func Base64Vector(v []float32) string {
	b := make([]byte, 0, 4*len(v))
	for _, f := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(f))
	}
	return base64.StdEncoding.EncodeToString(b)
}

// WriteEmbeddings writes r as the 200 answer.
func WriteEmbeddings(w http.ResponseWriter, r EmbeddingsResponse) {
	b, err := json.Marshal(r)
	if err != nil {
		apierr.WriteOpenAI(w, apierr.Internal("could not encode the embeddings"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(append(b, '\n'))
}
