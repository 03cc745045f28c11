// Package client is the typed client of the gateway's OpenAI-style
// consumer API, used by every internal caller (verifier, onboarding,
// benches, fault tests, the web UI): answers decode into the same
// apitypes the gateway encodes with, refusals into *APIError. Every read
// is bounded: bodies by MaxBody, stream lines by MaxLine.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/idlegrid/idlegrid/internal/gateway/api/apitypes"
	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// Bounds on what the client reads.
const (
	// DefaultMaxBody bounds a JSON answer.
	DefaultMaxBody = 16 << 20
	// DefaultMaxLine bounds one line of a server-sent event stream.
	DefaultMaxLine = 1 << 20
)

// Client calls one gateway with one API key.
type Client struct {
	base    string
	key     string
	http    *http.Client
	maxBody int64
	maxLine int
}

// Option changes a Client at New.
type Option func(*Client)

// WithHTTPClient sends requests through hc (its timeout, transport);
// http.DefaultClient otherwise.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.http = hc } }

// WithMaxBody bounds the JSON answers read, in bytes.
func WithMaxBody(n int64) Option { return func(c *Client) { c.maxBody = n } }

// WithMaxLine bounds one line of a stream, in bytes.
func WithMaxLine(n int) Option { return func(c *Client) { c.maxLine = n } }

// New returns a client of the gateway at baseURL (e.g.
// "http://127.0.0.1:8080", without /v1) that sends apiKey as its bearer
// token; an empty key sends none.
func New(baseURL, apiKey string, opts ...Option) *Client {
	c := &Client{base: strings.TrimSuffix(baseURL, "/"), key: apiKey, http: http.DefaultClient, maxBody: DefaultMaxBody, maxLine: DefaultMaxLine}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Do sends one request to path (e.g. "/v1/models") and returns the
// response whatever its status; the caller closes its body. body is nil,
// bytes sent as they are ([]byte, json.RawMessage) or anything else sent
// as JSON; header adds to the request's headers (its Authorization
// replaces the client's key).
func (c *Client) Do(ctx context.Context, method, path string, body any, header http.Header) (*http.Response, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case json.RawMessage:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("%s %s: encode request: %w", method, path, err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	for k, vs := range header {
		req.Header[http.CanonicalHeaderKey(k)] = vs
	}
	return c.http.Do(req)
}

// Decode reads resp's JSON answer into out and closes its body. An answer
// other than 2xx is an *APIError; an answer longer than the client's
// MaxBody is an error.
func (c *Client) Decode(resp *http.Response, out any) error {
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBody+1))
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return decodeError(resp.StatusCode, resp.Header.Get("X-Request-Id"), b)
	}
	if int64(len(b)) > c.maxBody {
		return fmt.Errorf("answer longer than %d bytes", c.maxBody)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	return nil
}

// call sends one request and decodes its answer into out.
func (c *Client) call(ctx context.Context, method, path string, body, out any, header http.Header) error {
	resp, err := c.Do(ctx, method, path, body, header)
	if err != nil {
		return err
	}
	if err := c.Decode(resp, out); err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	return nil
}

// Chat sends a non-streaming /v1/chat/completions request. req is the
// request body (see Do).
func (c *Client) Chat(ctx context.Context, req any) (apitypes.ChatCompletion, error) {
	var out apitypes.ChatCompletion
	err := c.call(ctx, http.MethodPost, "/v1/chat/completions", req, &out, nil)
	return out, err
}

// Complete sends a non-streaming legacy /v1/completions request.
func (c *Client) Complete(ctx context.Context, req any) (apitypes.TextCompletion, error) {
	var out apitypes.TextCompletion
	err := c.call(ctx, http.MethodPost, "/v1/completions", req, &out, nil)
	return out, err
}

// ChatStream sends a streaming /v1/chat/completions request (req must
// ask for "stream": true) and calls onChunk with each chunk in order; an
// error from onChunk stops the stream and is returned. It returns the
// request id (the X-Request-Id header) even with an error, once the
// gateway answered. A refusal or an error event in the stream is an
// *APIError; a stream that ends without [DONE] is ErrTruncated.
func (c *Client) ChatStream(ctx context.Context, req any, onChunk func(apitypes.ChatChunk) error) (string, error) {
	resp, err := c.Do(ctx, http.MethodPost, "/v1/chat/completions", req, nil)
	if err != nil {
		return "", err
	}
	id := resp.Header.Get("X-Request-Id")
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBody))
		if err != nil {
			return id, fmt.Errorf("read answer: %w", err)
		}
		return id, decodeError(resp.StatusCode, id, b)
	}
	return id, ReadChatStream(resp.Body, c.maxLine, onChunk, resp.StatusCode, id)
}

// Models lists the gateway's models (GET /v1/models).
func (c *Client) Models(ctx context.Context) ([]apitypes.Model, error) {
	var list apitypes.ModelList
	err := c.call(ctx, http.MethodGet, "/v1/models", nil, &list, nil)
	return list.Data, err
}

// Account reads the client's key's account (GET /v1/account).
func (c *Client) Account(ctx context.Context) (apitypes.Account, error) {
	return c.AccountFor(ctx, c.key)
}

// AccountFor reads the account of apiKey rather than the client's own.
func (c *Client) AccountFor(ctx context.Context, apiKey string) (apitypes.Account, error) {
	var v apitypes.Account
	h := http.Header{"Authorization": {"Bearer " + apiKey}}
	err := c.call(ctx, http.MethodGet, "/v1/account", nil, &v, h)
	return v, err
}

// Receipt fetches the signed receipt of a request (GET
// /v1/receipts/{id}); it does not check the signatures.
func (c *Client) Receipt(ctx context.Context, requestID string) (receipt.Signed, error) {
	var raw json.RawMessage
	if err := c.call(ctx, http.MethodGet, "/v1/receipts/"+requestID, nil, &raw, nil); err != nil {
		return receipt.Signed{}, err
	}
	s, err := receipt.ParseSigned(raw)
	if err != nil {
		return receipt.Signed{}, fmt.Errorf("receipt of %s: %w", requestID, err)
	}
	return s, nil
}

// errorSnippet bounds how much of a non-JSON error body an error quotes.
const errorSnippet = 200

// APIError is an answer the API refused, decoded from OpenAI's error
// body, or an error event in a stream.
type APIError struct {
	// Status is the HTTP status; 200 for an error event in a stream (the
	// status line was sent before the failure).
	Status int
	// Type, Code, Param and Message are the error body's members.
	Type, Code, Param, Message string
	// RequestID is the X-Request-Id header, when the gateway sent one.
	RequestID string
}

func (e *APIError) Error() string {
	kind := e.Code
	if kind == "" {
		kind = e.Type
	}
	if kind == "" {
		return fmt.Sprintf("HTTP %d: %s", e.Status, e.Message)
	}
	return fmt.Sprintf("HTTP %d (%s): %s", e.Status, kind, e.Message)
}

// Unwrap gives the refusal as the gateway's own error type, so that a
// caller served both in-process and over HTTP (the web UI) reads both the
// same way (errors.As with *apierr.Error).
func (e *APIError) Unwrap() error {
	return &apierr.Error{Status: e.Status, Type: e.Type, Code: e.Code, Param: e.Param, Message: e.Message}
}

// newAPIError is the error object o, answered with status.
func newAPIError(status int, requestID string, o *apitypes.ErrorObject) *APIError {
	e := &APIError{Status: status, RequestID: requestID, Type: o.Type, Message: o.Message}
	if o.Code != nil {
		e.Code = *o.Code
	}
	if o.Param != nil {
		e.Param = *o.Param
	}
	return e
}

// decodeError turns an error answer into an *APIError; a body that is not
// OpenAI's error JSON is quoted in Message.
func decodeError(status int, requestID string, body []byte) *APIError {
	e := &APIError{Status: status, RequestID: requestID}
	var b struct {
		Error *apitypes.ErrorObject `json:"error"`
	}
	if json.Unmarshal(body, &b) == nil && b.Error != nil && b.Error.Message != "" {
		return newAPIError(status, requestID, b.Error)
	}
	snippet := strings.ToValidUTF8(string(body[:min(len(body), errorSnippet)]), "?")
	e.Message = fmt.Sprintf("%s, with a body that is not an OpenAI error: %q", http.StatusText(status), strings.TrimSpace(snippet))
	return e
}

// ErrTruncated is a stream that ended without [DONE]: the answer may be
// incomplete.
var ErrTruncated = errors.New("the stream ended without [DONE]")
