package ollama

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/idlegrid/idlegrid/internal/gateway/api/jsonfield"
	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/gateway/sink"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// Model is one model of the network's catalogue, as /api/tags and /api/show
// describe it.
type Model struct {
	// Name as consumers ask for it, e.g. "llama3.2:1b".
	Name string
	// Digest is the model's identity (protocol.Model.Digest: the content
	// of its weights, template and parameters), with or without "sha256:".
	Digest string
	// BackendDigest is the first provider's own backend digest (Ollama's
	// manifest digest, which differs between machines); "" when unknown.
	BackendDigest string
	Family        string
	ParameterSize string
	Quantization  string
	// ContextLength in tokens; 0 when unknown.
	ContextLength int
	// SizeBytes of the weights; 0 when unknown.
	SizeBytes int64
	// ParameterCount and EmbeddingLength as the first provider reports
	// them; 0 when unknown (ParameterCount then comes from ParameterSize).
	ParameterCount  int64
	EmbeddingLength int
	// ModifiedAt is when the network first saw this digest.
	ModifiedAt time.Time
	// Capabilities are what some provider of the model can do (Ollama's
	// names); empty means completion.
	Capabilities []string
}

// details is Ollama's model details object.
type details struct {
	ParentModel       string   `json:"parent_model"`
	Format            string   `json:"format"`
	Family            string   `json:"family"`
	Families          []string `json:"families"`
	ParameterSize     string   `json:"parameter_size"`
	QuantizationLevel string   `json:"quantization_level"`
}

func newDetails(m Model) details {
	d := details{Format: "gguf", Family: m.Family, ParameterSize: m.ParameterSize, QuantizationLevel: m.Quantization}
	if m.Family != "" {
		d.Families = []string{m.Family}
	}
	return d
}

// digestHex is the digest as /api/tags shows it: bare hex, no algorithm.
func digestHex(d string) string { return strings.TrimPrefix(d, "sha256:") }

type tagsModel struct {
	Name       string    `json:"name"`
	Model      string    `json:"model"`
	ModifiedAt time.Time `json:"modified_at"`
	Size       int64     `json:"size"`
	Digest     string    `json:"digest"`
	// BackendDigest is not Ollama's: a provider's own Ollama digest of the
	// model, beside the identity in digest.
	BackendDigest string  `json:"backend_digest,omitempty"`
	Details       details `json:"details"`
}

type tagsResponse struct {
	Models []tagsModel `json:"models"`
}

// WriteTags writes the /api/tags response, in the given order; the list is
// never null, even when empty.
func WriteTags(w http.ResponseWriter, models []Model) {
	res := tagsResponse{Models: make([]tagsModel, 0, len(models))}
	for _, m := range models {
		res.Models = append(res.Models, tagsModel{Name: m.Name, Model: m.Name, ModifiedAt: m.ModifiedAt.UTC(), Size: m.SizeBytes, Digest: digestHex(m.Digest), BackendDigest: digestHex(m.BackendDigest), Details: newDetails(m)})
	}
	writeJSON(w, res)
}

// ParseShow returns the model an /api/show body names, in "model" or the
// legacy "name" that older clients send.
func ParseShow(body []byte) (string, *apierr.Error) {
	o, e := jsonfield.DecodeBody(body)
	if e != nil {
		return "", e
	}
	for _, key := range []string{"model", "name"} {
		name, e := o.OptString(key, key)
		if e != nil {
			return "", e
		}
		if name != "" {
			return name, nil
		}
	}
	return "", jsonfield.Invalid(jsonfield.CodeMissing, "model", "model is required")
}

type showResponse struct {
	Modelfile    string         `json:"modelfile"`
	Parameters   string         `json:"parameters"`
	Template     string         `json:"template"`
	Details      details        `json:"details"`
	ModelInfo    map[string]any `json:"model_info"`
	Capabilities []string       `json:"capabilities"`
	ModifiedAt   time.Time      `json:"modified_at"`
}

// unknownArchitecture stands for a model whose provider reports no family:
// model_info keys are "<architecture>.<field>", and clients read them.
const unknownArchitecture = "unknown"

// WriteShow writes the /api/show response for m. Templates and parameters
// belong to each provider's copy of the model, so they are empty; the
// modelfile only records what the network knows. model_info always holds
// the four members Ollama's CLI reads (general.architecture,
// general.parameter_count, <architecture>.context_length and
// <architecture>.embedding_length), 0 where unknown: releases up to 0.6
// panic when one is missing.
func WriteShow(w http.ResponseWriter, m Model) {
	arch := m.Family
	if arch == "" {
		arch = unknownArchitecture
	}
	params := m.ParameterCount
	if params <= 0 {
		params = ParameterCount(m.ParameterSize)
	}
	info := map[string]any{
		"general.architecture":     arch,
		"general.parameter_count":  params,
		arch + ".context_length":   m.ContextLength,
		arch + ".embedding_length": m.EmbeddingLength,
	}
	var mf strings.Builder
	mf.WriteString("# Modelfile generated by idlegrid: the model is served by the network's providers\n")
	if m.Digest != "" {
		mf.WriteString("# digest: sha256:" + digestHex(m.Digest) + "\n")
	}
	if m.BackendDigest != "" && digestHex(m.BackendDigest) != digestHex(m.Digest) {
		mf.WriteString("# backend digest: sha256:" + digestHex(m.BackendDigest) + " (a provider's own Ollama digest)\n")
	}
	mf.WriteString("FROM " + m.Name + "\n")
	writeJSON(w, showResponse{
		Modelfile:    mf.String(),
		Details:      newDetails(m),
		ModelInfo:    info,
		Capabilities: capabilities(m),
		ModifiedAt:   m.ModifiedAt.UTC(),
	})
}

func capabilities(m Model) []string {
	if len(m.Capabilities) == 0 {
		return []string{protocol.CapCompletion}
	}
	return m.Capabilities
}

// ParameterCount reads a parameter size label such as "8.0B", "513K" or
// "70M" as a count; 0 when it cannot.
func ParameterCount(size string) int64 {
	size = strings.TrimSpace(size)
	if size == "" {
		return 0
	}
	scale := map[byte]float64{'K': 1e3, 'M': 1e6, 'B': 1e9, 'T': 1e12}[strings.ToUpper(size[len(size)-1:])[0]]
	num := size
	if scale == 0 {
		scale = 1
	} else {
		num = size[:len(size)-1]
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f <= 0 || math.IsInf(f*scale, 0) || f*scale > 1<<52 {
		return 0
	}
	return int64(math.Round(f * scale))
}

// psModel is one entry of /api/ps: Ollama's ProcessModelResponse.
type psModel struct {
	Name          string    `json:"name"`
	Model         string    `json:"model"`
	Size          int64     `json:"size"`
	Digest        string    `json:"digest"`
	Details       details   `json:"details"`
	ExpiresAt     time.Time `json:"expires_at"`
	SizeVRAM      int64     `json:"size_vram"`
	ContextLength int       `json:"context_length"`
}

// WriteRunning writes the /api/ps response: the models connected providers
// serve now, each kept until expires (providers keep their models loaded
// for as long as they serve them).
func WriteRunning(w http.ResponseWriter, models []Model, expires time.Time) {
	res := struct {
		Models []psModel `json:"models"`
	}{Models: make([]psModel, 0, len(models))}
	for _, m := range models {
		res.Models = append(res.Models, psModel{Name: m.Name, Model: m.Name, Size: m.SizeBytes, Digest: digestHex(m.Digest),
			Details: newDetails(m), ExpiresAt: expires.UTC(), ContextLength: m.ContextLength})
	}
	writeJSON(w, res)
}

// PullRequest is a parsed /api/pull body.
type PullRequest struct {
	Model  string
	Stream bool
}

// ParsePull reads an /api/pull body: the model in "model" or the legacy
// "name", and stream (default true); insecure and the rest are ignored.
func ParsePull(body []byte) (PullRequest, *apierr.Error) {
	var p PullRequest
	name, e := ParseShow(body)
	if e != nil {
		return p, e
	}
	o, _ := jsonfield.DecodeBody(body) // ParseShow decoded it
	if p.Stream, e = o.OptBool("stream", "stream", true); e != nil {
		return p, e
	}
	p.Model = name
	return p, nil
}

// pullStatuses are the progress lines of a pull that finds the model
// present: what Ollama streams for a model it already has, with no layer
// to download.
var pullStatuses = []string{"pulling manifest", "verifying sha256 digest", "writing manifest", "success"}

// WritePulled answers /api/pull for a model the network serves: there is
// nothing to download (providers hold the weights), so the stream is
// Ollama's statuses for a model already present, ending in "success"; one
// {"status":"success"} without streaming.
func WritePulled(w http.ResponseWriter, p PullRequest) {
	if !p.Stream {
		writeJSON(w, map[string]string{"status": "success"})
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	for _, s := range pullStatuses {
		b, _ := sink.Marshal(map[string]string{"status": s})
		if _, err := w.Write(append(b, '\n')); err != nil {
			return
		}
	}
}

// WritePullNotFound answers /api/pull for a model no provider serves as
// Ollama answers a name its registry does not have: streamed, a 200 with
// "pulling manifest" and then an error line (clients print its message);
// not streamed, a 500 with the error.
func WritePullNotFound(w http.ResponseWriter, p PullRequest) {
	msg := fmt.Sprintf("pull model manifest: file does not exist (no provider of this network serves %q, and the network downloads no models: GET /api/tags lists the ones it serves)", p.Model)
	if !p.Stream {
		apierr.WriteOllama(w, &apierr.Error{Status: http.StatusInternalServerError, Type: "api_error", Code: "model_not_found", Message: msg})
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	for _, v := range []map[string]string{{"status": "pulling manifest"}, {"error": msg}} {
		b, _ := sink.Marshal(v)
		if _, err := w.Write(append(b, '\n')); err != nil {
			return
		}
	}
}

// WriteVersion writes the /api/version response.
func WriteVersion(w http.ResponseWriter, version string) {
	writeJSON(w, map[string]string{"version": version})
}

// WriteLoaded answers a LoadOnly request the way Ollama does once a model
// is loaded (or unloaded, for p.Unload): one done object with an empty
// response and done_reason "load" or "unload", whether or not the request
// asked to stream. now stamps created_at.
func WriteLoaded(w http.ResponseWriter, p Params, now time.Time) {
	reason := "load"
	if p.Unload {
		reason = "unload"
	}
	writeJSON(w, newLine(p.Request.Kind == protocol.KindChat, p.Request.Model, now, "", reason, true, nil, nil))
}

// writeJSON writes a 200 JSON response. A failed write means the consumer
// left; there is nobody to tell.
func writeJSON(w http.ResponseWriter, v any) {
	b, err := sink.Marshal(v)
	if err != nil {
		apierr.WriteOllama(w, apierr.Internal("could not encode the response"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append(b, '\n'))
}
