package provider

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/tstest"
)

func ptr[T any](v T) *T { return &v }

func TestFullJobThroughTheHub(t *testing.T) {
	s := newSim(t, sim.DefaultConfig()) // paced: a real stream of many chunks
	g := newGateway(t)
	cfg := config(t, g.url, s)
	a := startAgent(t, cfg)
	k := cfg.Key.Public()
	in := g.connected(t, k)
	tests := []struct {
		name   string
		req    protocol.Request
		finish string
	}{
		{"generate, greedy", generate("Why is the sky blue?", 24), ""},
		{"chat, seeded sampling", protocol.Request{Kind: protocol.KindChat,
			Messages: []protocol.ChatMessage{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Name three rivers."}},
			Options:  protocol.Options{MaxTokens: 16, Temperature: ptr(0.8), Seed: ptr(int64(7))}}, ""},
		{"one token", generate("Count to ten.", 1), "length"},
		{"with logprobs", protocol.Request{Kind: protocol.KindGenerate, Prompt: "Say something.",
			Options: protocol.Options{MaxTokens: 8, Logprobs: true, TopLogprobs: 2}}, ""},
	}
	served := int64(0)
	tokens := int64(0)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			job := jobFor(t, g, in, "sim", tt.req)
			// What the simulator says for the same request, run directly.
			var want strings.Builder
			wantRes, err := s.Generate(context.Background(), job.Request, func(d backend.Delta) error { want.WriteString(d.Text); return nil })
			if err != nil {
				t.Fatal(err)
			}
			o := collect(t, dispatch(t, g, k, job))
			if o.done == nil {
				t.Fatalf("job failed: %v", o.err)
			}
			for i, c := range o.chunks {
				if c.Seq != uint64(i) || c.ID != job.ID {
					t.Fatalf("chunk %d is %s/%d", i, c.ID, c.Seq)
				}
				if tt.req.Options.Logprobs && len(c.Logprobs) == 0 {
					t.Errorf("chunk %d carries no logprobs", i)
				}
			}
			d := o.done
			if o.text() != want.String() {
				t.Errorf("relayed %q, the simulator says %q", o.text(), want.String())
			}
			if d.Chunks != uint64(len(o.chunks)) || d.Usage != wantRes.Usage || d.FinishReason != wantRes.FinishReason {
				t.Errorf("done: %d chunks, usage %+v, finish %q; want %d, %+v, %q", d.Chunks, d.Usage, d.FinishReason, len(o.chunks), wantRes.Usage, wantRes.FinishReason)
			}
			if tt.finish != "" && d.FinishReason != tt.finish {
				t.Errorf("finish %q, want %q", d.FinishReason, tt.finish)
			}
			if d.EndUnixMs < job.Terms.StartUnixMs || d.Timings.TotalUs <= 0 || d.Timings.FirstTokenUs > d.Timings.TotalUs {
				t.Errorf("end %d (start %d), timings %+v", d.EndUnixMs, job.Terms.StartUnixMs, d.Timings)
			}
			r, err := gatewayReceipt(job, k, o.chunks, d)
			if err != nil {
				t.Fatalf("the gateway would reject the receipt: %v", err)
			}
			if r.Amount == 0 || r.Consumer != job.Terms.Consumer || r.ModelDigest != sim.Digest(1, "Q8_0") {
				t.Errorf("receipt %+v", r)
			}
			// The check is sharp: one chunk less and the signature fails.
			if len(o.chunks) > 1 {
				if _, err := gatewayReceipt(job, k, o.chunks[:len(o.chunks)-1], d); err == nil {
					t.Error("the receipt also verifies over a truncated response")
				}
			}
			served++
			tokens += int64(d.Usage.CompletionTokens)
			tstest.WaitFor(t, wait, "the agent's counters", func() bool {
				st := a.Status()
				return st.Served == served && st.Tokens == tokens && st.Active == 0
			})
			tstest.WaitFor(t, wait, "the hub to free the slot", func() bool { in, _ := g.info(k); return in.InFlight == 0 })
		})
	}
	if st := a.Status(); st.Failed != 0 {
		t.Errorf("%d jobs failed", st.Failed)
	}
}

func TestRefusesTermsItDidNotOffer(t *testing.T) {
	g := newGateway(t)
	counted := &countingBackend{Backend: fastSim(t)}
	cfg := config(t, g.url, counted)
	a := startAgent(t, cfg)
	k := cfg.Key.Public()
	in := g.connected(t, k)
	tests := []struct {
		name   string
		mutate func(*protocol.Job)
		code   protocol.Code // "" for the control cases that must be served
	}{
		{"another chain", func(j *protocol.Job) { j.Terms.ChainID = "idlegrid-main-1" }, protocol.CodeBadRequest},
		{"another gateway", func(j *protocol.Job) { j.Terms.Gateway = newKey(t).Public() }, protocol.CodeBadRequest},
		{"terms name another model than the request", func(j *protocol.Job) { j.Terms.Model = "other" }, protocol.CodeBadRequest},
		{"request names another model than the terms", func(j *protocol.Job) { j.Request.Model = "sim:latest" }, protocol.CodeBadRequest},
		{"model not offered", func(j *protocol.Job) { j.Terms.Model, j.Request.Model = "ghost", "ghost" }, protocol.CodeModelNotFound},
		{"other digest", func(j *protocol.Job) { j.Terms.ModelDigest = sim.Digest(2, "Q8_0") }, protocol.CodeModelNotFound},
		{"empty digest", func(j *protocol.Job) { j.Terms.ModelDigest = "" }, protocol.CodeModelNotFound},
		{"prompt price below floor", func(j *protocol.Job) { j.Terms.PricePromptPerMTok = cfg.PricePrompt - 1 }, protocol.CodeBadRequest},
		{"completion price below floor", func(j *protocol.Job) { j.Terms.PriceCompletionPerMTok = cfg.PriceCompletion - 1 }, protocol.CodeBadRequest},
		{"free", func(j *protocol.Job) { j.Terms.PricePromptPerMTok, j.Terms.PriceCompletionPerMTok = 0, 0 }, protocol.CodeBadRequest},
		{"no consumer", func(j *protocol.Job) { j.Terms.Consumer = "" }, protocol.CodeBadRequest},
		{"consumer not an address", func(j *protocol.Job) { j.Terms.Consumer = "alice" }, protocol.CodeBadRequest},
		{"consumer in upper case", func(j *protocol.Job) { j.Terms.Consumer = keys.Address(strings.ToUpper(string(j.Terms.Consumer))) }, protocol.CodeBadRequest},
		{"consumer one digit short", func(j *protocol.Job) { j.Terms.Consumer = j.Terms.Consumer[:len(j.Terms.Consumer)-1] }, protocol.CodeBadRequest},
		// Controls: the same path serves terms it can sign.
		{"prices above the floor", func(j *protocol.Job) {
			j.Terms.PricePromptPerMTok, j.Terms.PriceCompletionPerMTok = cfg.PricePrompt+1, 2*cfg.PriceCompletion
		}, ""},
		{"terms as offered", func(*protocol.Job) {}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			job := jobFor(t, g, in, "sim", generate("hello", 4))
			tt.mutate(job)
			calls := counted.calls.Load()
			o := collect(t, dispatch(t, g, k, job))
			if tt.code == "" {
				if o.done == nil {
					t.Fatalf("job failed: %v", o.err)
				}
				if _, err := gatewayReceipt(job, k, o.chunks, o.done); err != nil {
					t.Fatalf("receipt: %v", err)
				}
				return
			}
			je := jobError(t, o)
			if je.Code != tt.code || je.Message == "" {
				t.Fatalf("error %s %q, want code %s", je.Code, je.Message, tt.code)
			}
			if len(o.chunks) != 0 {
				t.Fatalf("%d chunks before the refusal", len(o.chunks))
			}
			if counted.calls.Load() != calls {
				t.Fatal("the backend ran a job whose terms were refused")
			}
			tstest.WaitFor(t, wait, "the hub to free the slot", func() bool { in, _ := g.info(k); return in.InFlight == 0 })
		})
	}
	if _, ok := g.info(k); !ok || !a.Status().Connected {
		t.Fatal("refusals broke the connection")
	}
}

func TestBusyWhenSlotsAreFull(t *testing.T) {
	gw := newRawGateway(t)
	b := newBlocking()
	cfg := config(t, gw.url, b)
	cfg.Slots = 2
	startAgent(t, cfg)
	c := gw.accept(t)
	// The hub never sends more jobs than slots; this gateway does, back to
	// back, so the agent sees them in this order on its reader.
	j1 := c.job(t, gw, generate("one", 4))
	j2 := c.job(t, gw, generate("two", 4))
	c.send(t, &protocol.Message{Type: protocol.TypeJob, Job: j1}) // a duplicate of a running id: dropped, j1 untouched
	j3 := c.job(t, gw, generate("three", 4))
	m := c.next(t)
	if m.Type != protocol.TypeError || m.Error.ID != j3.ID || m.Error.Code != protocol.CodeBusy {
		t.Fatalf("first message %s %+v, want busy for %s (and nothing for the duplicate)", m.Type, m.Error, j3.ID)
	}
	started := map[string]bool{b.waitStarted(t).Prompt: true, b.waitStarted(t).Prompt: true}
	if !started["one"] || !started["two"] {
		t.Fatalf("the backend ran %v, want one and two", started)
	}
	// Finishing a job frees its slot for the next.
	b.release <- struct{}{}
	m = c.next(t)
	if m.Type != protocol.TypeChunk {
		t.Fatalf("got %s, want the released job's chunk", m.Type)
	}
	finished := m.Chunk.ID
	if m = c.next(t); m.Type != protocol.TypeDone || m.Done.ID != finished || (finished != j1.ID && finished != j2.ID) {
		t.Fatalf("got %s, want done for %s", m.Type, finished)
	}
	j4 := c.job(t, gw, generate("four", 4))
	if req := b.waitStarted(t); req.Prompt != "four" {
		t.Fatalf("started %q, want four", req.Prompt)
	}
	j5 := c.job(t, gw, generate("five", 4))
	if m = c.next(t); m.Type != protocol.TypeError || m.Error.ID != j5.ID || m.Error.Code != protocol.CodeBusy {
		t.Fatalf("got %s %+v, want busy for %s (%s holds the freed slot)", m.Type, m.Error, j5.ID, j4.ID)
	}
}

func TestCancel(t *testing.T) {
	t.Run("through the hub", func(t *testing.T) {
		g := newGateway(t)
		b := newBlocking()
		cfg := config(t, g.url, b)
		cfg.Slots = 1
		a := startAgent(t, cfg)
		k := cfg.Key.Public()
		in := g.connected(t, k)
		s := dispatch(t, g, k, jobFor(t, g, in, "blocker", generate("long", 4)))
		b.waitStarted(t)
		s.Cancel()
		if err := b.waitEnded(t); !errors.Is(err, context.Canceled) {
			t.Fatalf("the backend's job ended with %v, want cancelled", err)
		}
		// The hub frees the slot when the agent confirms with its error.
		tstest.WaitFor(t, wait, "the hub to free the slot", func() bool { in, _ := g.info(k); return in.InFlight == 0 })
		tstest.WaitFor(t, wait, "the agent to count the job as failed", func() bool { st := a.Status(); return st.Failed == 1 && st.Active == 0 })
		// The one slot takes the next job.
		s = dispatch(t, g, k, jobFor(t, g, in, "blocker", generate("next", 4)))
		b.waitStarted(t)
		b.release <- struct{}{}
		if o := collect(t, s); o.done == nil {
			t.Fatalf("the job after a cancel failed: %v", o.err)
		}
	})
	t.Run("on the wire", func(t *testing.T) {
		gw := newRawGateway(t)
		b := newBlocking()
		startAgent(t, config(t, gw.url, b))
		c := gw.accept(t)
		// A cancel for a job the agent does not run is ignored.
		c.send(t, &protocol.Message{Type: protocol.TypeCancel, Cancel: &protocol.Cancel{ID: "ghost"}})
		j := c.job(t, gw, generate("long", 4))
		b.waitStarted(t)
		c.send(t, &protocol.Message{Type: protocol.TypeCancel, Cancel: &protocol.Cancel{ID: j.ID}})
		if err := b.waitEnded(t); !errors.Is(err, context.Canceled) {
			t.Fatalf("the backend's job ended with %v, want cancelled", err)
		}
		m := c.next(t)
		if m.Type != protocol.TypeError || m.Error.ID != j.ID || m.Error.Code != protocol.CodeCancelled {
			t.Fatalf("got %s %+v, want a cancelled error for %s", m.Type, m.Error, j.ID)
		}
	})
}

func TestDeadline(t *testing.T) {
	g := newGateway(t)
	b := newBlocking()
	cfg := config(t, g.url, b)
	startAgent(t, cfg)
	k := cfg.Key.Public()
	in := g.connected(t, k)
	tests := []struct {
		name     string
		deadline time.Duration // from now
	}{
		{"passes while running", 200 * time.Millisecond},
		{"passed before it arrived", -time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			job := jobFor(t, g, in, "blocker", generate("slow", 4))
			job.DeadlineUnixMs = time.Now().Add(tt.deadline).UnixMilli()
			o := collect(t, dispatch(t, g, k, job))
			if je := jobError(t, o); je.Code != protocol.CodeDeadline {
				t.Fatalf("error %s %q, want %s", je.Code, je.Message, protocol.CodeDeadline)
			}
			b.waitStarted(t)
			if err := b.waitEnded(t); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("the backend's job ended with %v, want its deadline", err)
			}
			tstest.WaitFor(t, wait, "the hub to free the slot", func() bool { in, _ := g.info(k); return in.InFlight == 0 })
		})
	}
}

func TestUTF8AcrossDeltas(t *testing.T) {
	g := newGateway(t)
	b := &scriptedBackend{usage: protocol.Usage{PromptTokens: 3, CompletionTokens: 9}}
	cfg := config(t, g.url, b)
	startAgent(t, cfg)
	k := cfg.Key.Public()
	in := g.connected(t, k)
	tests := []struct {
		name   string
		deltas []string
		want   string
	}{
		{"runes split every way",
			[]string{"caf", "\xc3", "\xa9 ", "\xe6\x97", "\xa5\xe6", "\x9c\xac ", "\xf0", "\x9f", "\xa6", "\x99", "!"},
			"café 日本 🦙!"},
		{"dangling tail at the end", []string{"ok ", "日本"[:4], "\xf0\x9f\xa6"}, "ok 日\uFFFD\uFFFD"},
		{"only a partial rune", []string{"\xf0\x9f"}, "\uFFFD"},
		{"sequence interrupted by ASCII", []string{"\xe6\x97", "x"}, "\uFFFDx"},
		{"invalid byte inside a delta", []string{"a\xffb"}, "a\uFFFDb"},
		{"stray continuation byte", []string{"\x80abc"}, "\uFFFDabc"},
		{"empty deltas", []string{"", "a", "", "é"}, "aé"},
		{"whole runes only", []string{"日本", "語"}, "日本語"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b.deltas = tt.deltas // the agent is idle between subtests
			job := jobFor(t, g, in, "script", generate("utf8", 16))
			o := collect(t, dispatch(t, g, k, job))
			if o.done == nil {
				t.Fatalf("job failed: %v", o.err)
			}
			for i, c := range o.chunks {
				if !utf8.ValidString(c.Delta) || c.Delta == "" {
					t.Errorf("chunk %d delta %q: want non-empty valid UTF-8", i, c.Delta)
				}
			}
			if got := o.text(); got != tt.want {
				t.Fatalf("relayed %q, want %q", got, tt.want)
			}
			if _, err := gatewayReceipt(job, k, o.chunks, o.done); err != nil {
				t.Fatalf("the gateway would reject the receipt: %v", err)
			}
		})
	}
}

func TestSplitIncomplete(t *testing.T) {
	tests := []struct {
		in, complete, tail string
	}{
		{"", "", ""},
		{"abc", "abc", ""},
		{"é", "é", ""},
		{"日本", "日本", ""},
		{"🦙", "🦙", ""},
		{"a\xc3", "a", "\xc3"},
		{"a\xe6\x97", "a", "\xe6\x97"},
		{"\xe6", "", "\xe6"},
		{"x\xf0\x9f\xa6", "x", "\xf0\x9f\xa6"},
		{"🦙\xf0\x9f", "🦙", "\xf0\x9f"},
		// Not incomplete but invalid: passed on, to be replaced.
		{"a\xff", "a\xff", ""},
		{"a\x80", "a\x80", ""},
		{"\x80\x80\x80\x80\x80", "\x80\x80\x80\x80\x80", ""},
		{"\xe6\x97x", "\xe6\x97x", ""},       // cut short by another rune
		{"\xc3\xa9\xa9", "\xc3\xa9\xa9", ""}, // one continuation too many
		{"\xed\xa0", "\xed\xa0", ""},         // a surrogate can never complete
	}
	for _, tt := range tests {
		complete, tail := splitIncomplete([]byte(tt.in))
		if string(complete) != tt.complete || string(tail) != tt.tail {
			t.Errorf("splitIncomplete(%q) = %q, %q; want %q, %q", tt.in, complete, tail, tt.complete, tt.tail)
		}
		if !bytes.Equal(append(bytes.Clone(complete), tail...), []byte(tt.in)) {
			t.Errorf("splitIncomplete(%q) lost bytes", tt.in)
		}
	}
}
