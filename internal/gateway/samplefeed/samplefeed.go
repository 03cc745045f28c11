// Package samplefeed is the wire format of a gateway's sample feed, the
// share of served responses it hands to verifiers for re-scoring, and of
// the signature by which a verifier proves its ledger key when it reads
// the feed. The gateway encodes what the verifier decodes, so both use
// this package.
//
// Privacy: a sample always carries the countersigned receipt (request id,
// provider, consumer account, model digest, token counts, prices, request
// and response hashes) and the finish reason; the request and the
// response text travel only when the gateway operator chose to share
// sampled responses with verifiers.
package samplefeed

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// Path is the feed's endpoint on the gateway: GET Path?after=SEQ&limit=N.
const Path = "/v1/verifier/samples"

// QueryEmbeddings, set to 1 in the feed's query, asks for the vectors of
// shared embed samples (Sample.Embeddings). Without it they come as hashes
// only, so that a verifier that predates embeddings can still read pages
// that hold them.
const QueryEmbeddings = "embeddings"

// MaxPage bounds the samples in one page.
const MaxPage = 256

// Headers of a signed feed request, and of the gateway's answers.
const (
	// HeaderVerifier is the verifier's public key (hex); HeaderTime the
	// request time in Unix milliseconds; HeaderSignature its ed25519
	// signature (hex) over SignedBytes.
	HeaderVerifier  = "X-Idlegrid-Verifier"
	HeaderTime      = "X-Idlegrid-Time"
	HeaderSignature = "X-Idlegrid-Signature"
	// HeaderGateway and HeaderChain name the gateway's key and chain on
	// every feed answer, signed or refused, so that a verifier learns what
	// to sign for from its first request.
	HeaderGateway = "X-Idlegrid-Gateway"
	HeaderChain   = "X-Idlegrid-Chain"
)

// MaxSkew is how far a signed request's time may be from the gateway's
// clock; a signature is accepted once within that window.
const MaxSkew = 2 * time.Minute

// Sample is one served response, as the gateway relayed it.
type Sample struct {
	// Seq orders the feed: a verifier asks for the samples after the last
	// Seq it read.
	Seq uint64 `json:"seq"`
	// Receipt is the provider-signed, gateway-countersigned receipt: who
	// served what, with which weights, the token counts billed and the
	// hashes of request and response.
	Receipt receipt.Signed `json:"receipt"`
	// FinishReason is what the provider said ended the answer.
	FinishReason string `json:"finish_reason"`
	// Request is the request exactly as the provider received it, and Text
	// the answer it generated (its SHA-256 is the receipt's response hash).
	// Both are present only when the gateway shares sampled responses.
	Request *protocol.Request `json:"request,omitempty"`
	Text    *string           `json:"text,omitempty"`
	// Embeddings replace Text for an embed request (protocol.KindEmbed):
	// the vectors the provider answered, one per input, whose
	// protocol.EmbeddingsHash is the receipt's response hash.
	Embeddings [][]float32 `json:"embeddings,omitempty"`
}

// Shared reports whether the sample carries its request and its answer
// (text, or vectors for an embed request).
func (s *Sample) Shared() bool { return s.Request != nil && (s.Text != nil || s.Embeddings != nil) }

// Page is one answer of the feed.
type Page struct {
	Samples []Sample `json:"samples"`
	// Next is the after= of the next request (the last Seq returned, or
	// the request's own after when nothing is new).
	Next uint64 `json:"next"`
	// Missed counts samples after the request's after= that the bounded
	// feed had already dropped.
	Missed uint64 `json:"missed"`
	// ServedTokens is the completion tokens the gateway has served to
	// consumers (verifiers' canaries included) since it started; a
	// verifier paces its audits by its growth. Absent from a gateway that
	// predates it: the verifier then has no budget.
	ServedTokens *uint64 `json:"served_tokens,omitempty"`
	// Share is the gateway's configured share of served responses
	// sampled (providers on probation have all theirs sampled).
	Share float64 `json:"share,omitempty"`
}

// ParsePage decodes a feed answer and checks what a verifier relies on:
// sequence numbers increasing, receipts well-formed and signed, shared
// texts matching their receipts' response hashes.
func ParsePage(b []byte) (Page, error) {
	var p Page
	if err := json.Unmarshal(b, &p); err != nil {
		return Page{}, fmt.Errorf("sample feed: %w", err)
	}
	if p.Share < 0 || p.Share > 1 {
		return Page{}, fmt.Errorf("sample feed: share %v: want a fraction between 0 and 1", p.Share)
	}
	if len(p.Samples) > MaxPage {
		return Page{}, fmt.Errorf("sample feed: %d samples in one page (at most %d)", len(p.Samples), MaxPage)
	}
	var last uint64
	for i := range p.Samples {
		s := &p.Samples[i]
		if s.Seq <= last {
			return Page{}, fmt.Errorf("sample feed: sequence %d after %d", s.Seq, last)
		}
		last = s.Seq
		if err := s.Receipt.Receipt.Validate(); err != nil {
			return Page{}, fmt.Errorf("sample feed: sample %d: %w", s.Seq, err)
		}
		if err := s.Receipt.Verify(); err != nil {
			return Page{}, fmt.Errorf("sample feed: sample %d: %w", s.Seq, err)
		}
		if s.Request != nil && s.Request.Kind == protocol.KindEmbed {
			if err := checkEmbeddings(s); err != nil {
				return Page{}, err
			}
			continue
		}
		if (s.Request == nil) != (s.Text == nil) || s.Embeddings != nil {
			return Page{}, fmt.Errorf("sample feed: sample %d carries a request or a text, not both", s.Seq)
		}
		if s.Text != nil && receipt.Sum([]byte(*s.Text)) != s.Receipt.Receipt.ResponseHash {
			return Page{}, fmt.Errorf("sample feed: sample %d: the text is not the one its receipt signs", s.Seq)
		}
	}
	if len(p.Samples) > 0 && p.Next < last {
		return Page{}, fmt.Errorf("sample feed: next %d before the last sample %d", p.Next, last)
	}
	return p, nil
}

// checkEmbeddings checks a shared embed sample: one vector per input, and
// the vectors its receipt signs.
func checkEmbeddings(s *Sample) error {
	switch {
	case s.Text != nil:
		return fmt.Errorf("sample feed: sample %d of an embed request carries a text", s.Seq)
	case len(s.Embeddings) != len(s.Request.Input):
		return fmt.Errorf("sample feed: sample %d carries %d vectors for %d inputs", s.Seq, len(s.Embeddings), len(s.Request.Input))
	case protocol.EmbeddingsHash(s.Embeddings) != s.Receipt.Receipt.ResponseHash:
		return fmt.Errorf("sample feed: sample %d: the vectors are not the ones its receipt signs", s.Seq)
	}
	return nil
}

// Evidence names the case of a sampled response on the ledger: every
// verifier that judges the sample posts its verdict under this hash, so
// their verdicts meet in one case, and a gateway that plants the sample
// can commit to it before handing it out.
func Evidence(r *receipt.Receipt) receipt.Hash {
	h := r.Hash()
	return sha256.Sum256(append([]byte("idlegrid/sample/v1\n"), h[:]...))
}

// SignedBytes is what a verifier signs to read the feed: the chain, the
// gateway's key, the method, the request target (path and query) and the
// time, length-prefixed.
func SignedBytes(chainID string, gateway keys.PublicKey, method, target string, unixMs int64) []byte {
	b := []byte("idlegrid/samples/v1\n")
	for _, s := range []string{chainID, string(gateway[:]), method, target} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return binary.BigEndian.AppendUint64(b, uint64(unixMs))
}

// Sign sets the headers that prove key's holder sent the request.
func Sign(h http.Header, key keys.PrivateKey, chainID string, gateway keys.PublicKey, method, target string, now time.Time) {
	ms := now.UnixMilli()
	h.Set(HeaderVerifier, key.Public().String())
	h.Set(HeaderTime, strconv.FormatInt(ms, 10))
	h.Set(HeaderSignature, key.Sign(SignedBytes(chainID, gateway, method, target, ms)).String())
}

// Auth is a signed feed request's proof.
type Auth struct {
	Key       keys.PublicKey
	UnixMs    int64
	Signature keys.Signature
}

// ErrUnsigned: the request carries none of the signature headers.
var ErrUnsigned = errors.New("sample feed: the request is not signed")

// ParseAuth reads the signature headers.
func ParseAuth(h http.Header) (Auth, error) {
	k, t, s := h.Get(HeaderVerifier), h.Get(HeaderTime), h.Get(HeaderSignature)
	if k == "" && t == "" && s == "" {
		return Auth{}, ErrUnsigned
	}
	var a Auth
	var err error
	if a.Key, err = keys.ParsePublicKey(k); err != nil {
		return Auth{}, fmt.Errorf("%s: %w", HeaderVerifier, err)
	}
	if a.UnixMs, err = strconv.ParseInt(t, 10, 64); err != nil {
		return Auth{}, fmt.Errorf("%s: not a time in Unix milliseconds", HeaderTime)
	}
	if err := a.Signature.UnmarshalText([]byte(s)); err != nil {
		return Auth{}, fmt.Errorf("%s: %w", HeaderSignature, err)
	}
	return a, nil
}

// Check verifies the signature for this gateway and request at now.
func (a Auth) Check(chainID string, gateway keys.PublicKey, method, target string, now time.Time) error {
	skew := now.Sub(time.UnixMilli(a.UnixMs))
	if skew > MaxSkew || skew < -MaxSkew {
		return fmt.Errorf("sample feed: the request time is %s from the gateway's clock (at most %s)", skew.Round(time.Second), MaxSkew)
	}
	if !a.Key.Verify(SignedBytes(chainID, gateway, method, target, a.UnixMs), a.Signature) {
		return errors.New("sample feed: bad signature (it must cover this chain, this gateway, the method, the path with its query and the time)")
	}
	return nil
}
