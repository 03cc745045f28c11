package gateway

import (
	"net/http"
	"time"

	"github.com/idlegrid/idlegrid/internal/gateway/api/ollama"
	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
)

// Ollama's model management on a network: /api/show describes a model the
// providers serve, /api/ps lists those served now and /api/pull succeeds
// for them (the network downloads nothing). Like /api/tags they need no
// API key: they show what the catalogue shows anyway.

func (g *Gateway) handleOllamaShow(w http.ResponseWriter, r *http.Request) {
	body, e := g.readBody(w, r)
	if e != nil {
		apierr.WriteOllama(w, e)
		return
	}
	name, e := ollama.ParseShow(body)
	if e != nil {
		apierr.WriteOllama(w, e)
		return
	}
	m, ok := g.findModel(name)
	if !ok {
		if pm, ok := g.findPeerModel(r.Context(), name); ok {
			ollama.WriteShow(w, ollama.Model{Name: pm.Model, ModifiedAt: time.Now()})
			return
		}
		apierr.WriteOllama(w, apierr.ModelNotFound(name))
		return
	}
	ollama.WriteShow(w, ollamaModel(m))
}

// runningFor is how long /api/ps says a model stays loaded: providers keep
// theirs while they serve, so Ollama's "Forever" (its CLI shows it for an
// expiry years ahead).
const runningFor = 100 * 365 * 24 * time.Hour

// handleOllamaPs lists the models that providers not paused serve now.
func (g *Gateway) handleOllamaPs(w http.ResponseWriter, r *http.Request) {
	active := map[string]bool{}
	for _, p := range g.cfg.Hub.Snapshot() {
		if p.Paused {
			continue
		}
		for _, m := range p.Capabilities.Models {
			active[m.Name] = true
		}
	}
	var list []ollama.Model
	for _, e := range g.catalog() {
		if active[e.model.Name] {
			list = append(list, ollamaModel(e))
		}
	}
	ollama.WriteRunning(w, list, time.Now().Add(runningFor))
}

// handleOllamaPull answers "pull" for a model the network serves, here or
// at a peer gateway, with success; any other name gets Ollama's error for
// a name its registry does not have.
func (g *Gateway) handleOllamaPull(w http.ResponseWriter, r *http.Request) {
	body, e := g.readBody(w, r)
	if e != nil {
		apierr.WriteOllama(w, e)
		return
	}
	p, e := ollama.ParsePull(body)
	if e != nil {
		apierr.WriteOllama(w, e)
		return
	}
	if _, ok := g.findModel(p.Model); !ok {
		if _, ok := g.findPeerModel(r.Context(), p.Model); !ok {
			ollama.WritePullNotFound(w, p)
			return
		}
	}
	ollama.WritePulled(w, p)
}
