// Package idle decides when a provider may serve: only while the owner is
// not using the machine. Checks look at the GPU (nvidia-smi), the CPU load,
// the serving schedule and the battery; the owner can also pause by hand.
// A Policy runs the checks periodically and pauses the agent as soon as one
// says busy, resuming only after all have been clear for a while, so a
// machine in use is never fought over and a brief lull does not flap.
package idle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// ErrUnavailable is returned by a check that cannot run on this machine
// (no nvidia-smi, no battery, no load average): it neither pauses nor
// blocks resuming.
var ErrUnavailable = errors.New("not available on this machine")

// Check is one reason the owner may be using the machine.
type Check interface {
	// Name is a short label for status output ("gpu", "schedule").
	Name() string
	// Busy reports whether the owner is using the machine, with a reason
	// for the owner and the gateway. ownJobs is how many of the agent's
	// own jobs are running (they load the GPU and CPU too).
	Busy(ctx context.Context, now time.Time, ownJobs int) (busy bool, reason string, err error)
}

// Agent is what the policy pauses and resumes: provider.Agent.
type Agent interface {
	Pause(reason string)
	Resume()
	// ActiveJobs is how many jobs the agent is running.
	ActiveJobs() int
}

// Result is one check's latest answer.
type Result struct {
	Check  string `json:"check"`
	Busy   bool   `json:"busy"`
	Reason string `json:"reason,omitempty"`
	// Err is why the check could not run ("" when it did).
	Err string `json:"error,omitempty"`
}

// Status is what the policy last decided and why.
type Status struct {
	Paused bool   `json:"paused"`
	Reason string `json:"reason,omitempty"`
	// Manual is set while the owner has paused by hand.
	Manual  bool      `json:"manual"`
	Checked time.Time `json:"checked"`
	Results []Result  `json:"checks"`
	// ClearSince is when every check last became clear (zero while one is
	// busy); the policy resumes ResumeAfter later.
	ClearSince time.Time `json:"clear_since,omitzero"`
}

// Policy pauses an agent while any check is busy.
type Policy struct {
	Agent  Agent
	Checks []Check
	// Interval between evaluations (default 5 s).
	Interval time.Duration
	// ResumeAfter is how long every check must stay clear before serving
	// resumes (default 60 s); pausing is immediate.
	ResumeAfter time.Duration
	// Manual keeps the owner's pause across restarts (optional).
	Manual *ManualPause
	Logger *slog.Logger

	// evalMu makes evaluations one at a time: a periodic one that read the
	// manual pause before the owner changed it must not undo the change.
	evalMu sync.Mutex
	mu     sync.Mutex
	status Status
	kick   chan struct{}
}

// Run evaluates the checks every Interval until ctx ends.
func (p *Policy) Run(ctx context.Context) {
	interval := p.Interval
	if interval <= 0 {
		interval = 5 * time.Second
	}
	p.mu.Lock()
	if p.kick == nil {
		p.kick = make(chan struct{}, 1)
	}
	kick := p.kick
	p.mu.Unlock()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		p.Evaluate(ctx, time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-kick:
		}
	}
}

// Evaluate runs every check once at now and pauses or resumes the agent.
// Run calls it periodically; tests call it with chosen times.
func (p *Policy) Evaluate(ctx context.Context, now time.Time) Status {
	p.evalMu.Lock()
	defer p.evalMu.Unlock()
	active := 0
	if p.Agent != nil {
		active = p.Agent.ActiveJobs()
	}
	var results []Result
	var reasons []string
	for _, c := range p.Checks {
		busy, reason, err := c.Busy(ctx, now, active)
		r := Result{Check: c.Name(), Busy: busy && err == nil, Reason: reason}
		if err != nil {
			r.Err = err.Error()
		}
		results = append(results, r)
		if r.Busy {
			reasons = append(reasons, reason)
		}
	}
	manual, manualReason := false, ""
	if p.Manual != nil {
		manual, manualReason = p.Manual.Get()
		if manual {
			reasons = append([]string{manualReason}, reasons...)
		}
	}
	resumeAfter := p.ResumeAfter
	if resumeAfter <= 0 {
		resumeAfter = time.Minute
	}

	p.mu.Lock()
	prev := p.status
	st := Status{Paused: prev.Paused, Reason: prev.Reason, Manual: manual, Checked: now, Results: results}
	switch {
	case len(reasons) > 0:
		st.Paused, st.Reason = true, strings.Join(reasons, "; ")
	case !prev.Paused:
	case prev.Manual:
		// The owner resumed by hand and nothing else is busy: no waiting.
		st.Paused, st.Reason = false, ""
	default:
		st.ClearSince = prev.ClearSince
		if st.ClearSince.IsZero() {
			st.ClearSince = now
		}
		if now.Sub(st.ClearSince) >= resumeAfter {
			st.Paused, st.Reason, st.ClearSince = false, "", time.Time{}
		}
	}
	p.status = st
	p.mu.Unlock()

	if p.Agent != nil && (st.Paused != prev.Paused || st.Reason != prev.Reason) {
		if st.Paused {
			p.log().Info("pausing: the machine is in use", "reason", st.Reason)
			p.Agent.Pause(st.Reason)
		} else if prev.Paused {
			p.log().Info("resuming: the machine is idle")
			p.Agent.Resume()
		}
	}
	return st
}

// Status returns the last evaluation.
func (p *Policy) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.status
	st.Results = slices.Clone(st.Results)
	return st
}

// Pause pauses serving by hand until Resume, whatever the checks say.
func (p *Policy) Pause(reason string) error {
	if p.Manual == nil {
		return errors.New("manual pause is not configured")
	}
	if reason == "" {
		reason = "paused by the owner"
	}
	if err := p.Manual.Set(true, reason); err != nil {
		return err
	}
	p.poke()
	return nil
}

// Resume ends a manual pause; the other checks still apply.
func (p *Policy) Resume() error {
	if p.Manual == nil {
		return errors.New("manual pause is not configured")
	}
	if err := p.Manual.Set(false, ""); err != nil {
		return err
	}
	p.poke()
	return nil
}

// poke makes Run evaluate now rather than at its next tick.
func (p *Policy) poke() {
	p.mu.Lock()
	if p.kick == nil {
		p.kick = make(chan struct{}, 1)
	}
	kick := p.kick
	p.mu.Unlock()
	select {
	case kick <- struct{}{}:
	default:
	}
}

func (p *Policy) log() *slog.Logger {
	if p.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.Logger
}

// String describes a check's result for logs and status output.
func (r Result) String() string {
	switch {
	case r.Err != "":
		return fmt.Sprintf("%s: %s", r.Check, r.Err)
	case r.Busy:
		return fmt.Sprintf("%s: busy (%s)", r.Check, r.Reason)
	}
	return r.Check + ": idle"
}
