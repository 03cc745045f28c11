package openai

import (
	"strings"
	"testing"

	"github.com/idlegrid/idlegrid/internal/gateway/api/jsonfield"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/scheduler"
)

var (
	keyHex = strings.Repeat("ab", 32)
	digest = strings.Repeat("0f", 32)
)

func TestParseProvider(t *testing.T) {
	body := `{"model":"m",` + okMsgs + `,"provider":{"order":["` + strings.ToUpper(keyHex) + `","idg` + strings.Repeat("1", 40) + `"],
		"allow_fallbacks":false,"max_price":{"prompt":0.2,"completion":"1.5"},"sort":"throughput",
		"require_digest":"sha256:` + digest + `","ignore":["12345678"]}}`
	p, e := ParseChat([]byte(body))
	if e != nil {
		t.Fatal(e)
	}
	got := p.Provider
	if len(got.Order) != 2 || got.Order[0].String() != keyHex || got.Order[1].String() != "idg"+strings.Repeat("1", 40) {
		t.Errorf("order %v", got.Order)
	}
	if !got.NoFallbacks || got.Sort != scheduler.SortThroughput || got.RequireDigest != digest {
		t.Errorf("preferences %+v", got)
	}
	if got.MaxPrompt == nil || *got.MaxPrompt != 200_000 || got.MaxCompletion == nil || *got.MaxCompletion != 1_500_000 {
		t.Errorf("max_price %v %v", got.MaxPrompt, got.MaxCompletion)
	}
	if len(got.Ignore) != 1 || got.Ignore[0].String() != "12345678" {
		t.Errorf("ignore %v", got.Ignore)
	}
	// The legacy completions endpoint takes the same object.
	c, e := ParseCompletion([]byte(`{"model":"m","prompt":"x","provider":{"sort":"price"}}`))
	if e != nil || c.Provider.Sort != scheduler.SortPrice {
		t.Fatalf("completion: %+v, %v", c.Provider, e)
	}
}

func TestParseProviderDefaults(t *testing.T) {
	for _, body := range []string{
		`{"model":"m",` + okMsgs + `}`,
		`{"model":"m",` + okMsgs + `,"provider":null}`,
		`{"model":"m",` + okMsgs + `,"provider":{}}`,
		`{"model":"m",` + okMsgs + `,"provider":{"order":null,"sort":null,"max_price":{"prompt":null},"allow_fallbacks":true}}`,
		// Unknown members elsewhere are still ignored.
		`{"model":"m",` + okMsgs + `,"transforms":["x"],"route":"fallback","metadata":{"a":"b"}}`,
	} {
		p, e := ParseChat([]byte(body))
		if e != nil {
			t.Fatalf("%s: %v", body, e)
		}
		pr := p.Provider
		if pr.Order != nil || pr.Ignore != nil || pr.NoFallbacks || pr.Sort != "" || pr.RequireDigest != "" || pr.MaxPrompt != nil || pr.MaxCompletion != nil {
			t.Errorf("%s: preferences %+v, want none", body, pr)
		}
	}
}

func TestParseProviderErrors(t *testing.T) {
	chat := func(provider string) string { return `{"model":"m",` + okMsgs + `,"provider":` + provider + `}` }
	tests := []errCase{
		{"provider not an object", chat(`"openai"`), "provider", jsonfield.CodeInvalidType},
		{"unknown member", chat(`{"only":["x"]}`), "provider.only", jsonfield.CodeUnsupportedValue},
		{"OpenRouter data_collection", chat(`{"data_collection":"deny"}`), "provider.data_collection", jsonfield.CodeUnsupportedValue},
		{"order not an array", chat(`{"order":"` + keyHex + `"}`), "provider.order", jsonfield.CodeInvalidType},
		{"order entry not a string", chat(`{"order":[1]}`), "provider.order[0]", jsonfield.CodeInvalidType},
		{"order entry a name", chat(`{"order":["` + keyHex + `","together"]}`), "provider.order[1]", jsonfield.CodeInvalidValue},
		{"order too long", chat(`{"order":[` + strings.Repeat(`"`+keyHex+`",`, 64) + `"` + keyHex + `"]}`), "provider.order", jsonfield.CodeInvalidValue},
		{"ignore short prefix", chat(`{"ignore":["abc"]}`), "provider.ignore[0]", jsonfield.CodeInvalidValue},
		{"allow_fallbacks string", chat(`{"allow_fallbacks":"false"}`), "provider.allow_fallbacks", jsonfield.CodeInvalidType},
		{"sort unknown", chat(`{"sort":"speed"}`), "provider.sort", jsonfield.CodeInvalidValue},
		{"sort empty", chat(`{"sort":""}`), "provider.sort", jsonfield.CodeInvalidValue},
		{"sort not a string", chat(`{"sort":{"by":"price"}}`), "provider.sort", jsonfield.CodeInvalidType},
		{"digest not hex", chat(`{"require_digest":"latest"}`), "provider.require_digest", jsonfield.CodeInvalidValue},
		{"digest too short", chat(`{"require_digest":"0f0f0f"}`), "provider.require_digest", jsonfield.CodeInvalidValue},
		{"max_price not an object", chat(`{"max_price":0.2}`), "provider.max_price", jsonfield.CodeInvalidType},
		{"max_price request", chat(`{"max_price":{"request":1}}`), "provider.max_price.request", jsonfield.CodeUnsupportedValue},
		{"max_price negative", chat(`{"max_price":{"prompt":-0.1}}`), "provider.max_price.prompt", jsonfield.CodeInvalidValue},
		{"max_price too precise", chat(`{"max_price":{"completion":0.0000001}}`), "provider.max_price.completion", jsonfield.CodeInvalidValue},
		{"max_price bool", chat(`{"max_price":{"prompt":true}}`), "provider.max_price.prompt", jsonfield.CodeInvalidType},
		{"max_price bad string", chat(`{"max_price":{"prompt":"cheap"}}`), "provider.max_price.prompt", jsonfield.CodeInvalidValue},
		{"max_price huge", chat(`{"max_price":{"prompt":1e30}}`), "provider.max_price.prompt", jsonfield.CodeInvalidValue},
		{"max_price huge exponent", chat(`{"max_price":{"prompt":1e999999999}}`), "provider.max_price.prompt", jsonfield.CodeInvalidValue},
	}
	for _, tt := range tests {
		_, e := ParseChat([]byte(tt.body))
		checkErr(t, e, tt)
	}
}

func TestDecimalAmount(t *testing.T) {
	tests := []struct {
		in   string
		want money.Amount
		ok   bool
	}{
		{"0", 0, true},
		{"0.2", 200_000, true},
		{"0.20", 200_000, true},
		{"0.000001", 1, true},
		{"15", 15_000_000, true},
		{"2.5e-1", 250_000, true},
		{"2.5E+1", 25_000_000, true},
		{"1e-6", 1, true},
		{"100e-8", 1, true},
		{"0.10000000", 100_000, true},
		{"0e999", 0, true},
		{"18446744073709.551614", 18446744073709551614, true},
		{"18446744073709.551615", 0, false}, // the largest Amount is reserved for "unrepresentable"
		{"0.0000001", 0, false},
		{"1e-7", 0, false},
		{"-1", 0, false},
		{".5", 0, false},
		{"5.", 0, false},
		{"1e", 0, false},
		{"1e1000", 0, false},
		{"0x10", 0, false},
		{"1/3", 0, false},
		{"", 0, false},
		{" 1", 0, false},
	}
	for _, tt := range tests {
		got, problem := decimalAmount(tt.in)
		if (problem == "") != tt.ok || got != tt.want {
			t.Errorf("decimalAmount(%q) = %d, %q; want %d, ok %v", tt.in, got, problem, tt.want, tt.ok)
		}
	}
}
