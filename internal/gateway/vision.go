package gateway

import (
	"fmt"

	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/scheduler"
)

// checkImages refuses a request with images when no connected provider's
// model of that name takes images (the "vision" capability): a 400 that
// says so, rather than a provider's model server failing on them.
func (g *Gateway) checkImages(req protocol.Request) *apierr.Error {
	if req.ImageCount() == 0 {
		return nil
	}
	for _, p := range g.cfg.Hub.Snapshot() {
		for _, m := range p.Capabilities.Models {
			if scheduler.MatchModel(m.Name, req.Model) && m.Has(protocol.CapVision) {
				return nil
			}
		}
	}
	e := apierr.Invalid("messages", "%s", fmt.Sprintf("no provider of %s accepts images: its model has no vision capability on this network; send text only, or use a vision model (one whose /api/show capabilities list \"vision\")", req.Model))
	e.Code = "model_lacks_capability"
	return e
}
