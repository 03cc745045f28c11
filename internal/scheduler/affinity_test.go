package scheduler

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/idlegrid/idlegrid/internal/protocol"
)

func chat(model string, msgs ...string) *protocol.Request {
	req := &protocol.Request{Kind: protocol.KindChat, Model: model}
	roles := []string{"system", "user", "assistant"}
	for i, m := range msgs {
		role := roles[0]
		if i > 0 {
			role = roles[1+(i-1)%2]
		}
		req.Messages = append(req.Messages, protocol.ChatMessage{Role: role, Content: m})
	}
	return req
}

func generate(model, system, prompt string) *protocol.Request {
	return &protocol.Request{Kind: protocol.KindGenerate, Model: model, System: system, Prompt: prompt}
}

func overlap(a, b []uint64) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}

func TestAffinityOf(t *testing.T) {
	s := newScheduler(t, Config{})
	system := strings.Repeat("You answer questions about the attached report. ", 50) // 2.4 KB
	turn1 := s.AffinityOf(chat("sim", system, "What is the revenue?"), "")
	turn2 := s.AffinityOf(chat("sim", system, "What is the revenue?", "Ten.", "And the costs?"), "")
	if len(turn1.Prefixes) == 0 || turn1.Session != 0 {
		t.Fatalf("turn 1: %+v", turn1)
	}
	// The whole first turn is a prefix of the second: the provider that
	// served it has it cached.
	if !slices.Contains(turn2.Prefixes, turn1.Prefixes[0]) {
		t.Fatal("the second turn does not share the first turn's prompt")
	}
	if slices.Contains(turn1.Prefixes, turn2.Prefixes[0]) {
		t.Fatal("the second turn's whole prompt is a prefix of the first")
	}
	// Longest first: the first turn's prompt comes after the second's own.
	if i := slices.Index(turn2.Prefixes, turn1.Prefixes[0]); i < 1 {
		t.Fatalf("the first turn's prompt is at %d in the second's prefixes", i)
	}
	other := s.AffinityOf(chat("sim", system, "Who wrote it?"), "")
	if !overlap(turn1.Prefixes, other.Prefixes) || other.Prefixes[0] == turn1.Prefixes[0] {
		t.Fatal("two questions on the same system prompt should share its prefix only")
	}
	if overlap(turn1.Prefixes, s.AffinityOf(chat("other-model", system, "What is the revenue?"), "").Prefixes) {
		t.Fatal("prefixes of different models overlap")
	}
	latest := s.AffinityOf(chat("sim:latest", system, "What is the revenue?"), "")
	if !slices.Equal(latest.Prefixes, turn1.Prefixes) {
		t.Fatal(`"sim:latest" and "sim" have different prefixes`)
	}
	// A short conversation has no prefix worth following.
	if short := s.AffinityOf(chat("sim", "Be brief.", "Hi"), ""); len(short.Prefixes) != 0 {
		t.Fatalf("short prompt has prefixes %v", short.Prefixes)
	}
	// A shared document inside one message is found at block boundaries.
	doc := strings.Repeat("lorem ipsum dolor sit amet ", 120) // 3.2 KB
	a := s.AffinityOf(generate("sim", "", doc+"Summarize."), "")
	b := s.AffinityOf(generate("sim", "", doc+"Translate."), "")
	if !overlap(a.Prefixes, b.Prefixes) || a.Prefixes[0] == b.Prefixes[0] {
		t.Fatal("generate prompts sharing 3 KB do not share exactly their common blocks")
	}
	raw := generate("sim", "", doc+"Summarize.")
	raw.Raw = true
	if overlap(a.Prefixes, s.AffinityOf(raw, "").Prefixes) {
		t.Fatal("a raw prompt shares prefixes with a templated one")
	}
	// Sessions.
	s1, s2 := s.AffinityOf(chat("sim", "hi"), "alice"), s.AffinityOf(chat("sim", "other"), "alice")
	if s1.Session == 0 || s1.Session != s2.Session || s1.Session == s.AffinityOf(chat("sim", "hi"), "bob").Session ||
		s1.Session == s.AffinityOf(chat("x", "hi"), "alice").Session {
		t.Fatal("session keys do not follow the session and model")
	}
	// Huge prompts keep a bounded number of the longest prefixes.
	huge := s.AffinityOf(generate("sim", "", strings.Repeat("z", 1<<20)), "")
	if len(huge.Prefixes) != maxAffinityPrefixes {
		t.Fatalf("%d prefixes for a 1 MiB prompt", len(huge.Prefixes))
	}
}

// TestMinAffinityBytes: the threshold is configurable.
func TestMinAffinityBytes(t *testing.T) {
	s := newScheduler(t, Config{MinAffinityBytes: 1})
	if a := s.AffinityOf(chat("sim", "Be brief.", "Hi"), ""); len(a.Prefixes) != 2 {
		t.Fatalf("prefixes %v, want one per message", a.Prefixes)
	}
}

// sameSpeed is four idle providers of "sim" with 8 slots each.
func sameSpeed() []Candidate {
	var cs []Candidate
	for n := range byte(4) {
		cs = append(cs, offering(n+1, 8, 0, false, "sim"))
	}
	return cs
}

func TestAffinityFollowsConversation(t *testing.T) {
	system := strings.Repeat("Context for this conversation only. ", 40)
	for seed := range uint64(30) {
		s := newScheduler(t, Config{Rand: rand.New(rand.NewPCG(seed, 11))})
		cands := sameSpeed()
		sys := fmt.Sprintf("%d %s", seed, system)
		r1 := s.NewRequest(chat("sim", sys, "first question"), Preferences{}, "")
		c1, err := s.Pick(cands, &r1)
		if err != nil {
			t.Fatal(err)
		}
		s.Placed(&r1, c1.Key)
		for turn := range 5 {
			msgs := []string{sys, "first question", "an answer"}
			for i := range turn {
				msgs = append(msgs, fmt.Sprintf("question %d", i), "another answer")
			}
			msgs = append(msgs, "next question")
			r := s.NewRequest(chat("sim", msgs...), Preferences{}, "")
			c, err := s.Pick(cands, &r)
			if err != nil {
				t.Fatal(err)
			}
			if c.Key != c1.Key {
				t.Fatalf("seed %d turn %d went to %d, the conversation is on %d", seed, turn, c.Key[0], c1.Key[0])
			}
			s.Placed(&r, c.Key)
		}
	}
}

func TestAffinityBySession(t *testing.T) {
	s := newScheduler(t, Config{Rand: rand.New(rand.NewPCG(3, 3))})
	cands := sameSpeed()
	first := s.NewRequest(chat("sim", "hello"), Preferences{}, "session-1")
	c1, err := s.Pick(cands, &first)
	if err != nil {
		t.Fatal(err)
	}
	s.Placed(&first, c1.Key)
	spread := map[byte]bool{}
	for i := range 40 {
		r := s.NewRequest(chat("sim", fmt.Sprintf("unrelated short prompt %d", i)), Preferences{}, "session-1")
		if c, err := s.Pick(cands, &r); err != nil || c.Key != c1.Key {
			t.Fatalf("request %d of the session went to %v (%v), want %d", i, c.Key[0], err, c1.Key[0])
		}
		// Without the session the same prompts spread out.
		r = s.NewRequest(chat("sim", fmt.Sprintf("unrelated short prompt %d", i)), Preferences{}, "")
		c, _ := s.Pick(cands, &r)
		spread[c.Key[0]] = true
	}
	if len(spread) < 3 {
		t.Fatalf("requests without a session went to %v only", spread)
	}
}

// TestAffinityBoundedLoad: an affine provider above its share of the load
// is passed over, and the prefix then follows the request to its new
// provider.
func TestAffinityBoundedLoad(t *testing.T) {
	s := newScheduler(t, Config{Rand: rand.New(rand.NewPCG(5, 5))})
	cands := sameSpeed()
	prompt := strings.Repeat("shared prefix ", 100)
	r := s.NewRequest(generate("sim", "", prompt), Preferences{}, "")
	s.Placed(&r, key(1))
	// In-flight 2 of a pool total of 2: the bound is ceil(1.25 × 3 × 8/32)
	// = 1, so provider 1 is over it.
	cands[0].InFlight = 2
	for range 20 {
		c, err := s.Pick(cands, &r)
		if err != nil {
			t.Fatal(err)
		}
		if c.Key == key(1) {
			t.Fatal("picked the affine provider above its bound")
		}
	}
	// Within the bound (7 in flight across the pool: ceil(1.25 × 8 × 8/32)
	// = 3, and provider 1 would hold 2): affinity holds.
	cands[0].InFlight = 1
	cands[1].InFlight, cands[2].InFlight, cands[3].InFlight = 2, 2, 2
	if c, _ := s.Pick(cands, &r); c.Key != key(1) {
		t.Fatalf("picked %d, want the affine provider within its bound", c.Key[0])
	}
	// Moved: the prefix is now on provider 3.
	s.Placed(&r, key(3))
	cands = sameSpeed()
	if c, _ := s.Pick(cands, &r); c.Key != key(3) {
		t.Fatalf("picked %d, want 3 where the prefix moved", c.Key[0])
	}
	// An affine provider that cannot take the request (busy, ignored) is
	// skipped without error.
	cands[2].InFlight = cands[2].Slots
	if c, err := s.Pick(cands, &r); err != nil || c.Key == key(3) {
		t.Fatalf("picked %v, %v with the affine provider full", c.Key[0], err)
	}
}

// TestAffinityIgnoredByBaselines: round robin does not follow prefixes.
func TestAffinityIgnoredByBaselines(t *testing.T) {
	s := newScheduler(t, Config{Policy: PolicyRoundRobin})
	cands := sameSpeed()
	r := s.NewRequest(generate("sim", "", strings.Repeat("shared prefix ", 100)), Preferences{}, "sess")
	s.Placed(&r, key(1))
	seen := map[byte]bool{}
	for range 4 {
		c, _ := s.Pick(cands, &r)
		seen[c.Key[0]] = true
	}
	if len(seen) != 4 {
		t.Fatalf("round robin followed affinity: %v", seen)
	}
}

func TestAffinityTable(t *testing.T) {
	tb := newAffinityTable(8)
	for i := range uint64(100) {
		tb.put(i, key(byte(i)))
		if tb.len() > 8 {
			t.Fatalf("table holds %d entries, bound 8", tb.len())
		}
	}
	if _, ok := tb.get(0); ok {
		t.Fatal("the oldest entry survived 100 inserts into 8 places")
	}
	if v, ok := tb.get(99); !ok || v != key(99) {
		t.Fatal("the newest entry is gone")
	}
	// An entry that keeps being used survives.
	for i := uint64(100); i < 200; i++ {
		tb.put(i, key(1))
		if _, ok := tb.get(99); !ok {
			t.Fatalf("a hot entry was evicted at insert %d", i)
		}
	}
}
