package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/backend/ollama"
	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/idle"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/link"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/onboard"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/provider"
)

// Backend kinds.
const (
	BackendAuto   = "auto"
	BackendOllama = "ollama"
	BackendSim    = "sim"
)

// DefaultOllamaURL is where Ollama listens by default; OLLAMA_HOST overrides.
func DefaultOllamaURL() string {
	h := os.Getenv("OLLAMA_HOST")
	switch {
	case h == "":
		return "http://127.0.0.1:11434"
	case strings.HasPrefix(h, "http://"), strings.HasPrefix(h, "https://"):
		return h
	default:
		return "http://" + h
	}
}

// LocalBackend is a resolved backend and what to tell the owner about it.
type LocalBackend struct {
	Backend     backend.Backend
	Description string
	// Sim is the built-in simulator behind Backend, when it is one: it
	// also scores texts (log-probabilities), which re-scoring needs.
	Sim   *sim.Sim
	close func()
}

// Close stops a backend the node started (the simulator).
func (b *LocalBackend) Close() {
	if b.close != nil {
		b.close()
	}
}

// OpenBackend resolves kind: ollama at ollamaURL, the built-in simulator
// (served on a loopback port so the agent uses the same Ollama client
// either way), or auto: Ollama when it answers and has models, else the
// simulator.
func OpenBackend(ctx context.Context, kind, ollamaURL string, log *slog.Logger) (*LocalBackend, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	switch kind {
	case BackendOllama:
		return &LocalBackend{Backend: ollama.New(ollamaURL, nil), Description: "Ollama at " + ollamaURL}, nil
	case BackendSim:
		return startSim(sim.DefaultConfig())
	case BackendAuto, "":
		c := ollama.New(ollamaURL, nil)
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		models, err := c.Models(pctx)
		cancel()
		if err == nil && len(models) > 0 {
			return &LocalBackend{Backend: c, Description: fmt.Sprintf("Ollama at %s (%d models)", ollamaURL, len(models))}, nil
		}
		reason := "no models"
		if err != nil {
			reason = "not reachable"
		}
		log.Info("using the built-in simulator", "ollama_url", ollamaURL, "reason", reason)
		b, err := startSim(sim.DefaultConfig())
		if b != nil {
			b.Description += fmt.Sprintf(" (no usable Ollama at %s: %s)", ollamaURL, reason)
		}
		return b, err
	}
	return nil, fmt.Errorf("unknown backend %q: want auto, ollama or sim", kind)
}

func startSim(cfg sim.Config) (*LocalBackend, error) {
	s, err := sim.New(cfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("simulator listen: %w", err)
	}
	srv := &http.Server{Handler: sim.NewServer(s), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	url := "http://" + ln.Addr().String()
	return &LocalBackend{Backend: ollama.New(url, nil), Description: "built-in simulator", Sim: s, close: func() { srv.Close() }}, nil
}

// ProviderConfig configures a provider agent process.
type ProviderConfig struct {
	Gateway string
	// KeyFile holds the provider key (created 0600 on first run).
	KeyFile string
	Backend *LocalBackend
	Models  []string
	Slots   int
	// Prices in base units per million tokens (0: defaults).
	PricePrompt, PriceCompletion money.Amount
	// ExpectChainID and ExpectGateway pin the gateway (empty: any).
	ExpectChainID string
	ExpectGateway keys.PublicKey
	Link          link.Options
	Version       string
	Logger        *slog.Logger
	// CheckpointEvery is provider.Config's (0: its default).
	CheckpointEvery time.Duration
	// Refused and RefusedRetry are provider.Config's: told when the
	// gateway refuses to admit the provider, and the wait before the next
	// try (0: its default).
	Refused      func(error)
	RefusedRetry time.Duration
	// Idle decides when the machine may serve; nil serves all the time
	// (the owner can still pause by hand).
	Idle *IdleConfig
	// PauseFile keeps the owner's manual pause across restarts ("" keeps
	// it in memory).
	PauseFile string
	// ControlAddr, when set, serves the owner's control endpoint there
	// (status, pause, resume), e.g. DefaultControlAddr.
	ControlAddr string
}

// IdleConfig is the idle policy of a provider: serve only while the owner
// does not use the machine.
type IdleConfig struct {
	// GPU: another program on the GPU (nvidia-smi compute apps, not the
	// model server) using at least GPUMemoryMiB, or utilization of at
	// least GPUUtilization% while no job of ours runs. Skipped without
	// nvidia-smi.
	GPU            bool
	GPUUtilization int
	GPUMemoryMiB   int
	GPUCommand     string
	// CPULoad: the one-minute load per core at least this while no job of
	// ours runs (0: no CPU rule).
	CPULoad float64
	// Hours are the serving windows ("22:00-08:00,12:00-13:00"; "" = any
	// time).
	Hours string
	// Battery pauses while the machine runs on battery.
	Battery bool
	// Interval between checks; ResumeAfter is how long every check must
	// stay clear before serving resumes.
	Interval, ResumeAfter time.Duration
}

// checks builds the policy's checks.
func (c *IdleConfig) checks() ([]idle.Check, error) {
	var out []idle.Check
	if c == nil {
		return nil, nil
	}
	if c.GPU {
		out = append(out, idle.GPU{Command: c.GPUCommand, UtilizationPercent: c.GPUUtilization, MinMemoryMiB: c.GPUMemoryMiB})
	}
	if c.CPULoad > 0 {
		out = append(out, idle.CPU{LoadPerCore: c.CPULoad})
	}
	if c.Hours != "" {
		ws, err := idle.ParseSchedule(c.Hours)
		if err != nil {
			return nil, err
		}
		out = append(out, idle.Schedule{Windows: ws})
	}
	if c.Battery {
		out = append(out, idle.Battery{})
	}
	return out, nil
}

// Provider is a running provider agent.
type Provider struct {
	Agent *provider.Agent
	Key   keys.PublicKey
	// Created tells whether the key file was created by this start.
	Created bool

	// ControlURL is where the control endpoint listens ("" if none).
	ControlURL string

	policy  *idle.Policy
	gateway string
	backend string
	stop    context.CancelFunc
	done    chan struct{} // closed when the agent's Run returned
	runErr  error         // what Run returned; read after done
}

// StartProvider loads or creates the key and runs the agent in the
// background until Stop.
func StartProvider(cfg ProviderConfig) (*Provider, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	key, created, err := keys.LoadOrCreate(cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("provider key: %w", err)
	}
	if cfg.PricePrompt == 0 {
		cfg.PricePrompt = provider.DefaultPricePrompt
	}
	if cfg.PriceCompletion == 0 {
		cfg.PriceCompletion = provider.DefaultPriceCompletion
	}
	checks, err := cfg.Idle.checks()
	if err != nil {
		return nil, err
	}
	a, err := provider.New(provider.Config{
		Gateway: cfg.Gateway, Key: key, Backend: cfg.Backend.Backend, Models: cfg.Models, Slots: cfg.Slots,
		PricePrompt: cfg.PricePrompt, PriceCompletion: cfg.PriceCompletion, Hardware: hardware(),
		Version: cfg.Version, Link: cfg.Link, Logger: cfg.Logger, ExpectChainID: cfg.ExpectChainID, ExpectGateway: cfg.ExpectGateway,
		CheckpointEvery: cfg.CheckpointEvery, Refused: cfg.Refused, RefusedRetry: cfg.RefusedRetry,
	})
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	p := &Provider{Agent: a, Key: key.Public(), Created: created, gateway: cfg.Gateway, backend: cfg.Backend.Description, stop: stop, done: make(chan struct{})}
	p.policy = &idle.Policy{Agent: a, Checks: checks, Manual: &idle.ManualPause{Path: cfg.PauseFile}, Logger: cfg.Logger}
	if cfg.Idle != nil {
		p.policy.Interval, p.policy.ResumeAfter = cfg.Idle.Interval, cfg.Idle.ResumeAfter
	}
	// Decide before connecting, so a busy machine never takes a job.
	p.policy.Evaluate(ctx, time.Now())
	if cfg.ControlAddr != "" {
		if p.ControlURL, err = p.serveControl(ctx, cfg.ControlAddr, cfg.Logger); err != nil {
			stop()
			return nil, err
		}
	}
	go p.policy.Run(ctx)
	go func() {
		p.runErr = a.Run(ctx)
		close(p.done)
	}()
	return p, nil
}

// Pause pauses serving by hand until Resume (kept across restarts when
// PauseFile is set).
func (p *Provider) Pause(reason string) error {
	if err := p.policy.Pause(reason); err != nil {
		return err
	}
	p.policy.Evaluate(context.Background(), time.Now())
	return nil
}

// Resume ends a manual pause; the idle checks still apply.
func (p *Provider) Resume() error {
	if err := p.policy.Resume(); err != nil {
		return err
	}
	p.policy.Evaluate(context.Background(), time.Now())
	return nil
}

// Stop disconnects the agent and waits for its jobs to end.
func (p *Provider) Stop() error {
	p.stop()
	<-p.done
	return p.runErr
}

// Done is closed when the agent stopped by itself (e.g. the gateway is not
// the configured one) or after Stop; Stop then returns why.
func (p *Provider) Done() <-chan struct{} { return p.done }

// WaitConnected waits until the agent is connected to its gateway.
func (p *Provider) WaitConnected(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for !p.Agent.Status().Connected {
		select {
		case <-ctx.Done():
			return errors.New("provider did not connect to the gateway in time")
		case <-t.C:
		}
	}
	return nil
}

// hardware is the summary a provider advertises (onboard.DetectHardware,
// which `provide init` shows), read within a few seconds.
func hardware() protocol.Hardware {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return onboard.DetectHardware(ctx, "")
}
