package gateway

import (
	"container/list"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/idlegrid/idlegrid/internal/gateway/api/openai"
	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/gateway/sink"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// Defaults of Config.ResponseMemory and Config.ResponseTTL.
const (
	DefaultResponseMemory = 64 << 20
	DefaultResponseTTL    = time.Hour
)

// handleResponses serves /v1/responses: the OpenAI generation path, plus
// the conversations it keeps so that a later request can continue one
// with previous_response_id.
func (g *Gateway) handleResponses(w http.ResponseWriter, r *http.Request) {
	key, body, ok := g.admit(w, r, apierr.WriteOpenAI)
	if !ok {
		return
	}
	p, e := openai.ParseResponses(body)
	if e != nil {
		apierr.WriteOpenAI(w, e)
		return
	}
	ro := p.Responses
	if ro.PreviousResponseID != "" {
		history, found := g.kept.recall(ro.PreviousResponseID, key.Account)
		if !found {
			apierr.WriteOpenAI(w, previousNotFound(ro.PreviousResponseID, g.kept.ttl))
			return
		}
		p.Continue(history)
	}
	ro.Store = ro.Store && g.kept.max > 0
	newSink := openai.NewResponsesSink
	if ro.Store {
		newSink = func(w http.ResponseWriter, p openai.Params) sink.Sink {
			return &keepingSink{Sink: openai.NewResponsesSink(w, p), p: p, account: key.Account, memory: &g.kept}
		}
	}
	g.generateOpenAI(w, r, key, body, p, newSink, "resp_")
}

// previousNotFound is OpenAI's error for a previous_response_id it does
// not have, with what this gateway keeps.
func previousNotFound(id string, ttl time.Duration) *apierr.Error {
	e := apierr.Invalid("previous_response_id", "Previous response with id '%s' not found. This gateway keeps the responses it served, for your account only, for %s and within a memory bound, and forgets them when it restarts; send the whole conversation in 'input' instead.", id, ttl)
	e.Code = "previous_response_not_found"
	return e
}

// keepingSink passes a response on and, once it ended well, keeps its
// conversation under the response id for the account that asked.
type keepingSink struct {
	sink.Sink
	p       openai.Params
	account keys.Address
	memory  *responseMemory
	id      string
	text    strings.Builder
	calls   []protocol.ToolCall
}

func (s *keepingSink) Begin(m sink.Meta) error {
	s.id = m.RequestID
	return s.Sink.Begin(m)
}

func (s *keepingSink) Delta(d sink.Delta) error {
	s.text.WriteString(d.Text)
	s.calls = append(s.calls, d.ToolCalls...)
	return s.Sink.Delta(d)
}

func (s *keepingSink) End(f sink.Final) error {
	if err := s.Sink.End(f); err != nil {
		return err
	}
	s.memory.keep(s.id, s.account, s.p.Conversation(s.text.String(), s.calls))
	return nil
}

// responseMemory keeps the conversations of recent responses for
// previous_response_id: at most max bytes of text, each for ttl, the
// oldest forgotten first. It lives in the gateway's memory only, so a
// restart or another gateway behind the same address does not know them.
type responseMemory struct {
	max int64
	ttl time.Duration
	now func() time.Time

	mu    sync.Mutex
	bytes int64
	// order holds *keptResponse, oldest (and so first to expire) first.
	order *list.List
	byID  map[string]*list.Element
}

type keptResponse struct {
	id      string
	account keys.Address
	msgs    []protocol.ChatMessage
	size    int64
	expires time.Time
}

func newResponseMemory(max int64, ttl time.Duration, now func() time.Time) responseMemory {
	return responseMemory{max: max, ttl: ttl, now: now, order: list.New(), byID: map[string]*list.Element{}}
}

// keptOverhead is what a kept message costs beyond its text, so that many
// empty messages still count against the bound.
const keptOverhead = 64

// keep remembers msgs as response id's conversation, for account only.
func (m *responseMemory) keep(id string, account keys.Address, msgs []protocol.ChatMessage) {
	size := int64(len(id))
	for _, msg := range msgs {
		size += int64(len(msg.Role)+len(msg.Content)) + keptOverhead
	}
	if size > m.max {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, dup := m.byID[id]; dup {
		return // ids are random: a repeat is a bug, and the first stays
	}
	m.byID[id] = m.order.PushBack(&keptResponse{id: id, account: account, msgs: msgs, size: size, expires: m.now().Add(m.ttl)})
	m.bytes += size
	m.forget()
}

// recall returns response id's conversation when account kept it.
// Another account's id is as unknown as one never kept.
func (m *responseMemory) recall(id string, account keys.Address) ([]protocol.ChatMessage, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.forget()
	el, ok := m.byID[id]
	if !ok {
		return nil, false
	}
	k := el.Value.(*keptResponse)
	if k.account != account {
		return nil, false
	}
	return append([]protocol.ChatMessage(nil), k.msgs...), true
}

// forget drops expired responses, then the oldest while over the bound.
func (m *responseMemory) forget() {
	now := m.now()
	for el := m.order.Front(); el != nil; el = m.order.Front() {
		k := el.Value.(*keptResponse)
		if m.bytes <= m.max && now.Before(k.expires) {
			return
		}
		m.order.Remove(el)
		delete(m.byID, k.id)
		m.bytes -= k.size
	}
}
