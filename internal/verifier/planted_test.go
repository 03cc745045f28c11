package verifier_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
	"github.com/idlegrid/idlegrid/internal/verifier"
	"github.com/idlegrid/idlegrid/internal/verify"
)

// alwaysPass is a lying verifier's judge: nothing fails it.
func alwaysPass(c *verifier.Config) {
	inf := math.Inf(1)
	c.Judge = verify.Judge{HardDeficit: inf, SoftDeficit: inf, SoftMinCount: math.MaxInt32, EndDeficit: inf,
		SampledDeficit: inf, SampledMinCount: math.MaxInt32, CountSlack: math.MaxInt32}
}

// TestPlantedSamplesCatchLyingVerifier: the gateway plants known-bad and
// known-good samples into its feed (settled and committed on the ledger
// first). Both verifiers judge each; halfway to maturity the gateway
// reveals it, and at maturity a verifier that passes everything loses
// verifier_slash_bps of its stake for each known-bad sample it passed; an
// honest verifier judges every sample rightly and keeps its stake. The
// planted cases never count against the provider they name.
func TestPlantedSamplesCatchLyingVerifier(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ref, err := sim.New(fastSim(0))
	if err != nil {
		t.Fatal(err)
	}
	// Cases mature 20 blocks after their verdict: time for the reveal.
	sn := sampledNetwork(t, sampledOptions{main: ref, mainSim: ref, plant: true, verifiers: 2, delay: 20})
	if sn.Gateway.Planter == nil {
		t.Fatal("no planter")
	}
	honestKey, liarKey := sn.verifiers[0], sn.verifiers[1]
	honest := sampleVerifier(t, sn, ref, honestKey)
	liar := sampleVerifier(t, sn, ref, liarKey, alwaysPass)
	l := chainrpc.StateReader{Client: sn.Validator.Node.Client()}
	stake := func(k keys.PrivateKey) money.Amount {
		a, err := l.Account(ctx, k.Public().Address())
		if err != nil {
			t.Fatal(err)
		}
		return a.Stake
	}
	honestStake, liarStake := stake(honestKey), stake(liarKey)

	// plantAndJudge plants one sample, lets first judge it (then the
	// other verifier, whose verdict joins the open case), moves the chain
	// halfway to the case's maturity and waits for the reveal.
	plantAndJudge := func(pass bool, first, second *verifier.Verifier, wantVerdict bool) {
		t.Helper()
		s, err := sn.Gateway.Planter.Plant(ctx, pass)
		if err != nil {
			t.Fatal(err)
		}
		ps, err := first.PullSamples(ctx)
		if err != nil || len(ps) != 1 || ps[0].Evidence != s.Evidence || ps[0].Err != "" || ps[0].Verdict.Pass != wantVerdict {
			t.Fatalf("planted pass=%v: first verifier: %+v %v", pass, ps, err)
		}
		if ps, err := second.PullSamples(ctx); err != nil || len(ps) != 1 || ps[0].Err != "" {
			t.Fatalf("planted pass=%v: a second verdict on the open case: %+v %v", pass, ps, err)
		}
		// One block at a time, slower than the planter looks (every
		// 250 ms): it reveals halfway to maturity.
		for range 19 {
			if c, err := l.Case(ctx, s.Evidence); err == nil && c.Planted {
				break
			}
			matureCases(t, ctx, sn, honestKey, 1)
			time.Sleep(300 * time.Millisecond)
		}
		waitCase(t, ctx, l, s.Evidence, func(c ledger.Case) bool { return c.Planted && len(c.Votes) == 2 && !c.Matured })
	}
	plantAndJudge(false, liar, honest, true)
	plantAndJudge(true, honest, liar, true)
	plantAndJudge(false, honest, liar, false)

	// The planter forgets a plant once its reveal has committed.
	for sn.Gateway.Planter.Pending() != 0 {
		select {
		case <-ctx.Done():
			t.Fatalf("%d planted samples not revealed", sn.Gateway.Planter.Pending())
		case <-time.After(20 * time.Millisecond):
		}
	}
	// Past their maturity, the liar lost stake on both known-bad samples
	// and the planted cases left the provider's record untouched.
	matureCases(t, ctx, sn, honestKey, 22)
	slash := 10_000 - uint64(ledger.DefaultParams().VerifierSlashBps)
	want, _ := liarStake.MulDiv(slash, 10_000)
	want, _ = want.MulDiv(slash, 10_000)
	if got := stake(liarKey); got != want {
		t.Errorf("lying verifier's stake %s, want %s (was %s)", got, want, liarStake)
	}
	if got := stake(honestKey); got != honestStake {
		t.Errorf("honest verifier's stake %s, was %s", got, honestStake)
	}
	if p, err := l.Provider(ctx, sn.Provider.Key.Address()); err != nil || p.Audits != 0 || p.Failures != 0 || p.Jailed {
		t.Errorf("provider named by planted samples: %+v %v", p, err)
	}
}

func waitCase(t *testing.T, ctx context.Context, l chainrpc.StateReader, evidence receipt.Hash, done func(ledger.Case) bool) {
	t.Helper()
	for {
		c, err := l.Case(ctx, evidence)
		if err == nil && done(c) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("case %s: %+v %v", evidence, c, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
