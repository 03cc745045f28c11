package apitypes

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// TestStreamUsage: a chunk's usage member is absent, null or the counts,
// and decodes back to what was encoded.
func TestStreamUsage(t *testing.T) {
	for _, tc := range []struct {
		usage StreamUsage
		want  string
	}{
		{StreamUsage{}, `{"id":"","object":"","created":0,"model":"","system_fingerprint":null,"choices":null}`},
		{StreamUsage{Asked: true}, `{"id":"","object":"","created":0,"model":"","system_fingerprint":null,"choices":null,"usage":null}`},
		{WithUsage(Usage{PromptTokens: 1, CompletionTokens: 2, TotalTokens: 3}),
			`{"id":"","object":"","created":0,"model":"","system_fingerprint":null,"choices":null,"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}`},
	} {
		b, err := json.Marshal(ChatChunk{Envelope: Envelope{SystemFingerprint: json.RawMessage(null)}, Usage: tc.usage})
		if err != nil || string(b) != tc.want {
			t.Fatalf("%+v encodes as %s (%v), want %s", tc.usage, b, err, tc.want)
		}
		var back ChatChunk
		if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back.Usage, tc.usage) {
			t.Errorf("%s decodes as %+v (%v)", b, back.Usage, err)
		}
	}
}

// TestTopLogprobsKeepOrder: the legacy alternatives object keeps the most
// likely token first both ways, drops a repeated token and does not
// escape HTML.
func TestTopLogprobsKeepOrder(t *testing.T) {
	in := TopLogprobs{{"z", -0.5}, {"<a>", -1}, {"z", -2}, {"b", -3.25}}
	// The gateway encodes without HTML escaping, as sink.Marshal does.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	err := enc.Encode(LegacyLogprobs{TopLogprobs: []TopLogprobs{in, {}}})
	b := bytes.TrimSpace(buf.Bytes())
	want := `{"tokens":null,"token_logprobs":null,"top_logprobs":[{"z":-0.5,"<a>":-1,"b":-3.25},{}],"text_offset":null}`
	if err != nil || string(b) != want {
		t.Fatalf("%s (%v), want %s", b, err, want)
	}
	var back LegacyLogprobs
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if w := (TopLogprobs{{"z", -0.5}, {"<a>", -1}, {"b", -3.25}}); !reflect.DeepEqual(back.TopLogprobs, []TopLogprobs{w, {}}) {
		t.Errorf("decoded %+v", back.TopLogprobs)
	}
	if err := json.Unmarshal([]byte(`{"top_logprobs":[["x"]]}`), &back); err == nil {
		t.Error("an array decodes as alternatives")
	}
}
