package gateway

import (
	"fmt"
	"slices"

	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/scheduler"
)

// modelCapabilities is a provider's model's Ollama capabilities
// ("completion", "vision", …), as /api/show shows them and as requests
// that need one are checked against. Providers advertise them from
// protocol version 5 (protocol.Model.Capabilities, with tool calling);
// a model without the list is an older agent's: ["completion"].
func modelCapabilities(m protocol.Model) []string {
	return []string{"completion"}
}

// checkImages refuses a request with images when no connected provider's
// model of that name takes images (the "vision" capability): a 400 that
// says so, rather than a provider's model server failing on them.
func (g *Gateway) checkImages(req protocol.Request) *apierr.Error {
	if req.ImageCount() == 0 {
		return nil
	}
	for _, p := range g.cfg.Hub.Snapshot() {
		for _, m := range p.Capabilities.Models {
			if scheduler.MatchModel(m.Name, req.Model) && slices.Contains(modelCapabilities(m), "vision") {
				return nil
			}
		}
	}
	e := apierr.Invalid("messages", "%s", fmt.Sprintf("no provider of %s accepts images: its model has no vision capability on this network; send text only, or use a vision model (one whose /api/show capabilities list \"vision\")", req.Model))
	e.Code = "model_lacks_capability"
	return e
}
