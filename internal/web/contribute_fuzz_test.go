package web

import (
	"regexp"
	"testing"
)

// safeOrigin is what may enter the page's Content-Security-Policy: no
// space, quote, semicolon or comma can end the source list.
var safeOrigin = regexp.MustCompile(`^https?://[a-z0-9.\-\[\]:]+$`)

// FuzzParseOllamaOrigin feeds visitor-chosen URLs (the ?ollama= parameter)
// to the parser: it never panics, and what it accepts is a plain origin
// that parses to itself.
func FuzzParseOllamaOrigin(f *testing.F) {
	for _, s := range []string{"http://127.0.0.1:11434", "https://[::1]:443/", "http://a b", "http://x;y", "HTTP://X.EXAMPLE"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseOllamaOrigin(s)
		if err != nil {
			if got != "" {
				t.Fatalf("error with a result %q", got)
			}
			return
		}
		if !safeOrigin.MatchString(got) || len(got) > maxOriginLen {
			t.Fatalf("ParseOllamaOrigin(%q) = %q: not a plain origin", s, got)
		}
		again, err := ParseOllamaOrigin(got)
		if err != nil || again != got {
			t.Fatalf("ParseOllamaOrigin(%q) = %q, then %q, %v", s, got, again, err)
		}
	})
}
