package verifier_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/verify"
)

// TestCheatersConvictedThroughNetwork: in one network, four cheating
// providers — fabricated text, inflated token counts, replayed answers,
// early truncation claiming "stop" — and an honest provider on other
// hardware (logit noise σ = 0.01) serve the same greedy consumer traffic.
// The gateway samples every response with its text; a verifier re-scores
// the samples on the reference simulator and posts verdicts. Every cheater
// fails at least two cases and is jailed by the ledger; the honest
// provider fails none. The inflating provider's answers that reach
// max_tokens are refused by the gateway's meter (not billed, no receipt),
// the others are billed and fail the verifier's count rule.
func TestCheatersConvictedThroughNetwork(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ref, err := sim.New(fastSim(0))
	if err != nil {
		t.Fatal(err)
	}
	models, err := ref.Models(ctx)
	if err != nil {
		t.Fatal(err)
	}
	model := models[0].Name
	wantRules := map[string][]verify.Rule{
		"fabricated": {verify.RuleHard, verify.RuleSoft, verify.RuleEnd, verify.RuleCount},
		"inflated":   {verify.RuleCount},
		"replayed":   {verify.RuleHard, verify.RuleSoft, verify.RuleCount, verify.RuleLength, verify.RuleEnd},
		"truncated":  {verify.RuleEnd},
	}
	sn := sampledNetwork(t, sampledOptions{
		main: &sim.Perturbed{Sim: ref, Noise: 0.01, Seed: 5},
		extra: map[string]backend.Backend{
			"fabricated": &verify.Fabricate{Claims: models, MinWords: 8, MaxWords: 40, Seed: 3},
			"inflated":   &verify.Inflate{Backend: ref, Factor: 1.25},
			"replayed":   &verify.Replay{Backend: ref},
			"truncated":  &verify.Truncate{Backend: ref, Cap: 16},
		},
		verifiers: 1,
	})
	v := sampleVerifier(t, sn, ref, sn.verifiers[0])

	// The inflating provider's answer that fills max_tokens claims more
	// tokens than max_tokens: the gateway refuses to countersign it.
	short := canaryTraffic(model, 0, 4)
	if r := consume(t, sn, short, sn.providers["inflated"]); r.status != 502 || !strings.Contains(r.body, "not billed") {
		t.Fatalf("inflated answer at max_tokens: %d %s", r.status, r.body)
	}
	const requests = 6
	billed := map[string][]string{}
	for i := range requests {
		for name, key := range sn.providers {
			r := consume(t, sn, canaryTraffic(model, i+1, 128), key)
			switch {
			case r.status == 200:
				billed[name] = append(billed[name], r.id)
			case name == "inflated" && r.status == 502 && strings.Contains(r.body, "not billed"):
				// the meter's refusal again: an answer that reached max_tokens
			default:
				t.Fatalf("%s request %d: %d %s", name, i, r.status, r.body)
			}
		}
	}
	for name, ids := range billed {
		for _, id := range ids {
			if _, err := sn.Gateway.Store.Receipt(ctx, id); err != nil {
				t.Fatalf("%s: served %s without a stored receipt: %v", name, id, err)
			}
		}
	}

	posted, err := v.PullSamples(ctx)
	if err != nil {
		t.Fatal(err)
	}
	failed := map[string]int{}
	cases := map[string]int{}
	name := map[string]string{}
	for n, k := range sn.providers {
		name[k.String()] = n
	}
	for _, p := range posted {
		n := name[p.Provider.String()]
		if p.Err != "" || p.Source != "sample" {
			t.Fatalf("%s: verdict not posted: %+v", n, p)
		}
		cases[n]++
		if !p.Verdict.Pass {
			failed[n]++
			if n == "main" {
				t.Errorf("honest provider failed a case: %s", p.Verdict.Reason)
			} else if !containsRule(wantRules[n], p.Verdict.Rule) {
				t.Errorf("%s failed on rule %q (%s), want one of %v", n, p.Verdict.Rule, p.Verdict.Reason, wantRules[n])
			}
		}
	}
	t.Logf("cases %v, failed %v, feed %+v", cases, failed, v.Feed())
	for n := range sn.providers {
		if cases[n] != len(billed[n]) {
			t.Errorf("%s: %d billed answers, %d judged", n, len(billed[n]), cases[n])
		}
		if n != "main" && failed[n] < 2 {
			t.Errorf("%s: %d of %d cases failed, want at least 2", n, failed[n], cases[n])
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	matureCases(t, ctx, sn, sn.verifiers[0], 3)
	l := chainrpc.StateReader{Client: sn.Validator.Node.Client()}
	for n, k := range sn.providers {
		if n == "main" {
			continue
		}
		waitProvider(t, ctx, l, k.Address(), func(p chainrpc.ProviderInfo) bool { return p.Jailed })
	}
	honest := sn.providers["main"].Address()
	waitProvider(t, ctx, l, honest, func(p chainrpc.ProviderInfo) bool { return p.Audits >= uint64(cases["main"]) })
	if p, err := l.Provider(ctx, honest); err != nil || p.Jailed || p.Failures != 0 || p.Audits != uint64(cases["main"]) {
		t.Errorf("honest provider on the ledger: %+v %v", p, err)
	}
}

func containsRule(rs []verify.Rule, r verify.Rule) bool {
	for _, x := range rs {
		if x == r {
			return true
		}
	}
	return false
}
