package main

import (
	"strings"
	"testing"
)

// TestKeysPrefs: default preferences are checked by the request rules at
// creation (a bad value creates no key), shown by list and prefs, replaced
// and cleared.
func TestKeysPrefs(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct{ prefs, says string }{
		{`{"sort":"cheapest"}`, "provider.sort"},
		{`{"only":["x"]}`, "provider.only is not supported"},
		{`{"max_price":{"prompt":-1}}`, "provider.max_price.prompt"},
		{`{"order":["nothex"]}`, "provider.order[0]"},
		{`["price"]`, "provider"},
		{`{"sort":`, "provider"},
	} {
		_, _, err := run(t, "keys", "create", "--data-dir", dir, "--prefs", tt.prefs)
		if err == nil || !strings.Contains(err.Error(), "--prefs") || !strings.Contains(err.Error(), tt.says) {
			t.Errorf("--prefs %s: %v, want an error naming %q", tt.prefs, err, tt.says)
		}
	}
	out, _, err := run(t, "keys", "list", "--data-dir", dir)
	if err != nil || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Fatalf("refused preferences created keys: %v\n%s", err, out)
	}
	prefs := `{"sort":"price","max_price":{"prompt":0.3}}`
	if _, _, err := run(t, "keys", "create", "--name", "cheap", "--data-dir", dir, "--prefs", prefs); err != nil {
		t.Fatal(err)
	}
	out, _, _ = run(t, "keys", "list", "--data-dir", dir)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], prefs) {
		t.Fatalf("list:\n%s", out)
	}
	id := strings.Fields(lines[1])[0]
	show := func() string {
		t.Helper()
		out, _, err := run(t, "keys", "prefs", id, "--data-dir", dir)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out)
	}
	if got := show(); got != prefs {
		t.Fatalf("prefs shows %q, want %q", got, prefs)
	}
	if _, _, err := run(t, "keys", "prefs", id, `{"sort":"fastest"}`, "--data-dir", dir); err == nil || !strings.Contains(err.Error(), "provider.sort") {
		t.Fatalf("bad preferences set on an existing key: %v", err)
	}
	if got := show(); got != prefs {
		t.Fatalf("a refused update changed the preferences to %q", got)
	}
	if _, _, err := run(t, "keys", "prefs", id, `{"sort":"latency"}`, "--data-dir", dir); err != nil || show() != `{"sort":"latency"}` {
		t.Fatalf("set: %v, now %q", err, show())
	}
	if _, _, err := run(t, "keys", "prefs", id, "--clear", "--data-dir", dir); err != nil || show() != "{}" {
		t.Fatalf("clear: %v, now %q", err, show())
	}
	if _, _, err := run(t, "keys", "prefs", "key_nope", `{}`, "--data-dir", dir); err == nil {
		t.Fatal("preferences set on an unknown key")
	}
}
