package openai

import (
	"encoding/json"

	"github.com/idlegrid/idlegrid/internal/gateway/api/apitypes"
	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/gateway/sink"
)

// jsonNull is a literal null for members OpenAI always sends, even empty;
// a const, converted at each use, so no package-level value can be mutated.
const jsonNull = "null"

// state is where a sink is in Begin → Delta* → End|Fail.
type state int

const (
	stateNew state = iota
	stateBegun
	stateDone
)

// sinkCore is what the chat and completion sinks share: the order of the
// relay's calls, the response headers, how a stream ends and how failures
// are reported. Each sink adds only its own objects.
type sinkCore struct {
	out   responder
	p     Params
	meta  sink.Meta
	state state
}

// begin records m and, when streaming, opens the event stream.
func (c *sinkCore) begin(m sink.Meta) error {
	if c.state != stateNew {
		return outOfOrder("Begin")
	}
	c.state = stateBegun
	c.meta = m
	c.out.setRequestID(m.RequestID)
	if !c.p.Stream {
		return nil
	}
	return c.out.startEvents()
}

// delta checks that Delta comes between Begin and End.
func (c *sinkCore) delta() error {
	if c.state != stateBegun {
		return outOfOrder("Delta")
	}
	return nil
}

// end checks that End comes after Begin and marks the response done.
func (c *sinkCore) end() error {
	if c.state != stateBegun {
		return outOfOrder("End")
	}
	c.state = stateDone
	return nil
}

// endStream sends the finish_reason chunk, then the usage chunk when
// stream_options.include_usage asked for it, then [DONE].
func (c *sinkCore) endStream(finish, usage any) error {
	if err := c.out.event(finish); err != nil {
		return err
	}
	if c.p.IncludeUsage {
		if err := c.out.event(usage); err != nil {
			return err
		}
	}
	return c.out.done()
}

// Fail implements sink.Sink's Fail for both sinks; a call after End or
// another Fail is ignored.
func (c *sinkCore) Fail(e *apierr.Error) {
	if c.state == stateDone {
		return
	}
	c.state = stateDone
	c.out.fail(e)
}

// newChatChunk returns a chunk of the response m describes, with choices.
func newChatChunk(m sink.Meta, p Params, choices []apitypes.ChunkChoice) apitypes.ChatChunk {
	return apitypes.ChatChunk{Envelope: newEnvelope(m, "chat.completion.chunk"), Choices: choices, Usage: nullUsage(p)}
}

// newEnvelope is the members that open every chunk of the response m
// describes.
func newEnvelope(m sink.Meta, object string) apitypes.Envelope {
	return apitypes.Envelope{ID: m.RequestID, Object: object, Created: m.Created.Unix(), Model: m.Model, SystemFingerprint: json.RawMessage(jsonNull)}
}

// nullUsage is the usage member of every chunk but the usage chunk: null
// when stream_options.include_usage was set, else absent.
func nullUsage(p Params) apitypes.StreamUsage {
	return apitypes.StreamUsage{Asked: p.IncludeUsage}
}
