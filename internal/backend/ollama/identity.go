package ollama

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strings"
	"unicode/utf8"
)

// A model's identity is what determines its outputs, hashed so that the same
// model has the same identity on every machine.
//
// Ollama's own digest (/api/tags) is the sha256 of the model's manifest, and
// the manifest of a model made with `ollama create` from a local GGUF records
// the file's local path ("from"): the same weights get another digest in
// every model folder. The layers themselves are content-addressed, and
// /api/show names them: its modelfile says FROM (weights, projectors) and
// ADAPTER with the blobs' paths, whose file names are "sha256-<hex>" on
// every Ollama, and it returns the template, system prompt, parameters and
// messages that shape the prompt and the sampling. The identity is the hex
// sha256 of those, length-prefixed in a fixed order (identityVersion
// below), with the parameter lines sorted (Ollama prints them in map
// order). Anything that differs only in where Ollama keeps its files, or
// in the manifest's bookkeeping, leaves it unchanged.
//
// A server whose /api/show names no content-addressed weights (the
// simulator's Ollama-compatible server, a remote model) has no such layers
// to hash: its models keep the server's own digest as their identity.

// identityVersion starts the hashed text, so that a change in what is hashed
// can never collide with an identity of the old form.
const identityVersion = "idlegrid-model-identity/1"

// showInfo is what /api/show returns that determines a model's outputs.
type showInfo struct {
	Modelfile  string `json:"modelfile"`
	Template   string `json:"template"`
	System     string `json:"system"`
	Parameters string `json:"parameters"`
	Renderer   string `json:"renderer"`
	Parser     string `json:"parser"`
	Messages   []struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	} `json:"messages"`
}

// layers returns the content-addressed blobs the modelfile names, each as
// "<command> sha256:<hex>" in the modelfile's order; none when the
// modelfile names no blob (then the model has no content identity).
func (s showInfo) layers() []string {
	var out []string
	weights := false
	for line := range strings.Lines(s.Modelfile) {
		cmd, arg, ok := strings.Cut(strings.Trim(line, asciiSpace), " ")
		cmd = strings.ToUpper(cmd)
		if !ok || cmd != "FROM" && cmd != "ADAPTER" {
			continue
		}
		hexDigest, ok := blobDigest(strings.Trim(arg, asciiSpace))
		if !ok {
			continue
		}
		weights = weights || cmd == "FROM"
		out = append(out, cmd+" sha256:"+hexDigest)
	}
	if !weights {
		return nil
	}
	return out
}

// asciiSpace is the whitespace the identity's text rules know: only ASCII,
// so that the browser provider (static/contribute/ollama.js) reads the same
// text the same way.
const asciiSpace = " \t\n\v\f\r"

// blobDigest reads the sha256 from a blob path ".../sha256-<64 hex>" (or
// Windows' "...\sha256-<hex>", or "sha256:<hex>").
func blobDigest(p string) (string, bool) {
	base := path.Base(strings.ReplaceAll(p, `\`, "/"))
	var h string
	switch {
	case strings.HasPrefix(base, "sha256-"):
		h = base[len("sha256-"):]
	case strings.HasPrefix(base, "sha256:"):
		h = base[len("sha256:"):]
	default:
		return "", false
	}
	h = strings.ToLower(h)
	if len(h) != 64 || strings.Trim(h, "0123456789abcdef") != "" {
		return "", false
	}
	return h, true
}

// IdentityFromShow returns the identity of the model an /api/show answer
// describes, or "" when it names no content-addressed weights (then the
// server's own digest stands for the model). Models and Identity use it;
// so can anyone who holds an /api/show answer, such as a verifier.
func IdentityFromShow(body []byte) (string, error) {
	var s showInfo
	if err := json.Unmarshal(body, &s); err != nil {
		return "", fmt.Errorf("ollama: /api/show: %w", err)
	}
	return s.identity(), nil
}

// identity returns the model's identity, or "" when /api/show names no
// content-addressed weights.
func (s showInfo) identity() string {
	layers := s.layers()
	if len(layers) == 0 {
		return ""
	}
	var params []string
	for line := range strings.Lines(s.Parameters) {
		f := strings.FieldsFunc(line, func(r rune) bool { return r < utf8.RuneSelf && strings.ContainsRune(asciiSpace, r) })
		if len(f) > 0 {
			params = append(params, strings.Join(f, " "))
		}
	}
	slices.Sort(params)
	h := sha256.New()
	field := func(name, value string) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(value)))
		h.Write([]byte(name))
		h.Write(n[:])
		h.Write([]byte(value))
	}
	field("version", identityVersion)
	for _, l := range layers {
		field("layer", l)
	}
	field("template", s.Template)
	field("system", s.System)
	for _, p := range params {
		field("parameter", p)
	}
	for _, m := range s.Messages {
		field("message.role", m.Role)
		field("message.content", m.Content)
	}
	field("renderer", s.Renderer)
	field("parser", s.Parser)
	return hex.EncodeToString(h.Sum(nil))
}
