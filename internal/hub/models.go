package hub

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/idlegrid/idlegrid/internal/protocol"
)

// Model-name bookkeeping. The hub remembers every model name offered since
// it started, to tell a consumer "no such model" from "no provider of it
// online now". Each connection may add only so many names over its life,
// and the table as a whole is bounded: when it is full, names no connected
// provider offers go first, least recently offered first; when every name
// is offered by someone, a new one is refused.

// DefaultMaxModelNames is Config.MaxModelNames's default.
const DefaultMaxModelNames = 8192

// ErrTooManyModels: an advertisement would pass a model-name bound.
var ErrTooManyModels = errors.New("too many model names")

// offerLocked records the names of models advertised by p, or refuses
// them all, changing nothing, when p would pass its own bound or the
// table cannot make room. h.mu must be held.
func (h *Hub) offerLocked(p *Provider, models []protocol.Model) error {
	var fresh []string // names new to p
	for _, md := range models {
		if _, ok := p.names[md.Name]; !ok && !slices.Contains(fresh, md.Name) {
			fresh = append(fresh, md.Name)
		}
	}
	if n := len(p.names) + len(fresh); n > h.cfg.MaxModelNamesPerProvider {
		return fmt.Errorf("%w: this connection would have advertised %d model names, at most %d per connection; reconnect to start over",
			ErrTooManyModels, n, h.cfg.MaxModelNamesPerProvider)
	}
	var unknown int
	for _, name := range fresh {
		if _, ok := h.models[name]; !ok {
			unknown++
		}
	}
	if over := len(h.models) + unknown - h.cfg.MaxModelNames; over > 0 && !h.forgetLocked(over, models) {
		return fmt.Errorf("%w: the gateway knows %d model names, its limit, all offered by connected providers", ErrTooManyModels, len(h.models))
	}
	now := time.Now()
	for _, md := range models {
		h.models[md.Name] = now
		p.names[md.Name] = struct{}{}
	}
	return nil
}

// forgetLocked drops n names that no connected provider offers now and
// that are not in the advertisement being recorded, least recently offered
// first, and reports whether there were that many.
func (h *Hub) forgetLocked(n int, advertised []protocol.Model) bool {
	offered := map[string]bool{}
	for _, md := range advertised {
		offered[md.Name] = true
	}
	for _, q := range h.providers {
		q.mu.Lock()
		for _, md := range q.caps.Models {
			offered[md.Name] = true
		}
		q.mu.Unlock()
	}
	type idle struct {
		name string
		at   time.Time
	}
	var cands []idle
	for name, at := range h.models {
		if !offered[name] {
			cands = append(cands, idle{name, at})
		}
	}
	if len(cands) < n {
		return false
	}
	// Oldest first; ties by name, so the choice does not depend on map order.
	slices.SortFunc(cands, func(a, b idle) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return strings.Compare(a.name, b.name)
	})
	for _, c := range cands[:n] {
		delete(h.models, c.name)
	}
	return true
}
