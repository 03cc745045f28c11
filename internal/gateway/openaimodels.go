package gateway

import (
	"context"
	"time"

	"github.com/idlegrid/idlegrid/internal/gateway/api/apitypes"
	"github.com/idlegrid/idlegrid/internal/gateway/api/openai"
)

// Models is the list GET /v1/models answers, without HTTP (the web UI's
// overview): the models of this gateway's providers, then those only
// peer gateways serve.
func (g *Gateway) Models(ctx context.Context) ([]apitypes.Model, error) {
	local := g.catalog()
	out := make([]apitypes.Model, 0, len(local))
	for _, e := range local {
		out = append(out, openai.ModelObject(g.openAIModel(e)))
	}
	now := time.Now()
	for _, m := range g.peerModels(ctx, local) {
		out = append(out, openai.ModelObject(peerOpenAIModel(m, now)))
	}
	return out, nil
}
