package protocol

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"unicode/utf8"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// Limits on fields, so that a hostile peer cannot make the other side
// allocate much per message.
const (
	MaxIDLen       = 128
	MaxModels      = 256
	MaxNameLen     = 256
	MaxLabelLen    = 64 // a model's quantization, family and parameter size
	MaxSlots       = 1024
	MaxMessageText = 4096 // error messages, reasons, versions
	NonceSize      = 32
	// MaxToolCalls bounds the calls of one chunk; MaxCapabilities the
	// capabilities of one model.
	MaxToolCalls    = 64
	MaxCapabilities = 32
)

// ErrProtocol is wrapped by every decoding and validation error: the peer
// broke the protocol and the connection should be closed with the reason.
var ErrProtocol = errors.New("protocol error")

// ErrNotAdmitted is wrapped by a gateway's refusal of a provider whose
// handshake is valid but that may not serve there (not registered or
// staked on the ledger, or jailed). The connection closes with
// StatusNotAdmitted and the reason, which names what fixes it.
var ErrNotAdmitted = errors.New("not admitted")

// StatusNotAdmitted is the WebSocket close status of ErrNotAdmitted (an
// application code: 4000–4999). An agent that gets it tells its user the
// reason and waits long before trying again.
const StatusNotAdmitted = 4003

// Encode appends the JSON encoding of m and a trailing newline to dst.
func Encode(dst []byte, m *Message) ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return dst, fmt.Errorf("encode %s: %w", m.Type, err)
	}
	dst = append(dst, b...)
	return append(dst, '\n'), nil
}

// DecodeFrame decodes every message of one WebSocket frame, validates it and
// calls fn for it in order. It stops at the first error.
func DecodeFrame(frame []byte, fn func(*Message) error) error {
	for len(frame) > 0 {
		line := frame
		if i := bytes.IndexByte(frame, '\n'); i >= 0 {
			line, frame = frame[:i], frame[i+1:]
		} else {
			frame = nil
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		m, err := Decode(line)
		if err != nil {
			return err
		}
		if err := fn(m); err != nil {
			return err
		}
	}
	return nil
}

// Decode decodes and validates one message.
func Decode(b []byte) (*Message, error) {
	var m Message
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}

// Validate checks that exactly the payload for m.Type is set and that its
// fields are within limits.
func (m *Message) Validate() error {
	payloads := 0
	for _, set := range []bool{m.Hello != nil, m.Auth != nil, m.Welcome != nil, m.Job != nil, m.Cancel != nil, m.Chunk != nil,
		m.Done != nil, m.Error != nil, m.Pause != nil, m.Capabilities != nil, m.Ping != nil} {
		if set {
			payloads++
		}
	}
	want := 1
	var err error
	switch m.Type {
	case TypeHello:
		err = need(m.Hello != nil, m.Type)
		if err == nil {
			err = m.Hello.validate()
		}
	case TypeAuth:
		err = need(m.Auth != nil, m.Type)
		if err == nil {
			err = m.Auth.Capabilities.Validate()
		}
	case TypeWelcome:
		err = need(m.Welcome != nil, m.Type)
		if err == nil && m.Welcome.HeartbeatMs <= 0 {
			err = protoErr("welcome: heartbeat_ms must be positive")
		}
	case TypeJob:
		err = need(m.Job != nil, m.Type)
		if err == nil {
			err = m.Job.validate()
		}
	case TypeCancel:
		err = need(m.Cancel != nil, m.Type)
		if err == nil {
			err = validID(m.Cancel.ID)
		}
	case TypeChunk:
		err = need(m.Chunk != nil, m.Type)
		if err == nil {
			err = m.Chunk.validate()
		}
	case TypeDone:
		err = need(m.Done != nil, m.Type)
		if err == nil {
			err = m.Done.validate()
		}
	case TypeError:
		err = need(m.Error != nil, m.Type)
		if err == nil {
			err = validID(m.Error.ID)
		}
		if err == nil && (m.Error.Code == "" || !validText(string(m.Error.Code), 64) || !validText(m.Error.Message, MaxMessageText)) {
			err = protoErr("error: code must be set and message at most %d bytes of UTF-8", MaxMessageText)
		}
	case TypePause:
		want = 0
		if m.Pause != nil {
			want = 1
			if !validText(m.Pause.Reason, MaxMessageText) {
				err = protoErr("pause: reason must be at most %d bytes of UTF-8", MaxMessageText)
			}
		}
	case TypeResume:
		want = 0
	case TypeCapabilities:
		err = need(m.Capabilities != nil, m.Type)
		if err == nil {
			err = m.Capabilities.Validate()
		}
	case TypePing, TypePong:
		err = need(m.Ping != nil, m.Type)
	default:
		return protoErr("unknown message type %q", truncate(string(m.Type)))
	}
	if err != nil {
		return err
	}
	if payloads != want {
		return protoErr("%s message carries %d payloads, want %d", m.Type, payloads, want)
	}
	return nil
}

func need(ok bool, t Type) error {
	if !ok {
		return protoErr("%s message without its payload", t)
	}
	return nil
}

// validText reports whether s is valid UTF-8 of at most max bytes. Every
// length-limited or hashed string must be valid UTF-8 on the sending side:
// JSON carries only UTF-8, so the encoder replaces each invalid byte with
// U+FFFD (three bytes), and the receiver would see a different (and possibly
// too long) string than the sender validated, hashed or signed.
func validText(s string, max int) bool { return len(s) <= max && utf8.ValidString(s) }

// finite reports whether f can be encoded: JSON has no NaN or infinities.
func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

func validID(id string) error {
	if id == "" || len(id) > MaxIDLen || !utf8.ValidString(id) {
		return protoErr("job id must be 1 to %d bytes of UTF-8", MaxIDLen)
	}
	return nil
}

func (h *Hello) validate() error {
	if len(h.Nonce) != NonceSize {
		return protoErr("hello: nonce must be %d bytes", NonceSize)
	}
	if h.ChainID == "" || !validText(h.ChainID, receipt.MaxChainID) {
		return protoErr("hello: bad chain id")
	}
	return nil
}

// Validate checks the capabilities' limits.
func (c *Capabilities) Validate() error {
	if c.Slots < 1 || c.Slots > MaxSlots {
		return protoErr("capabilities: slots must be 1 to %d", MaxSlots)
	}
	if len(c.Models) > MaxModels {
		return protoErr("capabilities: at most %d models", MaxModels)
	}
	if !validText(c.AgentVersion, MaxMessageText) {
		return protoErr("capabilities: agent version must be at most %d bytes of UTF-8", MaxMessageText)
	}
	for i, md := range c.Models {
		if md.Name == "" || !validText(md.Name, MaxNameLen) || md.Digest == "" || !validText(md.Digest, receipt.MaxDigest) || !validText(md.BackendDigest, receipt.MaxDigest) {
			return protoErr("capabilities: model %d needs a name (≤%d bytes) and a digest (≤%d bytes, as its backend digest) of UTF-8", i, MaxNameLen, receipt.MaxDigest)
		}
		if !validText(md.Quantization, MaxLabelLen) || !validText(md.Family, MaxLabelLen) || !validText(md.ParameterSize, MaxLabelLen) {
			return protoErr("capabilities: model %q: quantization, family and parameter size must be at most %d bytes of UTF-8", md.Name, MaxLabelLen)
		}
		if md.TokensPerSecond < 0 || !finite(md.TokensPerSecond) || md.ContextLength < 0 || md.ParameterCount < 0 || md.EmbeddingLength < 0 {
			return protoErr("capabilities: model %q has negative or non-finite figures", md.Name)
		}
		if len(md.Capabilities) > MaxCapabilities {
			return protoErr("capabilities: model %q lists more than %d capabilities", md.Name, MaxCapabilities)
		}
		for _, c := range md.Capabilities {
			if c == "" || !validText(c, MaxLabelLen) {
				return protoErr("capabilities: model %q: a capability must be 1 to %d bytes of UTF-8", md.Name, MaxLabelLen)
			}
		}
	}
	return nil
}

func (j *Job) validate() error {
	if err := validID(j.ID); err != nil {
		return err
	}
	if j.Terms.RequestID != j.ID {
		return protoErr("job %q: terms name request %q", j.ID, truncate(j.Terms.RequestID))
	}
	switch j.Request.Kind {
	case KindChat, KindGenerate:
	case KindEmbed:
		if n := len(j.Request.Input); n == 0 || n > MaxEmbedInputs || j.Request.Dimensions < 0 || j.Request.Dimensions > MaxEmbeddingDims {
			return protoErr("job %q: an embed request needs 1 to %d inputs and 0 to %d dimensions", j.ID, MaxEmbedInputs, MaxEmbeddingDims)
		}
	default:
		return protoErr("job %q: unknown request kind %q", j.ID, truncate(string(j.Request.Kind)))
	}
	if j.Request.Model == "" || j.Request.Options.MaxTokens < 0 {
		return protoErr("job %q: request needs a model and max_tokens ≥ 0", j.ID)
	}
	if n := j.Request.ImageCount(); n > MaxImages || len(j.Request.Images) > 0 && j.Request.Kind != KindGenerate {
		return protoErr("job %q: at most %d images, and request.images only for generate (%d)", j.ID, MaxImages, n)
	}
	if len(j.Request.Context) > 0 && (j.Request.Kind != KindGenerate || !validContext(j.Request.Context)) {
		return protoErr("job %q: a context is for generate requests and holds token ids ≥ 0", j.ID)
	}
	for _, f := range []*float64{j.Request.Options.Temperature, j.Request.Options.TopP} {
		if f != nil && !finite(*f) {
			return protoErr("job %q: non-finite sampling option", j.ID)
		}
	}
	if err := j.Request.validateTools(); err != nil {
		return protoErr("job %q: %v", j.ID, err)
	}
	return nil
}

// MaxTools bounds the tools of one request.
const MaxTools = 128

// validateTools checks the version-5 members of a request: named tools,
// a known tool choice, calls in the history, and a format that is "json"
// or a JSON object.
func (r *Request) validateTools() error {
	if len(r.Tools) > MaxTools {
		return fmt.Errorf("more than %d tools", MaxTools)
	}
	for i, t := range r.Tools {
		if t.Function.Name == "" || !validText(t.Function.Name, MaxNameLen) {
			return fmt.Errorf("tool %d needs a name of 1 to %d bytes", i, MaxNameLen)
		}
	}
	switch r.ToolChoice {
	case "", ToolChoiceAuto, ToolChoiceNone, ToolChoiceRequired:
	default:
		return fmt.Errorf("unknown tool_choice %q", truncate(r.ToolChoice))
	}
	for i := range r.Messages {
		for j := range r.Messages[i].ToolCalls {
			if err := r.Messages[i].ToolCalls[j].Validate(); err != nil {
				return fmt.Errorf("message %d: tool call %d: %v", i, j, err)
			}
		}
	}
	if len(r.Format) > 0 && string(r.Format) != `"json"` && !IsJSONObject(r.Format) {
		return errors.New(`format must be "json" or a JSON Schema object`)
	}
	return nil
}

func (c *Chunk) validate() error {
	if err := validID(c.ID); err != nil {
		return err
	}
	if c.Tokens < 0 {
		return protoErr("chunk %q/%d: negative token count", c.ID, c.Seq)
	}
	// Both ends hash the deltas into the receipt's response hash, so the
	// text must reach the gateway byte for byte (see validText).
	if !utf8.ValidString(c.Delta) {
		return protoErr("chunk %q/%d: delta is not valid UTF-8", c.ID, c.Seq)
	}
	if len(c.Embedding) > MaxEmbeddingDims || !finiteVector(c.Embedding) {
		return protoErr("chunk %q/%d: an embedding has at most %d finite components", c.ID, c.Seq, MaxEmbeddingDims)
	}
	if len(c.Embedding) > 0 && (c.Delta != "" || c.Tokens != 0 || c.Checkpoint != nil || len(c.Logprobs) > 0) {
		return protoErr("chunk %q/%d: a chunk with an embedding carries nothing else", c.ID, c.Seq)
	}
	if cp := c.Checkpoint; cp != nil && (cp.CompletionTokens == 0 || cp.EndUnixMs <= 0) {
		return protoErr("chunk %q/%d: checkpoint needs completion_tokens and end_unix_ms above 0", c.ID, c.Seq)
	}
	if len(c.ToolCalls) > MaxToolCalls {
		return protoErr("chunk %q/%d: more than %d tool calls", c.ID, c.Seq, MaxToolCalls)
	}
	for i := range c.ToolCalls {
		if err := c.ToolCalls[i].Validate(); err != nil {
			return protoErr("chunk %q/%d: tool call %d: %v", c.ID, c.Seq, i, err)
		}
	}
	for _, lp := range c.Logprobs {
		ok := finite(lp.Logprob)
		for _, top := range lp.Top {
			ok = ok && finite(top.Logprob)
		}
		if !ok {
			return protoErr("chunk %q/%d: non-finite logprob", c.ID, c.Seq)
		}
	}
	return nil
}

func (d *Done) validate() error {
	if err := validID(d.ID); err != nil {
		return err
	}
	if d.FinishReason != "stop" && d.FinishReason != "length" {
		return protoErr("done %q: finish_reason must be stop or length", d.ID)
	}
	if !validContext(d.Context) {
		return protoErr("done %q: context token ids must be ≥ 0", d.ID)
	}
	return nil
}

// Validate checks a tool call: a name and id of at most MaxNameLen and
// MaxIDLen bytes of UTF-8, and arguments that are a JSON object (the
// gateway sends them on as one on the Ollama API).
func (tc *ToolCall) Validate() error {
	if tc.Name == "" || !validText(tc.Name, MaxNameLen) || !validText(tc.ID, MaxIDLen) {
		return fmt.Errorf("needs a name of 1 to %d bytes and an id of at most %d bytes of UTF-8", MaxNameLen, MaxIDLen)
	}
	if !utf8.ValidString(tc.Arguments) || !IsJSONObject([]byte(tc.Arguments)) {
		return errors.New("arguments must be the JSON text of an object")
	}
	return nil
}

// IsJSONObject reports whether b is one valid JSON object.
func IsJSONObject(b []byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) > 0 && b[0] == '{' && json.Valid(b)
}

// HashChunk writes c's part of a job's response hash to h: its Delta's
// bytes, then for each tool call the byte 0xFF, its ID, 0xFE, its Name,
// 0xFE and its Arguments, byte for byte. The response hash of a job is
// the sha256 of its chunks' parts in order, so an answer without tool
// calls hashes to the sha256 of its text, as before version 5. The bytes
// 0xFE and 0xFF never occur in UTF-8, and every field is valid UTF-8, so
// no other sequence of text and calls writes the same bytes. Provider and
// gateway both hash with this function.
func HashChunk(h io.Writer, c *Chunk) {
	io.WriteString(h, c.Delta)
	for _, tc := range c.ToolCalls {
		h.Write([]byte{0xFF})
		io.WriteString(h, tc.ID)
		h.Write([]byte{0xFE})
		io.WriteString(h, tc.Name)
		h.Write([]byte{0xFE})
		io.WriteString(h, tc.Arguments)
	}
}

// validContext reports whether a token context holds only ids ≥ 0.
func validContext(ids []int) bool {
	for _, id := range ids {
		if id < 0 {
			return false
		}
	}
	return true
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// AuthBytes is what a provider signs to answer a hello: a tag, then the
// nonce, gateway key and chain id, each length-prefixed so no two inputs
// share bytes.
func AuthBytes(nonce []byte, gateway keys.PublicKey, chainID string) []byte {
	b := []byte("idlegrid/provider-auth/v1\n")
	for _, part := range [][]byte{nonce, gateway[:], []byte(chainID)} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(part)))
		b = append(b, part...)
	}
	return b
}

// Receipt assembles the receipt a provider signs at the end of a job. Both
// sides build it from the same inputs: the gateway with the response hash of
// what it relayed, so a provider that signs anything else fails to verify.
func (t *Terms) Receipt(provider keys.PublicKey, usage Usage, responseHash receipt.Hash, endUnixMs int64) (receipt.Receipt, error) {
	amount, err := receipt.ComputeAmount(usage.PromptTokens, usage.CompletionTokens, t.PricePromptPerMTok, t.PriceCompletionPerMTok)
	if err != nil {
		return receipt.Receipt{}, err
	}
	return receipt.Receipt{
		Version:                receipt.Version,
		ChainID:                t.ChainID,
		RequestID:              t.RequestID,
		Gateway:                t.Gateway,
		Provider:               provider,
		Consumer:               t.Consumer,
		Model:                  t.Model,
		ModelDigest:            t.ModelDigest,
		PromptTokens:           usage.PromptTokens,
		CompletionTokens:       usage.CompletionTokens,
		PricePromptPerMTok:     t.PricePromptPerMTok,
		PriceCompletionPerMTok: t.PriceCompletionPerMTok,
		Amount:                 amount,
		RequestHash:            t.RequestHash,
		ResponseHash:           responseHash,
		StartUnixMs:            t.StartUnixMs,
		EndUnixMs:              endUnixMs,
	}, nil
}

// CheckpointReceipt is the partial receipt a Checkpoint signs: the job's
// terms, the checkpoint's prompt and completion tokens and end time, and
// the sha256 of the deltas sent up to the checkpoint's chunk.
func (t *Terms) CheckpointReceipt(provider keys.PublicKey, cp *Checkpoint, responseHash receipt.Hash) (receipt.Receipt, error) {
	return t.Receipt(provider, Usage{PromptTokens: cp.PromptTokens, CompletionTokens: cp.CompletionTokens}, responseHash, cp.EndUnixMs)
}
