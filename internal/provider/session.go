package provider

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// session is one live connection to the gateway.
type session struct {
	agent *Agent
	link  linkSender
	hello *protocol.Hello

	mu sync.Mutex
	// caps is what the session advertised last; its Models slice is
	// replaced, never changed in place, so a copy read under mu stays valid.
	caps protocol.Capabilities
	jobs map[string]context.CancelFunc
	wg   sync.WaitGroup
}

// linkSender is the part of *link.Link a session uses.
type linkSender interface {
	Send(ctx context.Context, m *protocol.Message) error
}

func (s *session) wait() { s.wg.Wait() }

func (s *session) sendState(paused bool, reason string) {
	m := &protocol.Message{Type: protocol.TypeResume}
	if paused {
		m = &protocol.Message{Type: protocol.TypePause, Pause: &protocol.Pause{Reason: reason}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.link.Send(ctx, m); err != nil {
		s.agent.log.Warn("could not tell the gateway about pause state", "err", err)
	}
}

// handle runs on the link's reader and must not block.
func (s *session) handle(ctx context.Context, m *protocol.Message) error {
	switch m.Type {
	case protocol.TypeJob:
		s.start(ctx, m.Job)
	case protocol.TypeCancel:
		s.mu.Lock()
		cancel := s.jobs[m.Cancel.ID]
		s.mu.Unlock()
		if cancel != nil {
			cancel()
		}
	default:
		return fmt.Errorf("%w: unexpected %s from gateway", protocol.ErrProtocol, m.Type)
	}
	return nil
}

func (s *session) start(ctx context.Context, job *protocol.Job) {
	s.mu.Lock()
	_, dup := s.jobs[job.ID]
	busy := len(s.jobs) >= s.caps.Slots
	var cancel context.CancelFunc
	if !dup && !busy {
		deadline := time.UnixMilli(job.DeadlineUnixMs)
		if job.DeadlineUnixMs <= 0 {
			deadline = time.Now().Add(time.Hour)
		}
		var jctx context.Context
		jctx, cancel = context.WithDeadline(ctx, deadline)
		s.jobs[job.ID] = cancel
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.run(ctx, jctx, job)
		}()
	}
	s.mu.Unlock()
	switch {
	case dup:
		// The gateway reused a running id: refuse the second without
		// touching the first.
		s.agent.log.Warn("gateway sent a duplicate job id", "request_id", job.ID)
	case busy:
		s.fail(ctx, job.ID, protocol.CodeBusy, "all slots are busy")
	}
}

// run executes one job; ctx is the session's, jctx the job's.
func (s *session) run(ctx, jctx context.Context, job *protocol.Job) {
	a := s.agent
	a.active.Add(1)
	defer a.active.Add(-1)
	// release frees the job's slot. It must run before the job's last
	// message (done or error) is sent: the gateway frees its slot when that
	// message arrives and may send the next job at once, which would
	// otherwise find this one still holding the slot and be refused as busy.
	released := false
	release := func() {
		if released {
			return
		}
		released = true
		s.mu.Lock()
		if cancel := s.jobs[job.ID]; cancel != nil {
			cancel()
			delete(s.jobs, job.ID)
		}
		s.mu.Unlock()
	}
	defer release()
	if code, msg := s.checkTerms(job); code != "" {
		a.failed.Add(1)
		release()
		s.fail(ctx, job.ID, code, msg)
		return
	}
	if job.Request.Kind == protocol.KindEmbed {
		s.runEmbed(ctx, jctx, job, release) // embed.go
		return
	}
	started := time.Now()
	var firstToken time.Duration
	hash := sha256.New()
	var seq uint64
	cp := s.checkpointer(job, started)
	// Backends may split a multi-byte character across deltas; JSON would
	// turn each half into U+FFFD and the gateway's response hash would no
	// longer match the signed one. So incomplete characters wait for the
	// rest, and anything still invalid is replaced here, before hashing.
	var pending []byte
	heldTokens := 0 // tokens of text held back, reported with the chunk that carries it
	gotLogprobs := false
	calls := 0 // tool calls sent, for the ids of calls the backend leaves unnamed
	send := func(text string, tokens int, logprobs []protocol.TokenLogprob, toolCalls []protocol.ToolCall) error {
		gotLogprobs = gotLogprobs || len(logprobs) > 0
		if seq == 0 {
			firstToken = time.Since(started)
		}
		for i := range toolCalls {
			if toolCalls[i].ID == "" {
				toolCalls[i].ID = toolCallID(job.ID, calls)
			}
			calls++
		}
		c := &protocol.Chunk{ID: job.ID, Seq: seq, Delta: text, Tokens: tokens, Logprobs: logprobs, ToolCalls: toolCalls}
		protocol.HashChunk(hash, c)
		cp.sign(c, hash)
		seq++
		return s.link.Send(jctx, &protocol.Message{Type: protocol.TypeChunk, Chunk: c})
	}
	emit := func(d backend.Delta) error {
		var complete []byte
		complete, pending = splitIncomplete(append(pending, d.Text...))
		text := strings.ToValidUTF8(string(complete), "\uFFFD")
		if text == "" && len(d.Logprobs) == 0 && len(d.ToolCalls) == 0 {
			heldTokens += d.Tokens
			return nil
		}
		tokens := heldTokens + d.Tokens
		heldTokens = 0
		return send(text, tokens, d.Logprobs, slices.Clone(d.ToolCalls))
	}
	res, err := a.cfg.Backend.Generate(jctx, job.Request, emit)
	if errors.Is(err, backend.ErrNoLogprobs) {
		s.lacksLogprobs(ctx, job.Request.Model)
	}
	if err != nil {
		a.failed.Add(1)
		code := failureCode(jctx, err)
		a.log.Info("job failed", "request_id", job.ID, "model", job.Request.Model, "code", code, "err", err)
		release() // after reading jctx.Err(): release cancels jctx
		s.fail(ctx, job.ID, code, err.Error())
		return
	}
	if len(pending) > 0 {
		if err := send(strings.ToValidUTF8(string(pending), "\uFFFD"), heldTokens, nil, nil); err != nil {
			a.failed.Add(1)
			release()
			s.fail(ctx, job.ID, protocol.CodeCancelled, err.Error())
			return
		}
	}
	if job.Request.Options.Logprobs && seq > 0 && !gotLogprobs {
		s.lacksLogprobs(ctx, job.Request.Model)
	}
	end := time.Now().UnixMilli()
	// A provider clock behind the gateway's must not make an invalid receipt.
	end = max(end, job.Terms.StartUnixMs)
	var responseHash receipt.Hash
	hash.Sum(responseHash[:0])
	r, err := job.Terms.Receipt(a.cfg.Key.Public(), res.Usage, responseHash, end)
	if err != nil {
		a.failed.Add(1)
		release()
		s.fail(ctx, job.ID, protocol.CodeBackend, "cannot price the usage: "+err.Error())
		return
	}
	done := &protocol.Done{
		ID: job.ID, Chunks: seq, Usage: res.Usage, FinishReason: res.FinishReason, EndUnixMs: end, Context: res.Context,
		Timings:          protocol.Timings{FirstTokenUs: firstToken.Microseconds(), TotalUs: time.Since(started).Microseconds()},
		ReceiptSignature: receipt.SignProvider(a.cfg.Key, &r),
	}
	if done.FinishReason != "length" {
		done.FinishReason = "stop"
	}
	release()
	if err := s.link.Send(ctx, &protocol.Message{Type: protocol.TypeDone, Done: done}); err != nil {
		a.failed.Add(1)
		return
	}
	a.served.Add(1)
	a.tokens.Add(int64(res.Usage.CompletionTokens))
}

// failureCode classifies a backend error of a job whose context is jctx;
// read it before the job's release cancels jctx.
func failureCode(jctx context.Context, err error) protocol.Code {
	switch {
	case errors.Is(jctx.Err(), context.DeadlineExceeded):
		return protocol.CodeDeadline
	case jctx.Err() != nil:
		return protocol.CodeCancelled
	case errors.Is(err, backend.ErrModelNotFound):
		return protocol.CodeModelNotFound
	case errors.Is(err, backend.ErrBadRequest):
		return protocol.CodeBadRequest
	}
	return protocol.CodeBackend
}

// lacksLogprobs handles a backend that returned no log-probabilities for a
// job that asked for them: the agent says so once, and the gateway is told
// (capabilities with no_logprobs) so that it places such requests on other
// providers from now on.
func (s *session) lacksLogprobs(ctx context.Context, model string) {
	if !s.agent.noteNoLogprobs(model) {
		return
	}
	s.mu.Lock()
	caps := s.caps
	caps.Models = slices.Clone(caps.Models)
	for i := range caps.Models {
		if caps.Models[i].Name == model {
			caps.Models[i].NoLogprobs = true
		}
	}
	s.caps = caps
	s.mu.Unlock()
	if err := s.link.Send(ctx, &protocol.Message{Type: protocol.TypeCapabilities, Capabilities: &caps}); err != nil {
		s.agent.log.Warn("could not tell the gateway that the backend returns no log-probabilities", "model", model, "err", err)
	}
}

// toolCallID names the n-th tool call of a job whose backend named none:
// "call_" and 24 hex digits, unique per job and call, as OpenAI's ids look.
func toolCallID(job string, n int) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%d", job, n))
	return "call_" + hex.EncodeToString(sum[:12])
}

// splitIncomplete splits b before a trailing incomplete UTF-8 sequence.
func splitIncomplete(b []byte) (complete, tail []byte) {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return b[:i], b[i:]
			}
			break
		}
	}
	return b, nil
}

// checkTerms refuses to sign for terms this agent did not offer.
func (s *session) checkTerms(job *protocol.Job) (protocol.Code, string) {
	t := &job.Terms
	switch {
	case t.ChainID != s.hello.ChainID || t.Gateway != s.hello.GatewayKey:
		return protocol.CodeBadRequest, "job terms name another chain or gateway than the handshake"
	case t.Model != job.Request.Model:
		return protocol.CodeBadRequest, "job terms name another model than the request"
	case t.Consumer.Validate() != nil:
		return protocol.CodeBadRequest, "job terms have an invalid consumer address"
	}
	s.mu.Lock()
	models := s.caps.Models
	s.mu.Unlock()
	for _, m := range models {
		if m.Name != t.Model {
			continue
		}
		if m.Digest != t.ModelDigest {
			return protocol.CodeModelNotFound, fmt.Sprintf("model %q is served with digest %s, not %s", m.Name, m.Digest, t.ModelDigest)
		}
		if t.PricePromptPerMTok < m.PricePromptPerMTok || t.PriceCompletionPerMTok < m.PriceCompletionPerMTok {
			return protocol.CodeBadRequest, "job terms price below this provider's floor"
		}
		return "", ""
	}
	return protocol.CodeModelNotFound, fmt.Sprintf("model %q is not offered by this provider", t.Model)
}

func (s *session) fail(ctx context.Context, id string, code protocol.Code, msg string) {
	if len(msg) > protocol.MaxMessageText {
		msg = strings.ToValidUTF8(msg[:protocol.MaxMessageText], "")
	}
	_ = s.link.Send(ctx, &protocol.Message{Type: protocol.TypeError, Error: &protocol.JobError{ID: id, Code: code, Message: msg}})
}
