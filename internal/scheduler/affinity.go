package scheduler

import (
	"hash"
	"hash/fnv"
	"strings"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// Affinity is what a request shares with earlier ones: the prefixes of its
// prompt and an explicit session. The provider that last took any of them
// most likely still has that prefix in its cache.
type Affinity struct {
	// Prefixes are hashes of the prompt's prefixes, longest first. They end
	// at message boundaries and every affinityBlock bytes, and are at least
	// Config.MinAffinityBytes long.
	Prefixes []uint64
	// Session is the hash of an explicit session id; 0 when there is none.
	Session uint64
}

// affinityBlock is the spacing of prefix boundaries inside long messages
// and prompts, so that two prompts sharing a long document but not a
// message boundary still share prefixes.
const affinityBlock = 1024

// maxAffinityPrefixes bounds the prefixes kept per request (the longest
// ones): an 8 MiB prompt must not write thousands of table entries.
const maxAffinityPrefixes = 64

// AffinityOf computes the affinity of req. session is an explicit session
// id ("" for none).
//
// The prompt is hashed as one stream: for chat, each message's role and
// content; for generate, the system prompt and then the prompt. The model
// name (without ":latest") seeds the hash, since a cache belongs to one
// model.
func (s *Scheduler) AffinityOf(req *protocol.Request, session string) Affinity {
	model := strings.TrimSuffix(req.Model, ":latest")
	var a Affinity
	if session != "" {
		h := fnv.New64a()
		h.Write([]byte("idlegrid-session\x00" + model + "\x00" + session))
		a.Session = nonZero(h.Sum64())
	}
	ph := &prefixHasher{h: fnv.New64a(), min: s.cfg.MinAffinityBytes}
	ph.h.Write([]byte("idlegrid-prefix\x00" + model + "\x00" + string(req.Kind) + "\x00"))
	switch req.Kind {
	case protocol.KindChat:
		for _, m := range req.Messages {
			ph.write(m.Role)
			ph.write("\x00")
			ph.write(m.Content)
			ph.write("\x00")
			ph.mark()
		}
	default:
		if req.Raw {
			ph.write("\x01")
		} else {
			ph.write(req.System)
			ph.write("\x00")
			ph.mark()
		}
		ph.write(req.Prompt)
		ph.mark()
	}
	n := len(ph.marks)
	a.Prefixes = make([]uint64, 0, min(n, maxAffinityPrefixes))
	for i := n - 1; i >= 0 && len(a.Prefixes) < maxAffinityPrefixes; i-- {
		a.Prefixes = append(a.Prefixes, ph.marks[i])
	}
	return a
}

// keys lists the affinity keys to look up, most specific first.
func (a *Affinity) keys() []uint64 {
	if a.Session == 0 {
		return a.Prefixes
	}
	return append(a.Prefixes[:len(a.Prefixes):len(a.Prefixes)], a.Session)
}

func nonZero(h uint64) uint64 {
	if h == 0 {
		return 1
	}
	return h
}

// prefixHasher hashes a stream and records the hash at every boundary at
// least min bytes in.
type prefixHasher struct {
	h     hash.Hash64
	pos   int
	min   int
	last  int // position of the last mark
	marks []uint64
}

// write hashes s, marking every affinityBlock boundary it crosses.
func (p *prefixHasher) write(s string) {
	for s != "" {
		next := (p.pos/affinityBlock + 1) * affinityBlock
		n := min(len(s), next-p.pos)
		p.h.Write([]byte(s[:n]))
		p.pos += n
		s = s[n:]
		if p.pos == next {
			p.mark()
		}
	}
}

// mark records the hash of the stream so far.
func (p *prefixHasher) mark() {
	if p.pos < p.min || p.pos == p.last && len(p.marks) > 0 {
		return
	}
	p.last = p.pos
	p.marks = append(p.marks, nonZero(p.h.Sum64()))
}

// affinityTable remembers which provider last took each affinity key. It
// approximates an LRU with two generations: lookups that hit the old
// generation move the entry to the new one, and when the new one is full
// the old one is dropped. Memory stays within twice the generation size.
type affinityTable struct {
	cur, old map[uint64]keys.PublicKey
	gen      int
}

func newAffinityTable(entries int) *affinityTable {
	gen := max(entries/2, 1)
	return &affinityTable{cur: make(map[uint64]keys.PublicKey), old: map[uint64]keys.PublicKey{}, gen: gen}
}

func (t *affinityTable) get(k uint64) (keys.PublicKey, bool) {
	if v, ok := t.cur[k]; ok {
		return v, true
	}
	v, ok := t.old[k]
	if ok {
		delete(t.old, k)
		t.put(k, v)
	}
	return v, ok
}

func (t *affinityTable) put(k uint64, v keys.PublicKey) {
	t.cur[k] = v
	if len(t.cur) >= t.gen {
		t.old, t.cur = t.cur, make(map[uint64]keys.PublicKey)
	}
}

func (t *affinityTable) len() int { return len(t.cur) + len(t.old) }
