package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Server serves a Sim over the subset of Ollama's HTTP API that idlegrid
// uses, with Ollama's field names and status codes, so the ollama client,
// the browser provider page and any Ollama tool can talk to it:
//
//	GET  /                 "Ollama is running"
//	GET  /api/version      {"version": ...}
//	GET  /api/tags         the configured models, names exactly as configured
//	POST /api/show         details and model_info with "<arch>.context_length"
//	POST /api/chat         streaming NDJSON unless "stream": false
//	POST /api/generate     likewise
//	POST /v1/chat/completions  OpenAI's chat completions, as Ollama serves them
//	POST /api/embed        one vector per input (Sim.Embed)
//
// Requests may ask for "logprobs" and "top_logprobs" (top-level fields, as
// in newer Ollama); chunks then carry Ollama's "logprobs" array. Where
// Ollama's defaults depend on the model, the simulator's are: temperature 0
// (greedy) and the model's DefaultMaxTokens for num_predict (a negative
// num_predict means the same). Every response carries permissive CORS
// headers because a browser page calls it directly.
//
// Faults can be injected at run time with SetFaults; Stats counts
// generations for tests. A Server is an http.Handler: mount it on any
// http.Server, or use Serve / ListenAndServe.
type Server struct {
	sim     *Sim
	handler http.Handler
	created time.Time

	mu     sync.Mutex
	faults Faults

	requests, completed, cancelled, failed, active atomic.Int64
}

// Faults makes generations misbehave, for testing clients. Each field is a
// token count N, 0 for off. "After N tokens" means: once chunks carrying N
// generated tokens in total have been written and flushed to the client
// (one token per chunk unless a stop string held text back), the server
//
//   - ErrorAfter: writes the line {"error":"..."} and ends the response, as
//     Ollama does when a runner fails mid-stream;
//   - StallAfter: writes nothing more but keeps the connection open until
//     the client goes away (counted as Cancelled);
//   - DropAfter: closes the TCP connection abruptly, with no final chunk.
//
// A generation that ends by itself before N tokens is not affected. With
// "stream": false the same counts apply to generated tokens and ErrorAfter
// answers HTTP 500. Faults are read when a request starts; when several
// are set, the first one reached wins (ErrorAfter, then StallAfter, then
// DropAfter on the same token).
type Faults struct {
	ErrorAfter int
	StallAfter int
	DropAfter  int
}

// Stats counts chat and generate requests.
type Stats struct {
	// Requests received, valid or not.
	Requests int64
	// Completed generations: the final done:true response was written.
	Completed int64
	// Cancelled generations: the client went away (its request context
	// ended, or a write to it failed) before the generation finished.
	Cancelled int64
	// Failed generations: an injected or internal error ended them.
	Failed int64
	// Active generations running now.
	Active int64
}

// NewServer wraps s in an Ollama-compatible HTTP handler.
func NewServer(s *Sim) *Server {
	srv := &Server{sim: s, created: time.Now().UTC()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "Ollama is running")
	})
	mux.HandleFunc("GET /api/version", srv.handleVersion)
	mux.HandleFunc("GET /api/tags", srv.handleTags)
	mux.HandleFunc("POST /api/show", srv.handleShow)
	mux.HandleFunc("POST /api/chat", srv.handleGeneration(true))
	mux.HandleFunc("POST /api/generate", srv.handleGeneration(false))
	mux.HandleFunc("POST /v1/chat/completions", srv.handleOpenAIChat)
	mux.HandleFunc("POST /api/embed", srv.handleEmbed)
	srv.handler = cors(mux)
	return srv
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// SetFaults replaces the faults applied to requests that start from now on.
func (s *Server) SetFaults(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = f
}

func (s *Server) currentFaults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults
}

// Stats returns the counters so far.
func (s *Server) Stats() Stats {
	return Stats{
		Requests:  s.requests.Load(),
		Completed: s.completed.Load(),
		Cancelled: s.cancelled.Load(),
		Failed:    s.failed.Load(),
		Active:    s.active.Load(),
	}
}

// ListenAndServe listens on addr and serves until ctx ends; see Serve.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("sim: listen: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx ends, then shuts down and returns nil. Every
// request's context derives from ctx, so streams in progress stop at once
// instead of holding the shutdown up.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("sim: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		_ = hs.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("sim: serve: %w", err)
	}
	return nil
}

// cors lets browser pages on any origin call the server, answering
// preflight requests itself, including Chrome's private network access
// check for pages that call a server on the visitor's machine.
func cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Access-Control-Allow-Methods", "GET, POST, HEAD, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Accept, User-Agent, X-Requested-With")
		if r.Method == http.MethodOptions {
			if r.Header.Get("Access-Control-Request-Private-Network") == "true" {
				h.Set("Access-Control-Allow-Private-Network", "true")
			}
			h.Set("Access-Control-Max-Age", "43200")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// version is what /api/version reports: a source build of Ollama reports
// "0.0.0" too, and clients treat it as "unknown, assume current".
const version = "0.0.0"

func (s *Server) handleVersion(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"version": version})
}

// apiDetails is Ollama's ModelDetails.
type apiDetails struct {
	ParentModel       string   `json:"parent_model"`
	Format            string   `json:"format"`
	Family            string   `json:"family"`
	Families          []string `json:"families"`
	ParameterSize     string   `json:"parameter_size"`
	QuantizationLevel string   `json:"quantization_level"`
}

func details(m *model) apiDetails {
	return apiDetails{
		Format: "gguf", Family: m.Family, Families: []string{m.Family},
		ParameterSize: m.ParameterSize, QuantizationLevel: m.Quantization,
	}
}

// apiListModel is Ollama's ListModelResponse.
type apiListModel struct {
	Name       string     `json:"name"`
	Model      string     `json:"model"`
	ModifiedAt time.Time  `json:"modified_at"`
	Size       int64      `json:"size"`
	Digest     string     `json:"digest"`
	Details    apiDetails `json:"details"`
}

func (s *Server) handleTags(w http.ResponseWriter, _ *http.Request) {
	list := make([]apiListModel, 0, len(s.sim.models))
	for i := range s.sim.models {
		m := &s.sim.models[i]
		list = append(list, apiListModel{
			Name: m.Name, Model: m.Name, ModifiedAt: s.created, Size: m.SizeBytes,
			Digest: m.digest, Details: details(m),
		})
	}
	writeJSON(w, http.StatusOK, map[string]any{"models": list})
}

// architecture is the "general.architecture" /api/show reports, so the
// context length is under "sim.context_length".
const architecture = "sim"

func (s *Server) handleShow(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Model string `json:"model"`
		Name  string `json:"name"` // deprecated in Ollama, still accepted
	}
	if err := decodeBody(w, r, &in); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if in.Model == "" {
		in.Model = in.Name
	}
	if in.Model == "" {
		writeError(w, http.StatusBadRequest, "model is required")
		return
	}
	m, ok := s.sim.lookup(in.Model)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("model '%s' not found", in.Model))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"modelfile": "# simulated by idlegrid\nFROM " + m.Name + "\n",
		"template":  "{{ range .Messages }}{{ .Role }}: {{ .Content }}\n{{ end }}assistant:",
		"details":   details(m),
		"model_info": map[string]any{
			"general.architecture":            architecture,
			"general.weights":                 m.Weights,
			architecture + ".context_length":  m.ContextLength,
			architecture + ".candidate_count": numCandidates,
		},
		"capabilities": m.capabilities(),
		"modified_at":  s.created,
	})
}

// maxBody bounds a request body: prompts can be long, memory cannot.
const maxBody = 64 << 20

func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("missing request body")
		}
		return err
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers with Ollama's error body.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
