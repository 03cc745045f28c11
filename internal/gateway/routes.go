package gateway

import (
	"fmt"
	"io"
	"net/http"

	"github.com/idlegrid/idlegrid/internal/gateway/api/ollama"
	"github.com/idlegrid/idlegrid/internal/gateway/api/openai"
	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/gateway/samplefeed"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// Route is one endpoint of the gateway's consumer API. The route table is
// the one list of them: the handler serves it and metrics label requests
// by its paths.
type Route struct {
	Method string
	// Path as http.ServeMux patterns take it ("/v1/receipts/{id}").
	Path string
	// Generation: the request runs a job, so its handler enters
	// placement (serve in place.go), where a peer gateway is one of the
	// candidates.
	Generation bool
	// Ollama: errors in Ollama's shape ({"error": "..."}), else OpenAI's.
	Ollama bool
	// Loose: the path has no 405 for other methods (a pattern with a
	// wildcard, which the mux cannot pair with a method-less twin).
	Loose   bool
	handler func(*Gateway) http.HandlerFunc
}

// routes is the consumer API.
var routes = []Route{
	{Method: "POST", Path: "/v1/chat/completions", Generation: true, handler: func(g *Gateway) http.HandlerFunc {
		return g.openAIGeneration(openai.ParseChat, openai.NewChatSink, "chatcmpl-")
	}},
	{Method: "POST", Path: "/v1/completions", Generation: true, handler: func(g *Gateway) http.HandlerFunc {
		return g.openAIGeneration(openai.ParseCompletion, openai.NewCompletionSink, "cmpl-")
	}},
	{Method: "POST", Path: "/v1/responses", Generation: true, handler: func(g *Gateway) http.HandlerFunc { return g.handleResponses }},
	{Method: "POST", Path: "/v1/embeddings", Generation: true, handler: func(g *Gateway) http.HandlerFunc { return g.handleOpenAIEmbeddings }},
	{Method: "GET", Path: "/v1/models", handler: func(g *Gateway) http.HandlerFunc { return g.handleOpenAIModels }},
	{Method: "GET", Path: "/v1/models/{id...}", Loose: true, handler: func(g *Gateway) http.HandlerFunc { return g.handleOpenAIModel }},
	{Method: "GET", Path: "/v1/receipts/{id}", Loose: true, handler: func(g *Gateway) http.HandlerFunc { return g.handleReceipt }},
	{Method: "GET", Path: "/v1/account", handler: func(g *Gateway) http.HandlerFunc { return g.handleAccount }},
	{Method: "GET", Path: samplefeed.Path, handler: func(g *Gateway) http.HandlerFunc { return g.handleSamples }},
	{Method: "POST", Path: "/api/chat", Generation: true, Ollama: true, handler: func(g *Gateway) http.HandlerFunc {
		return g.ollamaGeneration(ollama.ParseChat, ollama.NewChatSink, "chat-")
	}},
	{Method: "POST", Path: "/api/generate", Generation: true, Ollama: true, handler: func(g *Gateway) http.HandlerFunc {
		return g.ollamaGeneration(ollama.ParseGenerate, ollama.NewGenerateSink, "gen-")
	}},
	{Method: "POST", Path: "/api/embed", Generation: true, Ollama: true, handler: func(g *Gateway) http.HandlerFunc { return g.handleOllamaEmbed(false) }},
	{Method: "POST", Path: "/api/embeddings", Generation: true, Ollama: true, handler: func(g *Gateway) http.HandlerFunc { return g.handleOllamaEmbed(true) }},
	{Method: "GET", Path: "/api/tags", Ollama: true, handler: func(g *Gateway) http.HandlerFunc { return g.handleOllamaTags }},
	{Method: "POST", Path: "/api/show", Ollama: true, handler: func(g *Gateway) http.HandlerFunc { return g.handleOllamaShow }},
	{Method: "GET", Path: "/api/version", Ollama: true, handler: func(g *Gateway) http.HandlerFunc { return g.handleOllamaVersion }},
	{Method: "GET", Path: "/api/ps", Ollama: true, handler: func(g *Gateway) http.HandlerFunc { return g.handleOllamaPs }},
	{Method: "POST", Path: "/api/pull", Ollama: true, handler: func(g *Gateway) http.HandlerFunc { return g.handleOllamaPull }},
}

// Routes returns the consumer API's routes, in the table's order.
func Routes() []Route { return append([]Route(nil), routes...) }

// MetricsRoutes are the path prefixes metrics label requests by: every
// route's path up to its first wildcard, the provider endpoint and the
// web UI.
func MetricsRoutes() []string {
	out := []string{protocol.Path, "/ui"}
	for _, r := range routes {
		p := r.Path
		if i := indexWildcard(p); i >= 0 {
			p = p[:i-1] // drop "/{…}"
		}
		out = append(out, p)
	}
	return out
}

func indexWildcard(p string) int {
	for i := range len(p) {
		if p[i] == '{' {
			return i
		}
	}
	return -1
}

// Handler returns the gateway's HTTP handler: the consumer API (the route
// table), the provider endpoint, health, and the web UI when configured;
// unknown paths answer 404 and other methods 405 in the API's error shape.
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, r := range routes {
		mux.HandleFunc(r.Method+" "+r.Path, r.handler(g))
		if r.Loose {
			continue
		}
		format := apierr.WriteOpenAI
		if r.Ollama {
			format = apierr.WriteOllama
		}
		// Same path, other method: a JSON 405 instead of the mux's text.
		mux.HandleFunc(r.Path, func(w http.ResponseWriter, req *http.Request) {
			w.Header().Set("Allow", r.Method)
			format(w, &apierr.Error{Status: http.StatusMethodNotAllowed, Type: "invalid_request_error", Code: "method_not_allowed",
				Message: fmt.Sprintf("%s %s is not supported; use %s", req.Method, req.URL.Path, r.Method)})
		})
	}
	mux.Handle("GET "+protocol.Path, g.cfg.Hub)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	if g.cfg.Web != nil {
		mux.Handle("/ui/", g.cfg.Web)
		mux.Handle("GET /contribute", g.cfg.Web) // the browser provider page
		mux.Handle("GET /{$}", http.RedirectHandler("/ui/", http.StatusFound))
	}
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		apierr.WriteOllama(w, apierr.NotFound("no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		apierr.WriteOpenAI(w, apierr.NotFound("no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return mux
}
