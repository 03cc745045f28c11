package attack

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/tstest"
)

// TestM1HangUpAfterFirstToken — attacker: a consumer. Attack: send a long
// prompt with a small max_tokens, streamed, and hang up after the first
// token, so that the job settles from its last checkpoint — which billed
// no prompt tokens — and the prompt is processed for free. Property: once
// the provider has produced a token the prompt is billed: every
// checkpoint (protocol version 3) carries the prompt tokens, bounded by
// the gateway with the rule of final receipts, and the receipt settled on
// the ledger for the abandoned job bills them.
func TestM1HangUpAfterFirstToken(t *testing.T) {
	sc := instantSim()
	sc.Models[0].TokensPerSecond = 20 // the consumer hangs up long before max_tokens
	n := startAdmitNet(t, sc, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	prompt := strings.Repeat("Summarize the following paragraph of text. ", 1000) // 43,000 bytes
	body, _ := json.Marshal(map[string]any{"model": "sim", "prompt": prompt, "max_tokens": 40, "stream": true})
	rctx, hangUp := context.WithCancel(ctx)
	req, _ := http.NewRequestWithContext(rctx, "POST", n.URL+"/v1/completions", strings.NewReader(string(body)))
	req.Header.Set("Authorization", "Bearer "+admitAPIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Header.Get("X-Request-Id")
	sc2 := bufio.NewScanner(resp.Body)
	for sc2.Scan() {
		if strings.HasPrefix(sc2.Text(), "data: {") && strings.Contains(sc2.Text(), `"text":"`) && !strings.Contains(sc2.Text(), `"text":""`) {
			break // the first token
		}
	}
	hangUp()
	resp.Body.Close()

	// The abandoned job's receipt is stored from its last checkpoint and
	// settles on the ledger.
	var settled ledger.Settlement
	tstest.WaitFor(t, 15*time.Second, "the abandoned job's receipt settled", func() bool {
		stored, err := n.Gateway.Store.Receipt(ctx, id)
		if err != nil {
			return false // not stored yet
		}
		s, err := chainrpc.StateReader{Client: n.Validator.Node.Client()}.Settlement(ctx, stored.Receipt.Gateway.Address(), id)
		if errors.Is(err, chainrpc.ErrNotFound) {
			return false
		}
		if err != nil {
			t.Fatal(err)
		}
		settled = s
		return true
	})
	sr, err := n.Gateway.Store.Receipt(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	r := sr.Receipt
	t.Logf("settled receipt: %d prompt tokens, %d completion tokens, amount %s", r.PromptTokens, r.CompletionTokens, r.Amount)
	if r.CompletionTokens == 0 || r.CompletionTokens >= 40 {
		t.Fatalf("the receipt bills %d completion tokens: the consumer did not hang up mid-answer", r.CompletionTokens)
	}
	want := protocol.PromptEstimate(&protocol.Request{Prompt: prompt})
	if r.PromptTokens < want || settled.Amount != r.Amount {
		t.Logf("settled on the ledger: %s", settled.Amount)
		t.Fatalf("the abandoned job's receipt bills %d prompt tokens for a prompt of %d bytes (want at least %d): the consumer skipped the prompt's bill", r.PromptTokens, len(prompt), want)
	}
}
