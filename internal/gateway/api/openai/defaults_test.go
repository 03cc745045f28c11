package openai

import (
	"testing"

	"github.com/idlegrid/idlegrid/internal/gateway/api/jsonfield"
	"github.com/idlegrid/idlegrid/internal/scheduler"
)

// TestWithDefaults: a request's provider members replace the key's
// defaults member by member; null restores the network default.
func TestWithDefaults(t *testing.T) {
	defaults, e := ParseDefaults(` {"sort":"price","allow_fallbacks":false,"order":["0123456789abcdef"],"max_price":{"prompt":0.3,"completion":0.9}} `)
	if e != nil {
		t.Fatal(e.Message)
	}
	tests := []struct {
		name    string
		request string // the request's provider object; "" for none
		check   func(p scheduler.Preferences) bool
	}{
		{"no provider object", "", func(p scheduler.Preferences) bool {
			return p.Sort == scheduler.SortPrice && p.NoFallbacks && len(p.Order) == 1 && *p.MaxPrompt == 300_000 && *p.MaxCompletion == 900_000
		}},
		{"sort replaced", `{"sort":"latency"}`, func(p scheduler.Preferences) bool {
			return p.Sort == scheduler.SortLatency && p.NoFallbacks && len(p.Order) == 1
		}},
		{"max_price replaced as a whole", `{"max_price":{"prompt":1}}`, func(p scheduler.Preferences) bool {
			return *p.MaxPrompt == 1_000_000 && p.MaxCompletion == nil && p.Sort == scheduler.SortPrice
		}},
		{"null restores the default", `{"allow_fallbacks":null,"sort":null}`, func(p scheduler.Preferences) bool {
			return !p.NoFallbacks && p.Sort == scheduler.SortDefault && len(p.Order) == 1
		}},
		{"empty object keeps every default", `{}`, func(p scheduler.Preferences) bool {
			return p.Sort == scheduler.SortPrice && p.NoFallbacks
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var req jsonfield.Object
			if tt.request != "" {
				o, e := jsonfield.AsObject([]byte(tt.request), "provider")
				if e != nil {
					t.Fatal(e.Message)
				}
				req = o
			}
			p, e := WithDefaults(defaults, req)
			if e != nil || !tt.check(p) {
				t.Fatalf("%+v (%v)", p, e)
			}
		})
	}
	for _, bad := range []string{``, `null`, `[]`, `{"sort":"cheap"}`, `{"max_price":{"request":1}}`, `{"quantizations":["q4"]}`} {
		if _, e := ParseDefaults(bad); e == nil {
			t.Errorf("ParseDefaults(%q) accepted", bad)
		}
	}
}
