package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/idlegrid/idlegrid/internal/gateway/api/ollama"
	"github.com/idlegrid/idlegrid/internal/gateway/api/openai"
	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/gateway/sink"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/receipt"
	"github.com/idlegrid/idlegrid/internal/scheduler"
	"github.com/idlegrid/idlegrid/internal/store"
)

// openAIGeneration serves one OpenAI generation endpoint.
func (g *Gateway) openAIGeneration(parse func([]byte) (openai.Params, *apierr.Error),
	newSink func(http.ResponseWriter, openai.Params) sink.Sink, idPrefix string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		key, body, ok := g.admit(w, r, apierr.WriteOpenAI)
		if !ok {
			return
		}
		p, e := parse(body)
		if e != nil {
			apierr.WriteOpenAI(w, e)
			return
		}
		g.generateOpenAI(w, r, key, body, p, newSink, idPrefix)
	}
}

// generateOpenAI places and relays one parsed OpenAI generation request.
// A request that continues a kept response stays here: the peers keep
// nothing of it.
func (g *Gateway) generateOpenAI(w http.ResponseWriter, r *http.Request, key store.APIKey, body []byte, p openai.Params,
	newSink func(http.ResponseWriter, openai.Params) sink.Sink, idPrefix string) {
	prefs, e := keyPreferences(key, p.Provider, p.ProviderObject)
	if e != nil {
		apierr.WriteOpenAI(w, e)
		return
	}
	req := p.Request
	req.Buffered = !p.Stream
	session := r.Header.Get(SessionHeader)
	if session == "" {
		session = p.User
	}
	continues := p.Responses != nil && p.Responses.PreviousResponseID != ""
	q := placement{key: key, body: body, req: &req, prefs: prefs, stay: continues, format: apierr.WriteOpenAI}
	g.serve(w, r, q, func() {
		rt := route{prefs: prefs, session: session}
		if p.N > 1 {
			g.relayChoices(r.Context(), key, req, receipt.Sum(body), requestID(idPrefix), rt, openai.NewChatChoices, w, p)
			return
		}
		g.relay(r.Context(), key, req, receipt.Sum(body), requestID(idPrefix), rt, newSink(g.consumerWriter(w), p))
	})
}

// ollamaGeneration serves one Ollama generation endpoint.
func (g *Gateway) ollamaGeneration(parse func([]byte) (ollama.Params, *apierr.Error),
	newSink func(http.ResponseWriter, ollama.Params) sink.Sink, idPrefix string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		key, body, ok := g.admit(w, r, apierr.WriteOllama)
		if !ok {
			return
		}
		p, e := parse(body)
		if e != nil {
			apierr.WriteOllama(w, e)
			return
		}
		if p.LoadOnly {
			// Ollama's "load the model" call: providers keep their models
			// loaded, so only say whether the network has it.
			if !g.servesModel(r.Context(), p.Request.Model) {
				apierr.WriteOllama(w, apierr.ModelNotFound(p.Request.Model))
				return
			}
			ollama.WriteLoaded(w, p, time.Now())
			return
		}
		prefs, e := keyPreferences(key, scheduler.Preferences{}, nil) // Ollama's API has no "provider" member
		if e != nil {
			apierr.WriteOllama(w, e)
			return
		}
		req := p.Request
		req.Buffered = !p.Stream
		g.serve(w, r, placement{key: key, body: body, req: &req, prefs: prefs, format: apierr.WriteOllama}, func() {
			rt := route{prefs: prefs, session: r.Header.Get(SessionHeader)}
			g.relay(r.Context(), key, req, receipt.Sum(body), requestID(idPrefix), rt, newSink(g.consumerWriter(w), p))
		})
	}
}

// modelEntry aggregates one model name across providers.
type modelEntry struct {
	model  protocol.Model // from the first provider, for details
	offers []offer
	since  time.Time
}

// offer is one provider's entry for a model.
type offer struct {
	key   keys.PublicKey
	model protocol.Model
}

// catalog lists the models connected providers offer, by name.
func (g *Gateway) catalog() []modelEntry {
	byName := map[string]*modelEntry{}
	for _, p := range g.cfg.Hub.Snapshot() {
		for _, m := range p.Capabilities.Models {
			e := byName[m.Name]
			if e == nil {
				e = &modelEntry{model: m, since: p.ConnectedAt}
				byName[m.Name] = e
			}
			e.offers = append(e.offers, offer{key: p.Key, model: m})
			if p.ConnectedAt.Before(e.since) {
				e.since = p.ConnectedAt
			}
		}
	}
	out := make([]modelEntry, 0, len(byName))
	for _, e := range byName {
		out = append(out, *e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].model.Name < out[j].model.Name })
	return out
}

func (g *Gateway) findModel(name string) (modelEntry, bool) {
	for _, e := range g.catalog() {
		if scheduler.MatchModel(e.model.Name, name) {
			return e, true
		}
	}
	return modelEntry{}, false
}

// peerModels are the models only peer gateways serve (not in local), by
// name; nil without a peer directory. A directory that cannot be read
// leaves them out: the local list still answers.
func (g *Gateway) peerModels(ctx context.Context, local []modelEntry) []store.PeerModel {
	if g.cfg.Peers == nil {
		return nil
	}
	ms, err := g.cfg.Peers.PeerModels(ctx, g.cfg.Key.Public())
	if err != nil {
		g.log.Warn("could not read the models of peer gateways", "err", err)
		return nil
	}
	out := ms[:0]
	for _, m := range ms {
		if !slices.ContainsFunc(local, func(e modelEntry) bool { return scheduler.MatchModel(e.model.Name, m.Model) }) {
			out = append(out, m)
		}
	}
	return out
}

// findPeerModel is the peer model name matches, if only peers serve it.
func (g *Gateway) findPeerModel(ctx context.Context, name string) (store.PeerModel, bool) {
	for _, m := range g.peerModels(ctx, g.catalog()) {
		if scheduler.MatchModel(m.Model, name) {
			return m, true
		}
	}
	return store.PeerModel{}, false
}

// servesModel reports whether a provider here or a peer gateway serves
// the model name matches.
func (g *Gateway) servesModel(ctx context.Context, name string) bool {
	if _, found := g.findModel(name); found {
		return true
	}
	_, found := g.findPeerModel(ctx, name)
	return found
}

// peerOpenAIModel describes a model a peer gateway serves: the market
// fields are the peer's to tell, so they are left out.
func peerOpenAIModel(m store.PeerModel, now time.Time) openai.Model {
	return openai.Model{ID: m.Model, Created: now.Unix(), OwnedBy: "idlegrid"}
}

// openAIModel describes a model with its market: how many providers serve
// it, their consumer prices (floors plus the gateway's fee) and the median
// of the delivered rates this gateway measured on them (providers it has
// not measured yet are left out; what a provider advertises is not shown).
func (g *Gateway) openAIModel(e modelEntry) openai.Model {
	m := openai.Model{ID: e.model.Name, Created: e.since.Unix(), OwnedBy: "idlegrid", Providers: len(e.offers)}
	var prompt, completion []money.Amount
	var rates []float64
	for _, o := range e.offers {
		if !slices.Contains(m.Digests, o.model.Digest) {
			m.Digests = append(m.Digests, o.model.Digest)
		}
		prompt = append(prompt, scheduler.ConsumerPrice(o.model.PricePromptPerMTok, g.cfg.FeeBps))
		completion = append(completion, scheduler.ConsumerPrice(o.model.PriceCompletionPerMTok, g.cfg.FeeBps))
		if est, ok := g.sched.Estimate(o.key, o.model.Name); ok && est.RateSamples > 0 {
			rates = append(rates, est.TokensPerSecond)
		}
	}
	slices.Sort(m.Digests)
	m.Capabilities = modelCapabilities(e)
	m.PricePrompt = openai.PriceRange{Min: slices.Min(prompt), Median: scheduler.Median(prompt)}
	m.PriceCompletion = openai.PriceRange{Min: slices.Min(completion), Median: scheduler.Median(completion)}
	if len(rates) > 0 {
		slices.Sort(rates)
		n := len(rates)
		m.TokensPerSecond = (rates[(n-1)/2] + rates[n/2]) / 2
	}
	return m
}

func ollamaModel(e modelEntry) ollama.Model {
	m := e.model
	return ollama.Model{Name: m.Name, Digest: m.Digest, BackendDigest: m.BackendDigest, Family: m.Family, ParameterSize: m.ParameterSize,
		Quantization: m.Quantization, ContextLength: m.ContextLength, ParameterCount: m.ParameterCount, EmbeddingLength: m.EmbeddingLength,
		ModifiedAt: e.since, Capabilities: modelCapabilities(e)}
}

// modelCapabilities are the capabilities some provider of e's model has,
// completion first and the rest sorted.
func modelCapabilities(e modelEntry) []string {
	var out []string
	for _, o := range e.offers {
		caps := o.model.Capabilities
		if len(caps) == 0 {
			caps = []string{protocol.CapCompletion}
		}
		for _, c := range caps {
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	slices.SortFunc(out, func(a, b string) int {
		switch {
		case a == b:
			return 0
		case a == protocol.CapCompletion:
			return -1
		case b == protocol.CapCompletion:
			return 1
		}
		return strings.Compare(a, b)
	})
	return out
}

func (g *Gateway) handleOpenAIModels(w http.ResponseWriter, r *http.Request) {
	list, _ := g.Models(r.Context()) // never fails
	openai.WriteModelObjects(w, list)
}

func (g *Gateway) handleOpenAIModel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	e, ok := g.findModel(id)
	if !ok {
		if pm, ok := g.findPeerModel(r.Context(), id); ok {
			openai.WriteModel(w, peerOpenAIModel(pm, time.Now()))
			return
		}
		apierr.WriteOpenAI(w, apierr.ModelNotFound(id))
		return
	}
	openai.WriteModel(w, g.openAIModel(e))
}

func (g *Gateway) handleOllamaTags(w http.ResponseWriter, r *http.Request) {
	var list []ollama.Model
	local := g.catalog()
	for _, e := range local {
		list = append(list, ollamaModel(e))
	}
	now := time.Now()
	for _, m := range g.peerModels(r.Context(), local) {
		list = append(list, ollama.Model{Name: m.Model, ModifiedAt: now})
	}
	ollama.WriteTags(w, list)
}

func (g *Gateway) handleOllamaVersion(w http.ResponseWriter, r *http.Request) {
	ollama.WriteVersion(w, g.cfg.Version)
}

// handleReceipt serves a consumer's own receipt; anyone else's is a 404, so
// request ids reveal nothing.
func (g *Gateway) handleReceipt(w http.ResponseWriter, r *http.Request) {
	key, e := g.authenticate(r)
	if e != nil {
		apierr.WriteOpenAI(w, e)
		return
	}
	id := r.PathValue("id")
	s, err := g.cfg.Store.Receipt(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) || err == nil && s.Receipt.Consumer != key.Account {
		msg := fmt.Sprintf("No receipt %q for this account.", id)
		if g.cfg.KeepSettled > 0 {
			msg += fmt.Sprintf(" This gateway keeps settled receipts for %s after settlement; the ledger keeps them all (`idlegrid ledger receipt %s/%s`).", g.cfg.KeepSettled, g.cfg.Key.Public().Address(), id)
		}
		apierr.WriteOpenAI(w, apierr.NotFound("%s", msg))
		return
	}
	if err != nil {
		g.log.Error("read receipt", "request_id", id, "err", err)
		apierr.WriteOpenAI(w, apierr.Internal("could not read the receipt"))
		return
	}
	writeJSON(w, http.StatusOK, s)
}
