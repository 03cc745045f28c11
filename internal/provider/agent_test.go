package provider

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/hub"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/tstest"
)

func TestConnectURL(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"http://127.0.0.1:8080", "ws://127.0.0.1:8080/v1/providers/connect"},
		{"http://127.0.0.1:8080/", "ws://127.0.0.1:8080/v1/providers/connect"},
		{"https://gw.example", "wss://gw.example/v1/providers/connect"},
		{"ws://gw.example:9", "ws://gw.example:9/v1/providers/connect"},
		{"wss://gw.example", "wss://gw.example/v1/providers/connect"},
		{"https://gw.example/idlegrid/v1/providers/connect", "wss://gw.example/idlegrid/v1/providers/connect"},
		{"http://[::1]:8080", "ws://[::1]:8080/v1/providers/connect"},
		{"http://gw.example?region=eu", "ws://gw.example/v1/providers/connect?region=eu"},
		// Errors.
		{"", ""},
		{"gw.example:8080", ""},
		{"127.0.0.1:8080", ""},
		{"ftp://gw.example", ""},
		{"file:///tmp/gw", ""},
		{"http://", ""},
		{"http://gw example", ""},
		{"http://%zz", ""},
		{"/v1/providers/connect", ""},
	}
	for _, tt := range tests {
		got, err := connectURL(tt.in)
		switch {
		case tt.want == "" && err == nil:
			t.Errorf("connectURL(%q) = %q, want an error", tt.in, got)
		case tt.want != "" && (err != nil || got != tt.want):
			t.Errorf("connectURL(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestNewRejects(t *testing.T) {
	s := fastSim(t)
	good := Config{Gateway: "http://127.0.0.1:1", Key: newKey(t), Backend: s}
	tests := map[string]func(*Config){
		"no key":         func(c *Config) { c.Key = keys.PrivateKey{} },
		"no backend":     func(c *Config) { c.Backend = nil },
		"bad gateway":    func(c *Config) { c.Gateway = "gw.example" },
		"too many slots": func(c *Config) { c.Slots = protocol.MaxSlots + 1 },
	}
	if _, err := New(good); err != nil {
		t.Fatalf("a good config: %v", err)
	}
	for name, mutate := range tests {
		cfg := good
		mutate(&cfg)
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
}

func TestCapabilitiesReachTheHub(t *testing.T) {
	g := newGateway(t)
	s := fastSim(t)
	simModels, err := s.Models(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	hw := protocol.Hardware{OS: "linux", Arch: "amd64", Cores: 8, GPUs: []protocol.GPU{{Name: "Test GPU", MemoryBytes: 8 << 30}}}
	tests := []struct {
		name                  string
		slots                 int
		prompt, completion    money.Amount
		wantSlots             int
		wantPrompt, wantCompl money.Amount
		version               string
		hardware              protocol.Hardware
	}{
		// The agent advertises its floors as configured; the defaults are
		// the callers' (`idlegrid provide` flags, node.StartProvider).
		{name: "zero config", wantSlots: 4},
		{name: "default price floors", prompt: DefaultPricePrompt, completion: DefaultPriceCompletion, wantSlots: 4,
			wantPrompt: DefaultPricePrompt, wantCompl: DefaultPriceCompletion},
		{name: "custom", slots: 7, prompt: 1_234, completion: 56_789, wantSlots: 7, wantPrompt: 1_234, wantCompl: 56_789,
			version: "idlegrid 0.9.1-test", hardware: hw},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config(t, g.url, s)
			cfg.Slots, cfg.PricePrompt, cfg.PriceCompletion, cfg.Version, cfg.Hardware = tt.slots, tt.prompt, tt.completion, tt.version, tt.hardware
			a := startAgent(t, cfg)
			in := g.connected(t, cfg.Key.Public())
			tstest.WaitFor(t, wait, "Status().Connected", func() bool { return a.Status().Connected })
			c := in.Capabilities
			if c.Slots != tt.wantSlots || c.AgentVersion != tt.version || in.Paused || in.InFlight != 0 {
				t.Errorf("slots %d version %q paused %v in flight %d; want %d %q false 0", c.Slots, c.AgentVersion, in.Paused, in.InFlight, tt.wantSlots, tt.version)
			}
			if !equalHardware(c.Hardware, tt.hardware) {
				t.Errorf("hardware %+v, want %+v", c.Hardware, tt.hardware)
			}
			if len(c.Models) != 1 {
				t.Fatalf("models %+v, want the simulator's one", c.Models)
			}
			m, sm := c.Models[0], simModels[0]
			if m.Name != "sim" || m.Digest != sim.Digest(1, "Q8_0") || m.Digest != sm.Digest || m.Quantization != sm.Quantization ||
				m.Family != sm.Family || m.ParameterSize != sm.ParameterSize || m.ContextLength != sm.ContextLength {
				t.Errorf("model %+v does not describe the simulator's %+v", m, sm)
			}
			if m.PricePromptPerMTok != tt.wantPrompt || m.PriceCompletionPerMTok != tt.wantCompl {
				t.Errorf("prices %d/%d, want %d/%d", m.PricePromptPerMTok, m.PriceCompletionPerMTok, tt.wantPrompt, tt.wantCompl)
			}
			if !g.hub.KnownModel("sim") {
				t.Error("the hub does not know the model")
			}
			a.stop()
			tstest.WaitFor(t, wait, "the hub to forget a stopped agent", func() bool { _, ok := g.info(cfg.Key.Public()); return !ok })
			if a.Status().Connected {
				t.Error("Status().Connected after Run returned")
			}
		})
	}
}

func equalHardware(a, b protocol.Hardware) bool {
	return a.OS == b.OS && a.Arch == b.Arch && a.CPU == b.CPU && a.Cores == b.Cores && a.MemoryBytes == b.MemoryBytes && slices.Equal(a.GPUs, b.GPUs)
}

func TestModelsFilter(t *testing.T) {
	s := newSim(t, sim.Config{Models: []sim.ModelConfig{
		{Name: "sim", Weights: 1, Quantization: "Q8_0"},
		{Name: "tiny:latest", Weights: 2, Quantization: "Q4_K_M"},
		{Name: "big:7b", Weights: 3, Quantization: "F16"},
	}})
	digest := map[string]string{"sim": sim.Digest(1, "Q8_0"), "tiny:latest": sim.Digest(2, "Q4_K_M"), "big:7b": sim.Digest(3, "F16")}
	g := newGateway(t)
	tests := []struct {
		name   string
		models []string
		want   []string // offered names; nil: nothing matches
	}{
		{"all by default", nil, []string{"sim", "tiny:latest", "big:7b"}},
		{"exact", []string{"sim"}, []string{"sim"}},
		{"configured with :latest, served without", []string{"sim:latest"}, []string{"sim"}},
		{"configured without :latest, served with", []string{"tiny"}, []string{"tiny:latest"}},
		{"both with :latest", []string{"tiny:latest"}, []string{"tiny:latest"}},
		{"tagged", []string{"big:7b", "tiny"}, []string{"tiny:latest", "big:7b"}},
		{"unknown names are skipped", []string{"nope", "big:7b"}, []string{"big:7b"}},
		{"another tag is another model", []string{"big"}, nil},
		{"nothing matches", []string{"nope", "sim:7b"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config(t, g.url, s)
			cfg.Models = tt.models
			if tt.want == nil {
				log := &logRecorder{}
				cfg.Logger = slog.New(log)
				a, err := New(cfg)
				if err != nil {
					t.Fatal(err)
				}
				_, err = a.capabilities(context.Background())
				if err == nil || !strings.Contains(err.Error(), "none of the models") || !strings.Contains(err.Error(), tt.models[0]) {
					t.Fatalf("capabilities: %v, want an error naming the configured models", err)
				}
				// Run keeps retrying, and never dials with nothing to offer.
				before := g.conns.Load()
				ar := run(t, a)
				tstest.WaitFor(t, wait, "three failed attempts", func() bool { errs, _ := log.retries(); return len(errs) >= 3 })
				errs, _ := log.retries()
				if !strings.Contains(errs[0], "none of the models") {
					t.Errorf("attempt failed with %q", errs[0])
				}
				if ar.Status().Connected || g.conns.Load() != before {
					t.Fatal("the agent connected with no model to offer")
				}
				return
			}
			startAgent(t, cfg)
			in := g.connected(t, cfg.Key.Public())
			var names []string
			for _, m := range in.Capabilities.Models {
				names = append(names, m.Name)
				if m.Digest != digest[m.Name] {
					t.Errorf("model %s digest %s, want %s", m.Name, m.Digest, digest[m.Name])
				}
			}
			if !slices.Equal(names, tt.want) {
				t.Fatalf("offered %q, want %q", names, tt.want)
			}
		})
	}
}

func TestHandshakeRefusals(t *testing.T) {
	g := newGateway(t)
	tests := []struct {
		name    string
		chain   string
		gateway keys.PublicKey
		refuse  string // in the logged error; "" when the agent must connect
	}{
		{"another chain", "idlegrid-main-1", keys.PublicKey{}, `it is on chain "` + chainID},
		{"another gateway key", "", newKey(t).Public(), "its key is " + g.key.Public().String()},
		{"both expected and right", chainID, g.key.Public(), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log := &logRecorder{}
			cfg := config(t, g.url, fastSim(t))
			cfg.ExpectChainID, cfg.ExpectGateway, cfg.Logger = tt.chain, tt.gateway, slog.New(log)
			if tt.refuse == "" {
				a := startAgent(t, cfg)
				g.connected(t, cfg.Key.Public())
				tstest.WaitFor(t, wait, "Status().Connected", func() bool { return a.Status().Connected })
				return
			}
			// Misconfiguration cannot fix itself: one attempt, then Run
			// returns ErrWrongGateway instead of retrying (even with a
			// long backoff configured).
			cfg.MinBackoff, cfg.MaxBackoff = time.Minute, time.Minute
			before := g.conns.Load()
			a, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- a.Run(context.Background()) }()
			select {
			case err = <-done:
			case <-time.After(wait):
				t.Fatalf("Run did not give up within %s", wait)
			}
			if !errors.Is(err, ErrWrongGateway) || !strings.Contains(err.Error(), tt.refuse) {
				t.Errorf("Run returned %v, want ErrWrongGateway mentioning %q", err, tt.refuse)
			}
			if got := g.conns.Load() - before; got != 1 {
				t.Errorf("%d connection attempts, want 1", got)
			}
			if _, ok := g.info(cfg.Key.Public()); ok || a.Status().Connected {
				t.Fatal("the refused gateway lists the agent")
			}
		})
	}
}

func TestPauseResume(t *testing.T) {
	g := newGateway(t)
	cfg := config(t, g.url, fastSim(t))
	a := startAgent(t, cfg)
	k := cfg.Key.Public()
	in := g.connected(t, k)
	if in.Paused {
		t.Fatal("paused at connect")
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()

	a.Pause("owner is playing a game")
	if st := a.Status(); !st.Paused || st.Reason != "owner is playing a game" {
		t.Fatalf("status after Pause: %+v", st)
	}
	tstest.WaitFor(t, wait, "the hub to see the pause", func() bool { in, _ := g.info(k); return in.Paused })
	if _, err := g.hub.Dispatch(ctx, k, jobFor(t, g, in, "sim", generate("hi", 4))); !errors.Is(err, hub.ErrPaused) {
		t.Fatalf("Dispatch to a paused provider: %v, want ErrPaused", err)
	}
	a.Pause("another reason") // no change of state: nothing to send
	a.Resume()
	if st := a.Status(); st.Paused || st.Reason != "" {
		t.Fatalf("status after Resume: %+v", st)
	}
	tstest.WaitFor(t, wait, "the hub to see the resume", func() bool { in, _ := g.info(k); return !in.Paused })
	o := collect(t, dispatch(t, g, k, jobFor(t, g, in, "sim", generate("hi", 4))))
	if o.done == nil {
		t.Fatalf("job after resume: %v", o.err)
	}
	if _, ok := g.info(k); !ok || !a.Status().Connected {
		t.Fatal("the connection did not survive pause and resume")
	}
}

func TestPausedBeforeConnecting(t *testing.T) {
	g := newGateway(t)
	cfg := config(t, g.url, fastSim(t))
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a.Pause("owner at the keyboard")
	run(t, a)
	k := cfg.Key.Public()
	g.connected(t, k)
	tstest.WaitFor(t, wait, "the hub to see the agent paused", func() bool { in, _ := g.info(k); return in.Paused })
	a.Resume()
	tstest.WaitFor(t, wait, "the hub to see the resume", func() bool { in, _ := g.info(k); return !in.Paused })
}

func TestReconnectsAfterTheGatewayDropsIt(t *testing.T) {
	g := newGateway(t)
	b := newBlocking()
	cfg := config(t, g.url, b)
	a := startAgent(t, cfg)
	k := cfg.Key.Public()
	first := g.connected(t, k)
	// A job in flight when the connection drops fails on the gateway's side
	// and is stopped on the agent's.
	s := dispatch(t, g, k, jobFor(t, g, first, "blocker", generate("hi", 4)))
	b.waitStarted(t)

	g.hub.Close()
	if o := collect(t, s); !errors.Is(o.err, hub.ErrProviderLost) {
		t.Fatalf("in-flight job ended with %+v, want ErrProviderLost", o)
	}
	if err := b.waitEnded(t); !errors.Is(err, context.Canceled) {
		t.Fatalf("the backend's job ended with %v, want cancelled", err)
	}
	tstest.WaitFor(t, wait, "a second connection", func() bool { return g.conns.Load() >= 2 })
	tstest.WaitFor(t, wait, "the hub to list the agent again", func() bool {
		in, ok := g.info(k)
		return ok && in.ConnectedAt.After(first.ConnectedAt)
	})
	tstest.WaitFor(t, wait, "Status().Connected", func() bool { return a.Status().Connected })
	if st := a.Status(); st.Active != 0 {
		t.Fatalf("%d jobs still active after the reconnect", st.Active)
	}
}

func TestRetriesUntilTheGatewayComesUp(t *testing.T) {
	// Reserve a loopback port, then free it: nothing listens there yet.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	log := &logRecorder{}
	cfg := config(t, "http://"+addr, fastSim(t))
	cfg.MinBackoff, cfg.MaxBackoff, cfg.Logger = 5*time.Millisecond, 40*time.Millisecond, slog.New(log)
	a := startAgent(t, cfg)
	tstest.WaitFor(t, wait, "five failed dials", func() bool { errs, _ := log.retries(); return len(errs) >= 5 })
	if a.Status().Connected {
		t.Fatal("connected to nothing")
	}
	errs, delays := log.retries()
	// Full jitter: retry i waits at most MinBackoff·2^i, capped at
	// MaxBackoff (the log rounds to the millisecond).
	for i, d := range delays {
		bound := cfg.MaxBackoff
		if i < 10 {
			bound = min(cfg.MinBackoff<<i, cfg.MaxBackoff)
		}
		if d < 0 || d > bound+time.Millisecond/2 {
			t.Errorf("retry %d waits %s, want within [0, %s]", i, d, bound)
		}
	}
	if !strings.Contains(errs[0], "dial") {
		t.Errorf("first attempt failed with %q, want a dial error", errs[0])
	}

	g := &gateway{key: newKey(t)}
	g.hub = hub.New(hub.Config{Key: g.key, ChainID: chainID})
	ln, err = listenAgain(addr)
	if err != nil {
		t.Skipf("cannot listen on %s again (taken meanwhile?): %v", addr, err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: g.handler()}}
	srv.Start()
	t.Cleanup(func() { a.stop(); g.hub.Close(); srv.Close() })
	g.connected(t, cfg.Key.Public())
	tstest.WaitFor(t, wait, "Status().Connected", func() bool { return a.Status().Connected })
}

// listenAgain listens on addr, retrying briefly in case the port is in a
// transient state.
func listenAgain(addr string) (net.Listener, error) {
	deadline := time.Now().Add(wait)
	for {
		ln, err := net.Listen("tcp", addr)
		if err == nil || time.Now().After(deadline) {
			return ln, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}
