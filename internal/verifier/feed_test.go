package verifier_test

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/gateway/samplefeed"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/verifier"
)

// TestSampleFeedAccess: the feed answers only signed requests from keys
// the ledger knows as staked verifiers, each signature once, for the exact
// request it signs; the gateway names its key and chain on every answer.
func TestSampleFeedAccess(t *testing.T) {
	ref, err := sim.New(fastSim(0))
	if err != nil {
		t.Fatal(err)
	}
	sn := sampledNetwork(t, sampledOptions{main: ref, verifiers: 1})
	stranger, err := keys.Generate()
	if err != nil {
		t.Fatal(err)
	}
	gw := sn.Gateway.Key.Public()
	const chainID = "idlegrid-dev"
	now := time.Now()
	signed := func(k keys.PrivateKey, chain string, signedTarget string, at time.Time) http.Header {
		h := http.Header{}
		samplefeed.Sign(h, k, chain, gw, http.MethodGet, signedTarget, at)
		return h
	}
	target := samplefeed.Path + "?after=0"
	replayed := signed(sn.verifiers[0], chainID, target, now)
	for _, tc := range []struct {
		name   string
		target string
		header http.Header
		status int
		says   string
	}{
		{"unsigned", target, nil, 401, "registered verifiers"},
		{"garbage headers", target, http.Header{samplefeed.HeaderVerifier: {"zz"}, samplefeed.HeaderTime: {"1"}, samplefeed.HeaderSignature: {"00"}}, 401, "Bad verifier signature"},
		{"not a verifier", target, signed(stranger, chainID, target, now), 403, "no account"},
		{"other chain", target, signed(sn.verifiers[0], "other-chain", target, now), 401, "bad signature"},
		{"other target", samplefeed.Path + "?after=5", signed(sn.verifiers[0], chainID, target, now), 401, "bad signature"},
		{"stale", target, signed(sn.verifiers[0], chainID, target, now.Add(-10*time.Minute)), 401, "from the gateway's clock"},
		{"verifier", target, replayed, 200, `"samples": []`},
		{"replayed", target, replayed, 401, "already used"},
		{"bad after", samplefeed.Path + "?after=-1", signed(sn.verifiers[0], chainID, samplefeed.Path+"?after=-1", now), 400, "not a sequence number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, sn.Gateway.URL()+tc.target, nil)
			for k, v := range tc.header {
				req.Header[k] = v
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.says) {
				t.Fatalf("%d %s, want %d with %q", resp.StatusCode, b, tc.status, tc.says)
			}
			if resp.Header.Get(samplefeed.HeaderGateway) != gw.String() || resp.Header.Get(samplefeed.HeaderChain) != chainID {
				t.Fatalf("gateway headers: %v", resp.Header)
			}
		})
	}
}

// TestHashOnlySamples: without shared texts the verifier judges nothing,
// but learns from the samples which providers serve its models.
func TestHashOnlySamples(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ref, err := sim.New(fastSim(0))
	if err != nil {
		t.Fatal(err)
	}
	models, _ := ref.Models(ctx)
	sn := sampledNetwork(t, sampledOptions{main: ref, hashesOnly: true, verifiers: 1})
	v := sampleVerifier(t, sn, ref, sn.verifiers[0])
	for i := range 3 {
		if r := consume(t, sn, canaryTraffic(models[0].Name, i, 32), sn.Provider.Key); r.status != 200 {
			t.Fatalf("request %d: %d %s", i, r.status, r.body)
		}
	}
	ps, err := v.PullSamples(ctx)
	if err != nil || len(ps) != 0 {
		t.Fatalf("hash-only samples judged: %+v %v", ps, err)
	}
	if f := v.Feed(); f.Read != 3 || f.Judged != 0 {
		t.Fatalf("feed: %+v", f)
	}
	if k := v.Known(models[0].Name); len(k) != 1 || k[0] != sn.Provider.Key {
		t.Fatalf("providers learned from samples: %v", k)
	}
	if ps, err := v.PullSamples(ctx); err != nil || v.Feed().Read != 3 || len(ps) != 0 {
		t.Fatalf("second read: %+v %v %+v", ps, err, v.Feed())
	}
}

// gated holds its first generation until open is closed, and closes
// entered when that generation starts.
type gated struct {
	backend.Backend
	entered, open chan struct{}
	once          sync.Once
}

func (g *gated) Generate(ctx context.Context, req protocol.Request, emit func(backend.Delta) error) (backend.Result, error) {
	first := false
	g.once.Do(func() { first = true; close(g.entered) })
	if first {
		select {
		case <-g.open:
		case <-ctx.Done():
			return backend.Result{}, ctx.Err()
		}
	}
	return g.Backend.Generate(ctx, req, emit)
}

// TestFeedMeetsNewcomersDuringBacklog: a provider whose first response
// is sampled while the verifier judges a backlog of samples is met (its
// probation canaries can start) before the backlog is done, not after.
func TestFeedMeetsNewcomersDuringBacklog(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ref, err := sim.New(fastSim(0))
	if err != nil {
		t.Fatal(err)
	}
	late, err := sim.New(fastSim(0))
	if err != nil {
		t.Fatal(err)
	}
	sn := sampledNetwork(t, sampledOptions{main: ref, extra: map[string]backend.Backend{"late": late}, verifiers: 1})
	models, err := ref.Models(ctx)
	if err != nil {
		t.Fatal(err)
	}
	model := models[0].Name
	const backlog = 4
	for i := range backlog {
		if s := consume(t, sn, canaryTraffic(model, i, 8), sn.providers["main"]); s.status != http.StatusOK {
			t.Fatalf("consumer request: %d %s", s.status, s.body)
		}
	}
	g := &gated{Backend: ref, entered: make(chan struct{}), open: make(chan struct{})}
	var (
		mu      sync.Mutex
		v       *verifier.Verifier
		knownAt []bool // per verdict on the backlog: was the newcomer met then
	)
	v = sampleVerifier(t, sn, g, sn.verifiers[0], func(c *verifier.Config) {
		c.NoFeed, c.SampleInterval = true, time.Millisecond
		c.OnVerdict = func(p verifier.Posted) {
			if p.Provider == sn.providers["main"] {
				mu.Lock()
				knownAt = append(knownAt, slices.Contains(v.Known(model), sn.providers["late"]))
				mu.Unlock()
			}
		}
	})
	done := make(chan error, 1)
	go func() {
		_, err := v.PullSamples(ctx)
		done <- err
	}()
	select {
	case <-g.entered: // judging the backlog's first sample
	case <-ctx.Done():
		t.Fatal("the verifier never judged the backlog")
	}
	if s := consume(t, sn, canaryTraffic(model, backlog, 8), sn.providers["late"]); s.status != http.StatusOK {
		t.Fatalf("newcomer's request: %d %s", s.status, s.body)
	}
	close(g.open)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(knownAt) != backlog {
		t.Fatalf("%d verdicts on the backlog, want %d", len(knownAt), backlog)
	}
	if !knownAt[1] {
		t.Errorf("the newcomer was not met before the backlog's second verdict (met at each verdict: %v)", knownAt)
	}
}

// TestFeedReportsServedTokens: the gateway's feed reports the completion
// tokens it served, and the verifier's budget counts their growth from
// its first read: here every response is sampled, so what it served since
// is the sum of the sampled receipts' completion tokens.
func TestFeedReportsServedTokens(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ref, err := sim.New(fastSim(0))
	if err != nil {
		t.Fatal(err)
	}
	models, _ := ref.Models(ctx)
	sn := sampledNetwork(t, sampledOptions{main: ref, hashesOnly: true, verifiers: 1})
	v := sampleVerifier(t, sn, ref, sn.verifiers[0])
	if r := consume(t, sn, canaryTraffic(models[0].Name, 0, 32), sn.Provider.Key); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if _, err := v.PullSamples(ctx); err != nil {
		t.Fatal(err)
	}
	if b := v.Budget(); !b.Paced || b.Served != 0 || b.Budget != verifier.DefaultBudget {
		t.Fatalf("after the first read: %+v", b)
	}
	for i := 1; i <= 4; i++ {
		if r := consume(t, sn, canaryTraffic(models[0].Name, i, 32), sn.Provider.Key); r.status != 200 {
			t.Fatalf("request %d: %d %s", i, r.status, r.body)
		}
	}
	var want uint64
	target := samplefeed.Path + "?after=1"
	req, _ := http.NewRequest(http.MethodGet, sn.Gateway.URL()+target, nil)
	samplefeed.Sign(req.Header, sn.verifiers[0], "idlegrid-dev", sn.Gateway.Key.Public(), http.MethodGet, target, time.Now())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	page, err := samplefeed.ParsePage(raw)
	if err != nil || len(page.Samples) != 4 || page.ServedTokens == nil || page.Share != 1 {
		t.Fatalf("page: %s (%v)", raw, err)
	}
	for _, s := range page.Samples {
		want += s.Receipt.Receipt.CompletionTokens
	}
	if _, err := v.PullSamples(ctx); err != nil {
		t.Fatal(err)
	}
	if b := v.Budget(); want == 0 || b.Served != want {
		t.Fatalf("served %d since the first read, want %d", b.Served, want)
	}
}
