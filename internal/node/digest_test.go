package node_test

import (
	"context"
	"strings"
	"testing"

	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/ledger"
)

// TestAllowedDigests: the gateway routes only to providers serving weights
// the ledger allows for the model; with the simulator's own digest allowed
// it serves, and the receipt carries that digest.
func TestAllowedDigests(t *testing.T) {
	s, err := sim.New(fastSim())
	if err != nil {
		t.Fatal(err)
	}
	models, err := s.Models(context.Background())
	if err != nil || len(models) == 0 {
		t.Fatal(err)
	}
	digest := models[0].Digest
	chat := `{"model":"sim","max_tokens":2,"messages":[{"role":"user","content":"hi"}]}`

	other := startNet(t, netOptions{genesis: func(g *ledger.Genesis) {
		g.Params.AllowedDigests = []ledger.ModelDigests{{Model: "sim:latest", Digests: []string{"sha256:" + strings.Repeat("0", 64)}}}
	}})
	status, b := post(t, other.URL+"/v1/chat/completions", testAPIKey, chat)
	if e := decodeError(t, b); status != 503 || e.Code != "no_allowed_provider" || !strings.Contains(e.Message, "does not allow") {
		t.Fatalf("a digest the ledger does not allow: %d %s", status, b)
	}

	ok := startNet(t, netOptions{genesis: func(g *ledger.Genesis) {
		g.Params.AllowedDigests = []ledger.ModelDigests{{Model: "sim", Digests: []string{digest}}}
	}})
	status, b = post(t, ok.URL+"/v1/chat/completions", testAPIKey, chat)
	if status != 200 {
		t.Fatalf("the allowed digest: %d %s", status, b)
	}
}
