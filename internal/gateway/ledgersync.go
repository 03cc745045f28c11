package gateway

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/hub"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
)

// Provider admission. With a ledger, the gateway serves only providers
// that have something at stake and can be convicted: registered as
// providers on the ledger, staked at least min_provider_stake, and not
// jailed. The hub asks admit after a provider's handshake signature checks
// out, and refuses the connection with the reason; afterwards the gateway
// re-reads the standing of every connected provider at each new block
// (watchLedger) and disconnects one that was jailed or unstaked, so it gets
// no new job after the block that changed its standing. Until a provider's
// standing has been read it gets no job either.
//
// Config.AllowUnregisteredProviders turns the check off for a closed
// deployment whose providers are all trusted; without a ledger there is
// nothing to check against and every provider that signs the handshake is
// served (a gateway without a ledger settles nothing either).

// Poll intervals of the ledger watch.
const (
	// paramsRefresh is how often the gateway re-reads the chain's
	// parameters and the standings even without a new block.
	paramsRefresh = 30 * time.Second
	// defaultBlockPoll is how often the gateway asks the node for its
	// latest height (Config.BlockPoll).
	defaultBlockPoll = 200 * time.Millisecond
	// standingReaders bound the standing queries in flight at once.
	standingReaders = 8
	// unauditedReputation is the routing weight, in thousandths, of a
	// provider no verifier has judged yet: unknown is not perfect.
	unauditedReputation = 500
)

// standing is what the ledger says of a provider, for admission and
// routing.
type standing struct {
	registered bool // the ledger knows the key as a provider
	stake      money.Amount
	jailed     bool
	audits     uint64
	// recentFailures counts its failed cases still inside the conviction
	// window (probation.go).
	recentFailures int
	reputation     uint64    // thousandths, as the ledger computes it
	read           time.Time // when it was read
	// passed counts its passed cases per model digest (probation.go).
	passed ledger.PassedDigests
}

// refusal says why a provider with this standing may not serve, "" when
// it may. Each names the command that fixes it; it ends up as a WebSocket
// close reason (at most 120 bytes), so it stays short.
func (s standing) refusal(minStake money.Amount) string {
	switch {
	case !s.registered:
		return "not registered as a provider on the ledger; run `idlegrid provide init`"
	case s.jailed:
		return "jailed on the ledger after a conviction; `idlegrid ledger unjail` after the jail term"
	case s.stake < minStake:
		return fmt.Sprintf("stake %s below the minimum %s; run `idlegrid provide init`", s.stake, minStake)
	}
	return ""
}

// routingReputation is the scheduler's input: the ledger's reputation for
// a provider verifiers have judged, unauditedReputation for one they have
// not, and 0 (the lowest) for one the ledger does not know.
func (s standing) routingReputation() uint64 {
	switch {
	case !s.registered:
		return 0
	case s.audits == 0:
		return unauditedReputation
	}
	return s.reputation
}

// admission holds the standings and the minimum stake.
type admission struct {
	mu        sync.Mutex
	standings map[keys.PublicKey]standing
	minStake  money.Amount
	params    bool // minStake has been read
}

// errLedgerUnreadable refuses a provider whose standing the gateway could
// not read: not its fault, so not ErrNotAdmitted.
var errLedgerUnreadable = errors.New("the gateway could not read the ledger to admit this provider; retry later")

// enforced reports whether providers must be admitted by the ledger.
func (g *Gateway) enforced() bool { return g.cfg.Ledger != nil && !g.cfg.AllowUnregisteredProviders }

// admitProvider is the hub's admission hook: nil when key may serve here, else an
// error wrapping hub.ErrNotAdmitted that says why and what fixes it. A
// ledger that cannot be read refuses too, with a plain error: the agent
// retries with its usual backoff, not after RefusedRetry.
func (g *Gateway) admitProvider(ctx context.Context, key keys.PublicKey) error {
	if !g.enforced() {
		return nil
	}
	min, err := g.minStake(ctx)
	if err != nil {
		g.log.Warn("could not read the ledger's parameters to admit a provider", "provider", key.String(), "err", err)
		return errLedgerUnreadable
	}
	st, err := g.readStanding(ctx, key)
	if err != nil {
		g.log.Warn("could not read a provider's standing to admit it", "provider", key.String(), "err", err)
		return errLedgerUnreadable
	}
	g.adm.mu.Lock()
	g.adm.standings[key] = st
	g.adm.mu.Unlock()
	if why := st.refusal(min); why != "" {
		return fmt.Errorf("%w: %s", hub.ErrNotAdmitted, why)
	}
	return nil
}

// minStake is the ledger's min_provider_stake, read once if RefreshParams
// has not yet.
func (g *Gateway) minStake(ctx context.Context) (money.Amount, error) {
	g.adm.mu.Lock()
	min, ok := g.adm.minStake, g.adm.params
	g.adm.mu.Unlock()
	if ok {
		return min, nil
	}
	p, err := g.cfg.Ledger.Params(ctx)
	if err != nil {
		return 0, err
	}
	g.setMinStake(p.MinProviderStake)
	return p.MinProviderStake, nil
}

func (g *Gateway) setMinStake(min money.Amount) {
	g.adm.mu.Lock()
	g.adm.minStake, g.adm.params = min, true
	g.adm.mu.Unlock()
}

// readStanding reads key's standing from the ledger; a key the ledger does
// not know as a provider is an unregistered standing, not an error.
func (g *Gateway) readStanding(ctx context.Context, key keys.PublicKey) (standing, error) {
	now := g.cfg.Now()
	p, err := g.cfg.Ledger.Provider(ctx, key.Address())
	if errors.Is(err, chainrpc.ErrNotFound) {
		return standing{read: now}, nil
	}
	if err != nil {
		return standing{}, err
	}
	return standing{registered: true, stake: p.Stake, jailed: p.Jailed, audits: p.Audits,
		recentFailures: len(p.Recent), reputation: p.Reputation, read: now, passed: p.Passed}, nil
}

// standing is key's last known standing; ok is false when it has never
// been read.
func (g *Gateway) standing(key keys.PublicKey) (standing, bool) {
	g.adm.mu.Lock()
	defer g.adm.mu.Unlock()
	st, ok := g.adm.standings[key]
	return st, ok
}

// servable reports whether the scheduler may pick the provider: always
// without enforcement unless the ledger jailed it; with enforcement only
// when its standing has been read and allows it.
func (g *Gateway) servable(key keys.PublicKey) (standing, bool) {
	st, ok := g.standing(key)
	if !g.enforced() {
		return st, !st.jailed
	}
	g.adm.mu.Lock()
	min := g.adm.minStake
	g.adm.mu.Unlock()
	return st, ok && st.refusal(min) == ""
}

// RefreshParams reads the chain's allowed digests and minimum provider
// stake, and the standing of every connected provider: the gateway routes
// only to allowed digests and admitted providers, and weighs reputation.
// On error the last known policy stays. The ledger watch calls it at every
// new block and every 30 s; call it once before serving.
func (g *Gateway) RefreshParams(ctx context.Context) {
	if g.cfg.Ledger == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	p, err := g.cfg.Ledger.Params(ctx)
	if err != nil {
		g.log.Warn("could not read the ledger's parameters; keeping the last allowed digests", "err", err)
		return
	}
	if len(p.AllowedDigests) == 0 {
		g.sched.SetDigestPolicy(nil)
	} else {
		g.sched.SetDigestPolicy(p.DigestAllowed)
	}
	g.setMinStake(p.MinProviderStake)
	g.refreshStandings(ctx)
}

// refreshStandings re-reads the standing of every connected provider and,
// with enforcement, disconnects those that may no longer serve. A standing
// that cannot be read keeps its last known value.
func (g *Gateway) refreshStandings(ctx context.Context) {
	start := g.cfg.Now()
	infos := g.cfg.Hub.Snapshot()
	read := make([]standing, len(infos))
	ok := make([]bool, len(infos))
	var wg sync.WaitGroup
	sem := make(chan struct{}, standingReaders)
	for i, in := range infos {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			st, err := g.readStanding(ctx, in.Key)
			if err != nil {
				g.log.Warn("could not read a provider's standing on the ledger; keeping the last known", "provider", in.Key.String(), "err", err)
				return
			}
			read[i], ok[i] = st, true
		})
	}
	wg.Wait()
	connected := make(map[keys.PublicKey]bool, len(infos))
	g.adm.mu.Lock()
	for i, in := range infos {
		connected[in.Key] = true
		if ok[i] {
			g.adm.standings[in.Key] = read[i]
		}
	}
	// Forget providers that left, except those admitted while this ran.
	for k, st := range g.adm.standings {
		if !connected[k] && st.read.Before(start) {
			delete(g.adm.standings, k)
		}
	}
	min := g.adm.minStake
	g.adm.mu.Unlock()
	if !g.enforced() {
		return
	}
	for i, in := range infos {
		if !ok[i] {
			continue
		}
		if why := read[i].refusal(min); why != "" {
			g.log.Warn("provider lost its admission on the ledger; disconnecting it", "provider", in.Key.String(), "reason", why)
			g.cfg.Hub.Disconnect(in.Key, fmt.Errorf("%w: %s", hub.ErrNotAdmitted, why))
		}
	}
}

// watchLedger refreshes parameters and standings at every new block of the
// ledger (it polls the node's height every Config.BlockPoll) and every
// paramsRefresh, until ctx ends.
func (g *Gateway) watchLedger(ctx context.Context) {
	poll := time.NewTicker(g.cfg.BlockPoll)
	defer poll.Stop()
	every := time.NewTicker(paramsRefresh)
	defer every.Stop()
	var last int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-every.C:
			g.RefreshParams(ctx)
		case <-poll.C:
			hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			h, err := g.cfg.Ledger.Height(hctx)
			cancel()
			if err != nil || h == last {
				continue
			}
			last = h
			g.RefreshParams(ctx)
		}
	}
}
