package samplefeed

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

func mustKey(t testing.TB) keys.PrivateKey {
	k, err := keys.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestAuth: a signature covers the chain, the gateway, the method, the
// target and the time, within MaxSkew.
func TestAuth(t *testing.T) {
	v, gw, other := mustKey(t), mustKey(t).Public(), mustKey(t).Public()
	now := time.UnixMilli(1_700_000_000_000)
	const target = Path + "?after=3"
	for _, tc := range []struct {
		name    string
		chainID string
		gateway keys.PublicKey
		method  string
		target  string
		at      time.Time
		ok      bool
	}{
		{"good", "c", gw, http.MethodGet, target, now, true},
		{"within skew", "c", gw, http.MethodGet, target, now.Add(MaxSkew - time.Second), true},
		{"other chain", "d", gw, http.MethodGet, target, now, false},
		{"other gateway", "c", other, http.MethodGet, target, now, false},
		{"other method", "c", gw, http.MethodPost, target, now, false},
		{"other target", "c", gw, http.MethodGet, Path + "?after=4", now, false},
		{"too old", "c", gw, http.MethodGet, target, now.Add(-MaxSkew - time.Second), false},
		{"from the future", "c", gw, http.MethodGet, target, now.Add(MaxSkew + time.Second), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			Sign(h, v, "c", gw, http.MethodGet, target, tc.at)
			a, err := ParseAuth(h)
			if err != nil {
				t.Fatal(err)
			}
			err = a.Check(tc.chainID, tc.gateway, tc.method, tc.target, now)
			if (err == nil) != tc.ok {
				t.Fatalf("check: %v, want ok=%v", err, tc.ok)
			}
		})
	}
	if _, err := ParseAuth(http.Header{}); err != ErrUnsigned {
		t.Fatalf("no headers: %v", err)
	}
}

func signedReceipt(t testing.TB, text string) receipt.Signed {
	p, g := mustKey(t), mustKey(t)
	r := receipt.Receipt{Version: receipt.Version, ChainID: "c", RequestID: "r1", Gateway: g.Public(), Provider: p.Public(),
		Consumer: p.Public().Address(), Model: "sim", ModelDigest: "sha256:00", CompletionTokens: 2,
		ResponseHash: receipt.Sum([]byte(text)), StartUnixMs: 1, EndUnixMs: 2}
	return receipt.Signed{Receipt: r, ProviderSignature: receipt.SignProvider(p, &r), GatewaySignature: receipt.SignGateway(g, &r)}
}

// TestParsePage: pages whose receipts, texts or order a verifier cannot
// rely on are refused.
func TestParsePage(t *testing.T) {
	text, other := " hello world", " made up"
	req := &protocol.Request{Kind: protocol.KindGenerate, Model: "sim", Prompt: "Say hello"}
	good := Sample{Seq: 1, Receipt: signedReceipt(t, text), FinishReason: "stop", Request: req, Text: &text}
	tampered := good
	tampered.Seq, tampered.Receipt.Receipt.CompletionTokens = 2, 9
	for _, tc := range []struct {
		name string
		page Page
		err  string
	}{
		{"good", Page{Samples: []Sample{good}, Next: 1}, ""},
		{"hashes only", Page{Samples: []Sample{{Seq: 4, Receipt: good.Receipt, FinishReason: "stop"}}, Next: 4}, ""},
		{"empty", Page{Next: 7}, ""},
		{"other text", Page{Samples: []Sample{{Seq: 1, Receipt: good.Receipt, Request: req, Text: &other}}, Next: 1}, "not the one its receipt signs"},
		{"text without request", Page{Samples: []Sample{{Seq: 1, Receipt: good.Receipt, Text: &text}}, Next: 1}, "not both"},
		{"tampered receipt", Page{Samples: []Sample{tampered}, Next: 2}, "signature"},
		{"out of order", Page{Samples: []Sample{{Seq: 2, Receipt: good.Receipt}, {Seq: 2, Receipt: good.Receipt}}, Next: 2}, "sequence"},
		{"next behind", Page{Samples: []Sample{good}, Next: 0}, "next"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := json.Marshal(tc.page)
			_, err := ParsePage(b)
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("error %v, want %q", err, tc.err)
			}
		})
	}
}

// TestEvidenceNamesTheReceipt: one receipt, one case; any change, another.
func TestEvidenceNamesTheReceipt(t *testing.T) {
	s := signedReceipt(t, "x")
	r := s.Receipt
	e := Evidence(&r)
	if Evidence(&r) != e {
		t.Fatal("evidence is not a function of the receipt")
	}
	r.CompletionTokens++
	if Evidence(&r) == e {
		t.Fatal("two receipts, one case")
	}
}

// FuzzParseAuth: no header values make ParseAuth or Check panic.
func FuzzParseAuth(f *testing.F) {
	k := mustKey(f)
	h := http.Header{}
	Sign(h, k, "c", k.Public(), http.MethodGet, Path, time.UnixMilli(5))
	f.Add(h.Get(HeaderVerifier), h.Get(HeaderTime), h.Get(HeaderSignature))
	f.Add("", "", "")
	f.Add("zz", "-9223372036854775808", "00")
	f.Fuzz(func(t *testing.T, key, at, sig string) {
		h := http.Header{HeaderVerifier: {key}, HeaderTime: {at}, HeaderSignature: {sig}}
		a, err := ParseAuth(h)
		if err != nil {
			return
		}
		a.Check("c", k.Public(), http.MethodGet, Path, time.UnixMilli(5))
	})
}

// FuzzParsePage: no feed answer makes ParsePage panic, and what it accepts
// keeps its promises.
func FuzzParsePage(f *testing.F) {
	text := " hi"
	good, _ := json.Marshal(Page{Samples: []Sample{{Seq: 1, Receipt: signedReceipt(f, text), FinishReason: "stop",
		Request: &protocol.Request{Kind: protocol.KindChat, Model: "m", Messages: []protocol.ChatMessage{{Role: "user", Content: "hi"}}}, Text: &text}}, Next: 1})
	f.Add(good)
	f.Add([]byte(`{"samples":[],"next":0,"missed":3}`))
	f.Add([]byte(`{"samples":[{"seq":0}]}`))
	served := uint64(1234)
	withServed, _ := json.Marshal(Page{Samples: []Sample{}, ServedTokens: &served, Share: 0.01})
	f.Add(withServed)
	f.Add([]byte(`{"samples":[],"next":0,"served_tokens":18446744073709551615,"share":1}`))
	f.Add([]byte(`{"samples":[],"served_tokens":-1,"share":2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePage(b)
		if err != nil {
			return
		}
		if p.Share < 0 || p.Share > 1 {
			t.Fatalf("accepted a share of %v", p.Share)
		}
		var last uint64
		for _, s := range p.Samples {
			if s.Seq <= last || s.Receipt.Verify() != nil {
				t.Fatalf("accepted a bad sample: %+v", s)
			}
			last = s.Seq
			if s.Text != nil && receipt.Sum([]byte(*s.Text)) != s.Receipt.Receipt.ResponseHash {
				t.Fatal("accepted a text its receipt does not sign")
			}
		}
	})
}

// TestParsePageServed: served_tokens and share decode when present (a
// verifier tells an absent count from zero), and a share outside [0, 1]
// is refused.
func TestParsePageServed(t *testing.T) {
	for _, tc := range []struct {
		body   string
		served *uint64
		share  float64
		err    string
	}{
		{`{"samples":[],"next":0}`, nil, 0, ""},
		{`{"samples":[],"next":0,"served_tokens":0,"share":0.01}`, new(uint64), 0.01, ""},
		{`{"samples":[],"next":0,"served_tokens":-1}`, nil, 0, "served_tokens"},
		{`{"samples":[],"next":0,"share":1.5}`, nil, 0, "share 1.5"},
	} {
		p, err := ParsePage([]byte(tc.body))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want %q", tc.body, err, tc.err)
			}
			continue
		}
		if err != nil || (p.ServedTokens == nil) != (tc.served == nil) || p.ServedTokens != nil && *p.ServedTokens != *tc.served || p.Share != tc.share {
			t.Errorf("%s: %+v %v", tc.body, p, err)
		}
	}
}

// TestParsePageEmbeddings: a shared embed sample carries one vector per
// input, whose canonical hash is the receipt's response hash, and no text.
func TestParsePageEmbeddings(t *testing.T) {
	vs := [][]float32{{0.6, 0.8}, {1, 0}}
	p, g := mustKey(t), mustKey(t)
	r := receipt.Receipt{Version: receipt.Version, ChainID: "c", RequestID: "e1", Gateway: g.Public(), Provider: p.Public(),
		Consumer: p.Public().Address(), Model: "sim", ModelDigest: "sha256:00", PromptTokens: 4,
		ResponseHash: protocol.EmbeddingsHash(vs), StartUnixMs: 1, EndUnixMs: 2}
	signed := receipt.Signed{Receipt: r, ProviderSignature: receipt.SignProvider(p, &r), GatewaySignature: receipt.SignGateway(g, &r)}
	req := &protocol.Request{Kind: protocol.KindEmbed, Model: "sim", Input: []string{"a", "b"}}
	text := ""
	for _, tc := range []struct {
		name string
		s    Sample
		err  string
	}{
		{"good", Sample{Seq: 1, Receipt: signed, Request: req, Embeddings: vs}, ""},
		{"hashes only", Sample{Seq: 1, Receipt: signed}, ""},
		{"other vectors", Sample{Seq: 1, Receipt: signed, Request: req, Embeddings: [][]float32{{0.8, 0.6}, {1, 0}}}, "not the ones its receipt signs"},
		{"a vector missing", Sample{Seq: 1, Receipt: signed, Request: req, Embeddings: vs[:1]}, "1 vectors for 2 inputs"},
		{"with a text", Sample{Seq: 1, Receipt: signed, Request: req, Embeddings: vs, Text: &text}, "carries a text"},
		{"vectors without request", Sample{Seq: 1, Receipt: signed, Embeddings: vs}, "not both"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := json.Marshal(Page{Samples: []Sample{tc.s}, Next: 1})
			page, err := ParsePage(b)
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("error %v, want %q", err, tc.err)
			}
			if tc.name == "good" && !page.Samples[0].Shared() {
				t.Fatal("a sample with its vectors is not shared")
			}
		})
	}
}
