package gateway

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/idlegrid/idlegrid/internal/gateway/api/openai"
	"github.com/idlegrid/idlegrid/internal/gateway/sink"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/receipt"
	"github.com/idlegrid/idlegrid/internal/store"
)

// relayChoices serves a request for n > 1 choices (openai.Params.N) as n
// requests relayed at once, each placed, reserved, receipted and billed
// on its own: choice 0 under id, choice i under choiceID(id, i). All share
// the consumer's request hash. With a seed, choice i runs with seed + i,
// so that sampled choices differ as OpenAI's do; the job, and so the
// sample verifiers replay, carries the seed it ran with. The first choice
// that fails fails the response and cancels the others (they are billed
// up to their checkpoints, as for a consumer who leaves).
func (g *Gateway) relayChoices(ctx context.Context, key store.APIKey, req protocol.Request, reqHash receipt.Hash, id string, rt route,
	newSinks func(http.ResponseWriter, openai.Params, sink.Meta, func()) []sink.Sink, w http.ResponseWriter, p openai.Params) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sinks := newSinks(g.consumerWriter(w), p, sink.Meta{RequestID: id, Model: req.Model, Created: time.Now()}, cancel)
	var wg sync.WaitGroup
	for i, snk := range sinks {
		r, cid := req, id
		if i > 0 {
			cid = choiceID(id, i)
			if req.Options.Seed != nil {
				seed := *req.Options.Seed + int64(i)
				r.Options.Seed = &seed
			}
		}
		wg.Go(func() { g.relay(ctx, key, r, reqHash, cid, rt, snk) })
	}
	wg.Wait()
}

// choiceID is the request (and receipt) id of choice i > 0 of request id.
func choiceID(id string, i int) string { return fmt.Sprintf("%s-n%d", id, i) }
