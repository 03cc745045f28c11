package node_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/node"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// inflating is a provider's backend that claims more completion tokens
// than it generated.
type inflating struct {
	backend.Backend
	factor uint64
}

func (b inflating) Generate(ctx context.Context, req protocol.Request, emit func(backend.Delta) error) (backend.Result, error) {
	res, err := b.Backend.Generate(ctx, req, emit)
	res.Usage.CompletionTokens *= b.factor
	return res, err
}

// TestInflatedTokenCounts: a provider that claims more tokens than the
// text it sent can hold gets no countersigned receipt; the consumer is not
// billed and is told so.
func TestInflatedTokenCounts(t *testing.T) {
	s, err := sim.New(fastSim())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.NewServer(s))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	inner, err := node.OpenBackend(ctx, node.BackendOllama, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	tn := startNet(t, netOptions{backend: &node.LocalBackend{Backend: inflating{Backend: inner.Backend, factor: 50}, Description: "inflating"}})
	status, b := post(t, tn.URL+"/v1/chat/completions", testAPIKey, `{"model":"sim","max_tokens":200,"messages":[{"role":"user","content":"hi"}]}`)
	if e := decodeError(t, b); status != 502 || !strings.Contains(e.Message, "not billed") {
		t.Fatalf("inflated counts: %d %s", status, b)
	}
	// Claims within max_tokens but beyond the text are caught as well.
	status, b = post(t, tn.URL+"/v1/chat/completions", testAPIKey, `{"model":"sim","max_tokens":10000,"messages":[{"role":"user","content":"hi"}]}`)
	if status != 502 {
		t.Fatalf("inflated counts under a large max_tokens: %d %s", status, b)
	}
	if n, _, err := tn.Gateway.Store.ReceiptStats(ctx, tn.Account); err != nil || n != 0 {
		t.Errorf("%d receipts stored for inflated answers (%v)", n, err)
	}
}
