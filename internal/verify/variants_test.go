package verify

import (
	"strings"
	"testing"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

func TestVariants(t *testing.T) {
	ref := newRef(t)
	mix := DefaultPromptMix(benchModel)
	ctx := t.Context()
	collect := func(b backend.Backend, req protocol.Request) Response {
		t.Helper()
		r, err := Collect(ctx, b, req)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	truncated, replayed := 0, 0
	rp := &Replay{Backend: ref}
	for i := range 60 {
		req := mix.Canary(i)
		honest := collect(ref, req)

		inf := collect(&Inflate{Backend: ref, Factor: 1.25, Extra: 1}, req)
		if inf.Text != honest.Text || inf.Usage.CompletionTokens <= honest.Usage.CompletionTokens {
			t.Fatalf("inflate: %+v from %+v", inf, honest)
		}

		tr := collect(&Truncate{Backend: ref, Cap: 10}, req)
		switch {
		case honest.Usage.CompletionTokens <= 10:
			if tr != honest {
				t.Fatalf("truncate changed a short answer: %+v from %+v", tr, honest)
			}
		default:
			truncated++
			if tr.FinishReason != "stop" || tr.Usage.CompletionTokens != 10 || !strings.HasPrefix(honest.Text, tr.Text) {
				t.Fatalf("truncate: %+v from %+v", tr, honest)
			}
		}

		r := collect(rp, req)
		if i > 0 && r.Text != honest.Text {
			replayed++
		}
		if i == 0 && r.Text != honest.Text {
			t.Fatal("replay: the first answer is not the backend's")
		}

		re := collect(&Reseed{Backend: ref}, req)
		if re != honest {
			t.Fatalf("reseed changed a greedy answer: %+v from %+v", re, honest)
		}

		fab := &Fabricate{Words: []string{" ba", "be"}, MinWords: 3, MaxWords: 7}
		f1, f2 := collect(fab, req), collect(fab, req)
		n := len(splitTokens(f1.Text))
		if f1 != f2 || n < 3 || n > 7 || f1.Usage.CompletionTokens != uint64(n) || f1.FinishReason != "stop" {
			t.Fatalf("fabricate: %+v, again %+v", f1, f2)
		}
	}
	if truncated == 0 || replayed < 50 {
		t.Fatalf("%d truncated and %d replayed answers: the variants did not cheat", truncated, replayed)
	}
	if f := collect(&Fabricate{}, mix.Canary(1)); f.Text == "" {
		t.Fatal("fabricate without words: empty text")
	}
	if f := collect(&Fabricate{MinWords: 50, MaxWords: 60}, withMax(mix.Canary(1), 5)); len(splitTokens(f.Text)) != 5 {
		t.Fatalf("fabricate ignores the token limit: %q", f.Text)
	}
}
