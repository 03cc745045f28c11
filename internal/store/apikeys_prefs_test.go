package store

import (
	"errors"
	"testing"
)

// testAPIKeyPreferences: a key's default preferences are stored as given,
// read back by lookup and listing, replaced, and cleared; other keys keep
// theirs; an unknown key id is ErrNotFound.
func testAPIKeyPreferences(t *testing.T, s *Store) {
	ctx := t.Context()
	account := newSigner(t).consumer
	secret, key, err := s.CreateAPIKey(ctx, "with prefs", account)
	if err != nil {
		t.Fatal(err)
	}
	otherSecret, other, err := s.CreateAPIKey(ctx, "without", account)
	if err != nil {
		t.Fatal(err)
	}
	if key.Preferences != "" {
		t.Fatalf("a new key has preferences %q", key.Preferences)
	}
	lookup := func(secret string) string {
		t.Helper()
		k, err := s.LookupAPIKey(ctx, secret)
		if err != nil {
			t.Fatal(err)
		}
		return k.Preferences
	}
	for _, prefs := range []string{`{"sort":"price","max_price":{"prompt":"0.3"}}`, `{"sort": "latency"}`, ""} {
		if err := s.SetAPIKeyPreferences(ctx, key.ID, prefs); err != nil {
			t.Fatal(err)
		}
		if got := lookup(secret); got != prefs {
			t.Fatalf("lookup after setting %q: %q", prefs, got)
		}
		list, err := s.ListAPIKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range list {
			want := ""
			if k.ID == key.ID {
				want = prefs
			}
			if k.Preferences != want {
				t.Fatalf("listed %s with %q, want %q", k.ID, k.Preferences, want)
			}
		}
	}
	if got := lookup(otherSecret); got != "" || other.ID == key.ID {
		t.Fatalf("the other key has %q", got)
	}
	if err := s.SetAPIKeyPreferences(ctx, "key_nope", `{}`); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown key: %v", err)
	}
}
