package openai

import (
	"encoding/json"
	"net/http"
	"reflect"
	"testing"
)

// FuzzParseDefaults: whatever an operator types after `keys create --prefs`
// (or a database hands back), ParseDefaults returns the key's defaults or a
// 400 naming the problem, never a panic. Defaults it accepts are accepted
// by the same rules in a request's "provider" member with the same
// preferences, apply over no request member, and read the same when
// stored and read again.
func FuzzParseDefaults(f *testing.F) {
	for _, text := range []string{
		`{"sort":"price","allow_fallbacks":false,"order":["0123456789abcdef"],"max_price":{"prompt":0.3,"completion":0.9}}`,
		`{"ignore":["idg0000000000000000000000000000000000000001"],"require_digest":"sha256:abcdef01"}`,
		`{"sort":null,"max_price":{"prompt":0}}`,
		` {} `, `null`, `[]`, `{"quantizations":["q4"]}`, `{"order":"x"}`, `{"max_price":{"prompt":1e400}}`,
	} {
		f.Add(text)
	}
	f.Fuzz(func(t *testing.T, text string) {
		po, e := ParseDefaults(text)
		if e != nil {
			if e.Status != http.StatusBadRequest || e.Type != "invalid_request_error" || e.Message == "" || e.Code == "" {
				t.Fatalf("bad error %+v", e)
			}
			return
		}
		if po == nil {
			t.Fatal("accepted defaults without an object")
		}
		prefs, e := WithDefaults(po, nil)
		if e != nil {
			t.Fatalf("accepted defaults %q do not apply: %s", text, e.Message)
		}
		stored, err := json.Marshal(po)
		if err != nil {
			t.Fatalf("accepted defaults %q cannot be stored: %v", text, err)
		}
		po2, e := ParseDefaults(string(stored))
		if e != nil {
			t.Fatalf("stored defaults %s no longer parse: %s", stored, e.Message)
		}
		if prefs2, e := WithDefaults(po2, nil); e != nil || !reflect.DeepEqual(prefs2, prefs) {
			t.Fatalf("stored and read again, %+v became %+v (%v)", prefs, prefs2, e)
		}
		body := `{"model":"m","messages":[{"role":"user","content":"hi"}],"provider":` + string(stored) + `}`
		p, e := ParseChat([]byte(body))
		if e != nil || !reflect.DeepEqual(p.Provider, prefs) {
			t.Fatalf("as a request's provider member %s gives %+v (%v), as defaults %+v", stored, p.Provider, e, prefs)
		}
	})
}
