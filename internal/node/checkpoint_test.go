package node_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/gateway"
	"github.com/idlegrid/idlegrid/internal/link"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/node"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/tstest"
)

// TestKilledProviderIsPaidForWhatItDelivered: a provider killed mid-answer
// (its agent stopped, connection gone) is continued by another; its last
// checkpoint becomes its receipt for exactly the tokens it delivered, the
// continuation's receipt covers the rest, the two add up to what the
// consumer read, and both settle on the ledger for exactly their amounts.
func TestKilledProviderIsPaidForWhatItDelivered(t *testing.T) {
	cfg := slowSim(100)
	// The doomed provider is registered and staked at genesis like up's
	// own, so that the ledger settles its receipt.
	keyFile, register := stakedProvider(t, "doomed")
	tn := startNet(t, netOptions{sim: cfg, gateway: gateway.Config{SettleInterval: 100 * time.Millisecond}, genesis: register})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	doomed, err := node.StartProvider(node.ProviderConfig{Gateway: tn.URL, KeyFile: keyFile,
		Backend: &node.LocalBackend{Backend: s, Description: "simulator"}, Slots: 4, Link: link.Options{Heartbeat: 500 * time.Millisecond},
		Logger: testLogger(t), CheckpointEvery: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { doomed.Stop() })
	if err := doomed.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	tstest.WaitFor(t, 10*time.Second, "both providers to be routable", func() bool { return len(tn.Gateway.Hub.Snapshot()) == 2 })
	const maxTokens, killAfter = 40, 10
	want, tokens := wantAnswer(t, cfg, "pay the dead", maxTokens)

	body := fmt.Sprintf(`{"model":"sim","stream":true,"stream_options":{"include_usage":true},"max_tokens":%d,`+
		`"messages":[{"role":"user","content":"pay the dead"}],"provider":{"order":[%q]}}`, maxTokens, doomed.Key.String())
	req, _ := http.NewRequestWithContext(ctx, "POST", tn.URL+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	deltas := 0
	got := readStream(t, resp, func(string) {
		if deltas++; deltas == killAfter {
			if err := doomed.Stop(); err != nil {
				t.Error(err)
			}
		}
	})
	if got.errorEvent != "" {
		t.Fatalf("error event %s", got.errorEvent)
	}
	id, text, usage := got.id, got.text, got.usage
	if text != want || usage != tokens {
		t.Fatalf("answer %q (%d tokens), want %q (%d)", text, usage, want, tokens)
	}
	rs := segmentReceipts(t, tn.Gateway.Store, id)
	if len(rs) != 2 || rs[0].RequestID != id || rs[0].Provider != doomed.Key || rs[1].Provider != tn.Provider.Key {
		t.Fatalf("receipts %+v: want the killed provider's under %s, then the continuation's", rs, id)
	}
	// Its checkpoints bill the prompt it processed (protocol version 3).
	prompt := protocol.PromptEstimate(&protocol.Request{Messages: []protocol.ChatMessage{{Role: "user", Content: "pay the dead"}}})
	if rs[0].CompletionTokens < killAfter || rs[0].PromptTokens != prompt {
		t.Fatalf("the killed provider's receipt bills %d completion and %d prompt tokens; it delivered at least %d and processed a prompt of %d",
			rs[0].CompletionTokens, rs[0].PromptTokens, killAfter, prompt)
	}
	checkSegments(t, rs, text, usage)

	tstest.WaitFor(t, 30*time.Second, "both receipts settled", func() bool {
		a := getAccount(t, tn, testAPIKey)
		if a.Receipts.Rejected > 0 {
			t.Fatalf("the ledger rejected a receipt: %+v", a)
		}
		return a.Receipts.Settled == 2 && a.Receipts.Pending == 0
	})
	l := chainrpc.StateReader{Client: tn.Validator.Node.Client()}
	var spent money.Amount
	for _, r := range rs {
		st, err := l.Settlement(ctx, r.Gateway.Address(), r.RequestID)
		if err != nil || st.Receipt != r.Hash() || st.Amount != r.Amount || st.Provider != r.Provider {
			t.Fatalf("settlement of %s: %+v, %v", r.RequestID, st, err)
		}
		spent += r.Amount
	}
	if a := getAccount(t, tn, testAPIKey); a.Settled != spent || a.Reserved != 0 || a.Pending != 0 || spent == 0 {
		t.Fatalf("/v1/account %+v, want %s settled and nothing held", a, spent)
	}
}
