package verifier_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/gateway"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/link"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/node"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/verifier"
	"github.com/idlegrid/idlegrid/internal/verify"
)

// sampledOptions shape a network whose gateway samples every response.
type sampledOptions struct {
	// main is the `up` provider's backend; mainSim, when set, labels
	// planted samples (the planter signs them with the main provider's key).
	main    backend.Backend
	mainSim *sim.Sim
	// extra providers, by name, each with its own registered key.
	extra map[string]backend.Backend
	// hashesOnly keeps texts out of the samples.
	hashesOnly bool
	plant      bool
	// verifiers are staked verifier accounts to create; delay the blocks
	// before a case matures (default 2).
	verifiers int
	delay     uint64
}

// sampledNet is a running network with its providers and verifiers.
type sampledNet struct {
	*node.Network
	providers map[string]keys.PublicKey // "main" and the extra names
	verifiers []keys.PrivateKey
}

// sampledNetwork starts `up` sampling every response (share 1), with the
// extra providers connected and registered, and staked verifiers.
func sampledNetwork(t *testing.T, o sampledOptions) *sampledNet {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	sn := &sampledNet{providers: map[string]keys.PublicKey{}}
	var accounts []ledger.GenesisAccount
	extraKeys := map[string]string{}
	for name := range o.extra {
		k, err := keys.Generate()
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(dir, name+".key")
		if err := keys.Save(file, k); err != nil {
			t.Fatal(err)
		}
		extraKeys[name] = file
		sn.providers[name] = k.Public()
		accounts = append(accounts, ledger.GenesisAccount{Address: k.Public().Address(), PubKey: k.Public(), Stake: 1_000 * money.Unit, Roles: []string{"provider"}})
	}
	for range o.verifiers {
		k, err := keys.Generate()
		if err != nil {
			t.Fatal(err)
		}
		sn.verifiers = append(sn.verifiers, k)
		accounts = append(accounts, ledger.GenesisAccount{Address: k.Public().Address(), PubKey: k.Public(),
			Balance: 10 * money.Unit, Stake: 1_000 * money.Unit, Roles: []string{"verifier"}})
	}
	delay := o.delay
	if delay == 0 {
		delay = 2
	}
	cfg := node.UpConfig{
		Addr: "127.0.0.1:0", DataDir: filepath.Join(dir, "up"), Backend: node.BackendOllama, OllamaURL: "unused", DevAPIKey: apiKey,
		Slots: 8, Link: link.Options{Heartbeat: 500 * time.Millisecond},
		BackendOverride: &node.LocalBackend{Backend: o.main, Description: "test provider", Sim: o.mainSim},
		Gateway:         gateway.Config{Samples: gateway.SampleConfig{Share: 1, ShareText: !o.hashesOnly}},
		EditGenesis: func(g *ledger.Genesis) {
			// One verdict decides a case; two failed cases convict.
			g.Params.VerdictQuorum, g.Params.VerdictDelayBlocks, g.Params.ConvictFailures = 1, delay, 2
			g.Accounts = append(g.Accounts, accounts...)
		},
	}
	if o.plant {
		// Planted only when the test asks (Plant); the planter reveals
		// every second.
		cfg.PlantEvery = time.Hour
	}
	n, err := node.StartUp(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	sn.Network = n
	sn.providers["main"] = n.Provider.Key
	var extras []*node.Provider
	t.Cleanup(func() {
		for _, p := range extras {
			p.Stop()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		n.Shutdown(ctx)
	})
	for name, b := range o.extra {
		p, err := node.StartProvider(node.ProviderConfig{Gateway: n.Gateway.URL(), KeyFile: extraKeys[name],
			Backend: &node.LocalBackend{Backend: b, Description: name}, Slots: 8, Link: cfg.Link})
		if err != nil {
			t.Fatal(err)
		}
		extras = append(extras, p)
		if err := p.WaitConnected(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return sn
}

// sampleVerifier is a verifier of sn that reads the sample feed with key.
func sampleVerifier(t *testing.T, sn *sampledNet, ref backend.Backend, key keys.PrivateKey, edit ...func(*verifier.Config)) *verifier.Verifier {
	t.Helper()
	return newVerifier(t, sn.Network, ref, key, append([]func(*verifier.Config){func(c *verifier.Config) { c.Key = key }}, edit...)...)
}

// served is what a consumer got for one request.
type served struct {
	id     string
	status int
	body   string
}

// consume sends req through the gateway's OpenAI API as the dev consumer,
// pinned to provider.
func consume(t *testing.T, sn *sampledNet, req protocol.Request, provider keys.PublicKey) served {
	t.Helper()
	body := map[string]any{"model": req.Model, "max_tokens": req.Options.MaxTokens,
		"provider": map[string]any{"order": []string{provider.String()}, "allow_fallbacks": false}}
	if t := req.Options.Temperature; t != nil {
		body["temperature"] = *t
	}
	path := "/v1/chat/completions"
	if req.Kind == protocol.KindGenerate {
		path, body["prompt"] = "/v1/completions", req.Prompt
	} else {
		body["messages"] = req.Messages
	}
	b, _ := json.Marshal(body)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hr, _ := http.NewRequestWithContext(ctx, http.MethodPost, sn.Gateway.URL()+path, bytes.NewReader(b))
	hr.Header.Set("Authorization", "Bearer "+apiKey)
	hr.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out struct {
		ID string `json:"id"`
	}
	json.Unmarshal(raw, &out)
	return served{id: out.ID, status: resp.StatusCode, body: string(raw)}
}

// canaryTraffic is the i-th greedy request of the prompt mix, as the
// public API carries it.
func canaryTraffic(model string, i, maxTokens int) protocol.Request {
	mix := verify.DefaultPromptMix(model)
	mix.Seed = 42
	req := mix.Canary(i)
	req.System = ""
	req.Options.MaxTokens = maxTokens
	return req
}

// matureCases sends transfers, one a block, so that blocks keep coming
// and cases mature.
func matureCases(t *testing.T, ctx context.Context, sn *sampledNet, from keys.PrivateKey, blocks int) {
	t.Helper()
	signer := chainrpc.NewSigner(sn.Validator.Node.Client(), from, node.DefaultChainID)
	for range blocks {
		if _, err := signer.Send(ctx, ledger.Tx{Kind: ledger.KindTransfer, To: sn.Account, Amount: 1}); err != nil {
			t.Fatal(err)
		}
	}
}
