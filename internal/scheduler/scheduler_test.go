package scheduler

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// key returns a distinct, recognizable provider key.
func key(n byte) keys.PublicKey {
	var k keys.PublicKey
	k[0] = n
	return k
}

func newScheduler(t *testing.T, cfg Config) *Scheduler {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func offering(n byte, slots, inflight int, paused bool, models ...string) Candidate {
	c := Candidate{Key: key(n), Slots: slots, InFlight: inflight, Paused: paused}
	for _, m := range models {
		c.Models = append(c.Models, protocol.Model{Name: m, Digest: "digest-of-" + m, PricePromptPerMTok: 1, PriceCompletionPerMTok: 2})
	}
	return c
}

func TestMatchModel(t *testing.T) {
	tests := []struct {
		offered, requested string
		want               bool
	}{
		{"sim", "sim", true},
		{"sim:latest", "sim", true},
		{"sim", "sim:latest", true},
		{"sim:latest", "sim:latest", true},
		{"llama3.2:1b", "llama3.2:1b", true},
		{"llama3.2:1b", "llama3.2", false},
		{"llama3.2", "llama3.2:1b", false},
		{"llama3.2:1b", "llama3.2:1b:latest", true}, // the rule is textual, as Ollama's default tag
		{"sim", "SIM", false},
		{"sim", "sim2", false},
		{"sim:latest", "sim:lat", false},
		{"registry.local:5000/team/sim:latest", "registry.local:5000/team/sim", true},
	}
	for _, tt := range tests {
		if got := MatchModel(tt.offered, tt.requested); got != tt.want {
			t.Errorf("MatchModel(%q, %q) = %v, want %v", tt.offered, tt.requested, got, tt.want)
		}
	}
}

func TestPick(t *testing.T) {
	tests := []struct {
		name  string
		cands []Candidate
		model string
		// want is the only acceptable provider; 0 when Pick must fail.
		want      byte
		wantModel string // the provider's own name for the model
		// On failure: the counts and message.
		offering, paused, busy int
		msg                    string
		onlyBusy               bool
	}{
		{name: "exact name", cands: []Candidate{offering(1, 2, 0, false, "sim")}, model: "sim", want: 1, wantModel: "sim"},
		{name: "requested without :latest", cands: []Candidate{offering(1, 2, 0, false, "sim:latest")}, model: "sim", want: 1, wantModel: "sim:latest"},
		{name: "requested with :latest", cands: []Candidate{offering(1, 2, 0, false, "sim")}, model: "sim:latest", want: 1, wantModel: "sim"},
		{name: "second model of a provider", cands: []Candidate{offering(1, 2, 0, false, "a", "b:7b")}, model: "b:7b", want: 1, wantModel: "b:7b"},
		{name: "only the provider with the model",
			cands: []Candidate{offering(1, 4, 0, false, "other"), offering(2, 4, 3, false, "sim"), offering(3, 4, 0, false, "other")},
			model: "sim", want: 2, wantModel: "sim"},
		{name: "paused skipped",
			cands: []Candidate{offering(1, 4, 0, true, "sim"), offering(2, 4, 3, false, "sim")},
			model: "sim", want: 2, wantModel: "sim"},
		{name: "full skipped",
			cands: []Candidate{offering(1, 4, 4, false, "sim"), offering(2, 4, 3, false, "sim")},
			model: "sim", want: 2, wantModel: "sim"},
		{name: "of two, the less loaded",
			cands: []Candidate{offering(1, 4, 3, false, "sim"), offering(2, 4, 1, false, "sim")},
			model: "sim", want: 2, wantModel: "sim"},
		{name: "load is relative to slots",
			cands: []Candidate{offering(1, 2, 1, false, "sim"), offering(2, 16, 2, false, "sim")},
			model: "sim", want: 2, wantModel: "sim"},
		{name: "no providers", model: "sim", msg: `model "sim": 0 providers online`},
		{name: "nobody offers the model",
			cands: []Candidate{offering(1, 4, 0, false, "other"), offering(2, 4, 0, true, "sim:7b")},
			model: "sim", msg: `model "sim": 0 providers online`},
		{name: "all paused",
			cands: []Candidate{offering(1, 4, 0, true, "sim"), offering(2, 4, 0, true, "sim:latest"), offering(3, 4, 0, false, "other")},
			model: "sim", offering: 2, paused: 2, msg: `model "sim": 2 providers online, all paused by their owners`},
		{name: "all busy",
			cands: []Candidate{offering(1, 4, 4, false, "sim"), offering(2, 1, 1, false, "sim")},
			model: "sim", offering: 2, busy: 2, onlyBusy: true, msg: `model "sim": 2 providers online, 2 busy`},
		{name: "busy and paused",
			cands: []Candidate{offering(1, 4, 4, false, "sim"), offering(2, 4, 0, true, "sim"), offering(3, 4, 0, true, "sim")},
			model: "sim", offering: 3, busy: 1, paused: 2, onlyBusy: true, msg: `model "sim": 3 providers online, 2 paused, 1 busy`},
		{name: "paused and full counts as paused",
			cands: []Candidate{offering(1, 4, 4, true, "sim"), offering(2, 4, 4, false, "sim")},
			model: "sim", offering: 2, busy: 1, paused: 1, onlyBusy: true, msg: `model "sim": 2 providers online, 1 paused, 1 busy`},
		{name: "no slots at all is busy",
			cands: []Candidate{offering(1, 0, 0, false, "sim")},
			model: "sim", offering: 1, busy: 1, onlyBusy: true, msg: `model "sim": 1 provider online, 1 busy`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Several seeds: a filtered provider must never slip through.
			for seed := range uint64(20) {
				got, err := newScheduler(t, Config{Rand: rand.New(rand.NewPCG(seed, 1))}).Pick(tt.cands, &Request{Model: tt.model})
				if tt.want != 0 {
					if err != nil {
						t.Fatalf("Pick: %v", err)
					}
					if got.Key != key(tt.want) || got.Model.Name != tt.wantModel || got.Model.Digest != "digest-of-"+tt.wantModel {
						t.Fatalf("seed %d: picked provider %d model %+v, want provider %d model %q", seed, got.Key[0], got.Model, tt.want, tt.wantModel)
					}
					continue
				}
				var u *Unplaceable
				if !errors.As(err, &u) {
					t.Fatalf("Pick = %+v, %v; want an *Unplaceable", got, err)
				}
				if u.Model != tt.model || u.Offering != tt.offering || u.Paused != tt.paused || u.Busy != tt.busy {
					t.Errorf("Unplaceable %+v, want offering %d paused %d busy %d", *u, tt.offering, tt.paused, tt.busy)
				}
				if u.Error() != tt.msg {
					t.Errorf("Error() = %q, want %q", u.Error(), tt.msg)
				}
				if u.OnlyBusy() != tt.onlyBusy {
					t.Errorf("OnlyBusy() = %v, want %v", u.OnlyBusy(), tt.onlyBusy)
				}
			}
		})
	}
}

func TestPickNilRand(t *testing.T) {
	cands := []Candidate{offering(1, 4, 0, false, "sim"), offering(2, 4, 4, false, "sim"), offering(3, 4, 2, false, "sim")}
	s := newScheduler(t, Config{})
	for range 100 {
		got, err := s.Pick(cands, &Request{Model: "sim"})
		if err != nil {
			t.Fatal(err)
		}
		if got.Key == key(2) {
			t.Fatal("picked a provider without a free slot")
		}
	}
}

// TestPowerOfTwoChoices checks the distribution: each pick compares two
// distinct random candidates and takes the less loaded, so with n
// candidates of distinct loads the one of rank r (0 = least loaded) wins
// with probability 2(n-1-r) / (n(n-1)), and the most loaded never does.
func TestPowerOfTwoChoices(t *testing.T) {
	cands := []Candidate{
		offering(1, 8, 6, false, "sim"), // load 0.75: most loaded that can still take a job
		offering(2, 8, 0, false, "sim"), // 0: least loaded
		offering(3, 8, 8, false, "sim"), // 1.0: full, filtered out
		offering(4, 4, 1, false, "sim"), // 0.25
		offering(5, 2, 1, false, "sim"), // 0.5
		offering(6, 1, 1, false, "sim"), // 1.0: full
	}
	// Eligible by rank: 2, 4, 5, 1 (n = 4): 6/12, 4/12, 2/12, 0.
	want := map[byte]float64{2: 6.0 / 12, 4: 4.0 / 12, 5: 2.0 / 12, 1: 0}
	const picks = 24000
	s := newScheduler(t, Config{Rand: rand.New(rand.NewPCG(42, 7))})
	count := map[byte]int{}
	for range picks {
		c, err := s.Pick(cands, &Request{Model: "sim"})
		if err != nil {
			t.Fatal(err)
		}
		count[c.Key[0]]++
	}
	if count[3] != 0 || count[6] != 0 {
		t.Fatalf("full providers were picked: %v", count)
	}
	if count[2] <= count[1] {
		t.Fatalf("least loaded picked %d times, most loaded %d: %v", count[2], count[1], count)
	}
	for k, p := range want {
		got := float64(count[k]) / picks
		if got < p-0.02 || got > p+0.02 {
			t.Errorf("provider %d picked %.3f of the time, want %.3f (counts %v)", k, got, p, count)
		}
	}
	// Ties: equal loads share the work rather than herd onto one.
	tied := []Candidate{offering(1, 4, 1, false, "sim"), offering(2, 4, 1, false, "sim"), offering(3, 4, 1, false, "sim")}
	count = map[byte]int{}
	for range 3000 {
		c, err := s.Pick(tied, &Request{Model: "sim"})
		if err != nil {
			t.Fatal(err)
		}
		count[c.Key[0]]++
	}
	for k := range byte(3) {
		if n := count[k+1]; n < 800 || n > 1200 {
			t.Errorf("equally loaded provider %d picked %d of 3000 times: %v", k+1, n, count)
		}
	}
}
