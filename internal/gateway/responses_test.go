package gateway

import (
	"strings"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// TestResponseMemory: a kept conversation is recalled by its account only
// (another account's id is as unknown as a made-up one), until its time
// runs out or newer ones push it past the memory bound; one larger than
// the bound is not kept at all.
func TestResponseMemory(t *testing.T) {
	now := time.Unix(1700000000, 0)
	turn := func(text string) []protocol.ChatMessage {
		return []protocol.ChatMessage{{Role: "user", Content: text}, {Role: "assistant", Content: "ok"}}
	}
	const alice, mallory = keys.Address("idg1alice"), keys.Address("idg1mallory")
	// Room for two turns of 100 characters, not three.
	size := int64(len("resp_1") + 2*keptOverhead + len("user") + 100 + len("assistant") + 2)
	m := newResponseMemory(2*size+size/2, time.Hour, func() time.Time { return now })

	m.keep("resp_1", alice, turn(strings.Repeat("a", 100)))
	got, ok := m.recall("resp_1", alice)
	if !ok || len(got) != 2 || got[0].Content != strings.Repeat("a", 100) {
		t.Fatalf("recall by its account: %v %+v", ok, got)
	}
	got[0].Content = "changed by the caller"
	if again, _ := m.recall("resp_1", alice); again[0].Content == "changed by the caller" {
		t.Error("recall shares the kept messages with its caller")
	}
	if _, ok := m.recall("resp_1", mallory); ok {
		t.Error("another account recalled alice's conversation")
	}
	if _, ok := m.recall("resp_nope", alice); ok {
		t.Error("recalled an id never kept")
	}

	m.keep("resp_2", alice, turn(strings.Repeat("b", 100)))
	m.keep("resp_3", alice, turn(strings.Repeat("c", 100)))
	if _, ok := m.recall("resp_1", alice); ok {
		t.Error("the oldest conversation survived past the memory bound")
	}
	for _, id := range []string{"resp_2", "resp_3"} {
		if _, ok := m.recall(id, alice); !ok {
			t.Errorf("%s forgotten within the bound", id)
		}
	}
	m.keep("resp_big", alice, turn(strings.Repeat("x", 1000)))
	if _, ok := m.recall("resp_big", alice); ok {
		t.Error("kept a conversation larger than the whole memory")
	}
	if _, ok := m.recall("resp_3", alice); !ok {
		t.Error("a conversation too large to keep pushed out a kept one")
	}

	now = now.Add(time.Hour)
	if _, ok := m.recall("resp_3", alice); ok {
		t.Error("recalled after its time ran out")
	}
	if m.bytes != 0 || m.order.Len() != 0 || len(m.byID) != 0 {
		t.Errorf("expired conversations still held: %d bytes, %d entries", m.bytes, m.order.Len())
	}
}
