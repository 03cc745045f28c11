// Package ollama translates the Ollama-compatible consumer API (/api/chat,
// /api/generate, /api/tags, /api/show, /api/version) to and from idlegrid's
// one internal request type and typed event stream: ParseChat and
// ParseGenerate turn a request body into a protocol.Request, and
// NewChatSink and NewGenerateSink write a sink.Sink's events as Ollama's
// NDJSON stream or single JSON object. The gateway core owns
// authentication, model lookup, scheduling and the relay; this package owns
// only the format, so that Ollama's own clients (its Go api package, the
// ollama-python and ollama-js libraries, tools built on them) work against
// the gateway unmodified.
package ollama

import (
	"fmt"

	"github.com/idlegrid/idlegrid/internal/protocol"
)

// Params is a parsed Ollama request.
type Params struct {
	// Request is what providers run.
	Request protocol.Request
	// Stream selects NDJSON lines instead of one JSON object; Ollama
	// streams unless the request says "stream": false.
	Stream bool
	// LoadOnly marks Ollama's "load the model" call: /api/generate with an
	// empty prompt or /api/chat without messages. Nothing is generated;
	// the core answers it with WriteLoaded (after checking that the model
	// exists) instead of scheduling a job, since providers keep their own
	// models loaded.
	LoadOnly bool
	// Unload marks the LoadOnly call with keep_alive 0 that Ollama uses to
	// unload a model ("ollama stop"); WriteLoaded answers done_reason
	// "unload" so that such clients see the reply they expect.
	Unload bool
}

// outOfOrder reports a relay that broke the Begin → Delta* → End|Fail order;
// returning it makes the relay cancel the job instead of sending garbage.
func outOfOrder(call string) error {
	return fmt.Errorf("ollama sink: %s called out of order", call)
}
