package ollama

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/tstest"
)

// endlessConfig is a sim model that never stops by itself, paced so that a
// stream is still running when a test acts on it.
func endlessConfig(tokensPerSecond float64) sim.Config {
	cfg := sim.DefaultConfig()
	cfg.Models[0].FirstToken = 0
	cfg.Models[0].TokensPerSecond = tokensPerSecond
	cfg.Models[0].IgnoreEOS = true
	cfg.Models[0].DefaultMaxTokens = 100000
	return cfg
}

var longRequest = protocol.Request{Kind: protocol.KindChat, Model: "sim", Messages: []protocol.ChatMessage{{Role: "user", Content: "go on"}}}

func TestFaults(t *testing.T) {
	const n = 5
	t.Run("ErrorAfter", func(t *testing.T) {
		srv, c := startSim(t, endlessConfig(0))
		srv.SetFaults(sim.Faults{ErrorAfter: n})
		deltas := 0
		_, err := c.Generate(t.Context(), longRequest, func(backend.Delta) error { deltas++; return nil })
		if deltas != n || !errors.Is(err, backend.ErrUnavailable) {
			t.Errorf("%d deltas, err %v; want %d deltas then ErrUnavailable", deltas, err, n)
		}
		// The handler counts the failure after writing the error line the
		// client has already read: wait for it.
		tstest.WaitFor(t, 10*time.Second, "the failure to be counted", func() bool { return srv.Stats().Failed == 1 })
	})
	t.Run("DropAfter", func(t *testing.T) {
		srv, c := startSim(t, endlessConfig(0))
		srv.SetFaults(sim.Faults{DropAfter: n})
		deltas := 0
		_, err := c.Generate(t.Context(), longRequest, func(backend.Delta) error { deltas++; return nil })
		if deltas != n || !errors.Is(err, backend.ErrUnavailable) {
			t.Errorf("%d deltas, err %v; want %d deltas then ErrUnavailable", deltas, err, n)
		}
		t.Logf("drop error: %v", err)
	})
	t.Run("StallAfter", func(t *testing.T) {
		srv, c := startSim(t, endlessConfig(0))
		srv.SetFaults(sim.Faults{StallAfter: n})
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		deltas := 0
		// The stalled stream never ends by itself: Generate returning at
		// all, with the context's error, shows the deadline ended it.
		_, err := c.Generate(ctx, longRequest, func(backend.Delta) error { deltas++; return nil })
		if deltas != n || !errors.Is(err, context.DeadlineExceeded) || ctx.Err() == nil {
			t.Errorf("%d deltas, err %v; want %d deltas then the deadline", deltas, err, n)
		}
		tstest.WaitFor(t, 10*time.Second, "the stalled stream to count as cancelled", func() bool { return srv.Stats().Cancelled == 1 })
	})
	t.Run("Off", func(t *testing.T) {
		srv, c := startSim(t, endlessConfig(0))
		srv.SetFaults(sim.Faults{ErrorAfter: 1})
		srv.SetFaults(sim.Faults{})
		req := longRequest
		req.Options.MaxTokens = 2 * n
		if _, err := c.Generate(t.Context(), req, func(backend.Delta) error { return nil }); err != nil {
			t.Errorf("faults cleared, still: %v", err)
		}
	})
}

// TestDisconnectCancelsUpstream: when the client stops reading (emit fails
// or ctx is cancelled), the server sees the request end and stops
// generating.
func TestDisconnectCancelsUpstream(t *testing.T) {
	errStop := errors.New("consumer went away")
	for name, stop := range map[string]func(cancel context.CancelFunc) error{
		"emit error": func(context.CancelFunc) error { return errStop },
		"ctx cancel": func(cancel context.CancelFunc) error { cancel(); return nil },
	} {
		t.Run(name, func(t *testing.T) {
			srv, c := startSim(t, endlessConfig(200))
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			deltas := 0
			_, err := c.Generate(ctx, longRequest, func(backend.Delta) error {
				deltas++
				if deltas == 3 {
					return stop(cancel)
				}
				return nil
			})
			if !errors.Is(err, errStop) && !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v", err)
			}
			tstest.WaitFor(t, 10*time.Second, "the server to cancel the generation", func() bool {
				st := srv.Stats()
				return st.Cancelled == 1 && st.Active == 0
			})
			if st := srv.Stats(); st.Requests != 1 || st.Completed != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}
