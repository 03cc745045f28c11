package sim

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/idlegrid/idlegrid/internal/protocol"
)

func TestTokenize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"Hello, world!", []string{"Hello", ",", " world", "!"}},
		{"a  b", []string{"a", " ", " b"}},
		{" lead", []string{" lead"}},
		{"trail ", []string{"trail", " "}},
		{"line\nnext", []string{"line", "\n", "next"}},
		{"tab\tx", []string{"tab", "\t", "x"}},
		{"naïve café", []string{"naïve", " café"}},
		{"日本語", []string{"日本語"}},
		{"abcdefghijklmnopqrstu", []string{"abcdefghijklmnop", "qrstu"}},
		{"x\xffy", []string{"x", "\xff", "y"}},
		{"a+b=c", []string{"a", "+", "b", "=", "c"}},
	} {
		if got := tokenize(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("tokenize(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// FuzzTokenize checks the properties continuation relies on: tokens
// concatenate back to the input, none is empty, and appending any
// vocabulary token to any text appends exactly that token.
func FuzzTokenize(f *testing.F) {
	for _, s := range []string{"", "Hello, world!", "a  b ", "x\xffy\n", "日本語 テキスト", "user: hi\nassistant:"} {
		f.Add(s, uint16(7))
	}
	v := newVocab()
	f.Fuzz(func(t *testing.T, s string, pick uint16) {
		toks := tokenize(s)
		if strings.Join(toks, "") != s {
			t.Fatalf("tokens %q do not rebuild %q", toks, s)
		}
		for _, tok := range toks {
			if tok == "" {
				t.Fatalf("empty token in %q", toks)
			}
			if utf8.RuneCountInString(strings.TrimPrefix(tok, " ")) > maxWordRunes {
				t.Fatalf("token %q is longer than %d runes", tok, maxWordRunes)
			}
		}
		tok := v.texts[1+int(pick)%(len(v.texts)-1)]
		if got := tokenize(s + tok); !slices.Equal(got, append(toks, tok)) {
			t.Fatalf("tokenize(%q + %q) = %q, want %q then %q", s, tok, got, toks, tok)
		}
	})
}

func TestRender(t *testing.T) {
	msgs := func(m ...string) []protocol.ChatMessage {
		var out []protocol.ChatMessage
		for i := 0; i < len(m); i += 2 {
			out = append(out, protocol.ChatMessage{Role: m[i], Content: m[i+1]})
		}
		return out
	}
	for _, tc := range []struct {
		req  protocol.Request
		want string
	}{
		{protocol.Request{Kind: protocol.KindGenerate, Prompt: "p"}, "p"},
		{protocol.Request{Kind: protocol.KindGenerate, Prompt: "p", System: "s"}, "s\np"},
		{protocol.Request{Kind: protocol.KindGenerate, Prompt: "p", System: "s", Raw: true}, "p"},
		{protocol.Request{Kind: protocol.KindChat, Messages: msgs("system", "s", "user", "hi")}, "system: s\nuser: hi\nassistant:"},
		{protocol.Request{Kind: protocol.KindChat, Messages: msgs("user", "hi", "assistant", " so")}, "user: hi\nassistant: so"},
		{protocol.Request{Kind: protocol.KindChat, Messages: msgs("user", "hi", "assistant", "so")}, "user: hi\nassistant: so"},
		{protocol.Request{Kind: protocol.KindChat, Messages: msgs("user", "hi", "assistant", ", so")}, "user: hi\nassistant:, so"},
		{protocol.Request{Kind: protocol.KindChat, Messages: msgs("assistant", "a", "user", "")}, "assistant: a\nuser:\nassistant:"},
		{protocol.Request{Kind: protocol.KindChat}, "assistant:"},
	} {
		got, err := render(tc.req)
		if err != nil || got != tc.want {
			t.Errorf("render(%+v) = %q, %v; want %q", tc.req, got, err, tc.want)
		}
	}
}
