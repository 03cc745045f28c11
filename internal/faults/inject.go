package faults

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"time"
)

// fault is one SIGKILL and the restart after it.
type fault struct {
	process string
	kind    Kind
	at      time.Duration // since the load began
	down    time.Duration // from the kill to the restarted process serving again
}

// inject kills one process at a time until ctx ends: the kinds come in
// rounds, each a random order of every kind, so a short run still hits each
// kind; within a kind the victim is random. The victim stays down for a
// random part of cfg.Downtime, then starts again with the same arguments
// and must serve again (a validator must also catch up with the others)
// before the next kill, so at most one process is down at a time and the
// four validators always keep more than two thirds of the votes.
//
// A process that does not come back is an error: the run cannot go on
// without it.
func inject(ctx context.Context, cfg Config, n *network, began time.Time, log io.Writer) ([]fault, error) {
	rng := rand.New(rand.NewPCG(cfg.Seed, 0xfa17))
	var faults []fault
	var round []Kind
	for {
		wait := cfg.FaultEvery/2 + time.Duration(rng.Int64N(int64(cfg.FaultEvery)))
		if sleep(ctx, wait) != nil {
			return faults, nil
		}
		if len(round) == 0 {
			round = append([]Kind(nil), Kinds...)
			rng.Shuffle(len(round), func(i, j int) { round[i], round[j] = round[j], round[i] })
		}
		kind := round[0]
		round = round[1:]
		victims := n.ofKind(kind)
		p := victims[rng.IntN(len(victims))]
		f := fault{process: p.name, kind: kind, at: time.Since(began)}
		killed := time.Now()
		p.kill()
		fmt.Fprintf(log, "%6.1fs  SIGKILL %s\n", f.at.Seconds(), p.name)
		// The restart does not take ctx: a process killed just before
		// the load ends must still come back for the final checks.
		rctx := context.WithoutCancel(ctx)
		sleep(rctx, cfg.Downtime/4+time.Duration(rng.Int64N(int64(cfg.Downtime))))
		if err := p.start(rctx); err != nil {
			return faults, fmt.Errorf("restart after a kill: %w", err)
		}
		if kind == KindValidator {
			if err := waitCaughtUp(rctx, p.readyValue(), n.rpcs); err != nil {
				return faults, err
			}
		}
		f.down = time.Since(killed)
		faults = append(faults, f)
		fmt.Fprintf(log, "%6.1fs  %s serving again after %.1fs\n", time.Since(began).Seconds(), p.name, f.down.Seconds())
	}
}
