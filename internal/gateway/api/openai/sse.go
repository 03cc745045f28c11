package openai

import (
	"net/http"

	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/gateway/sink"
)

// responder writes one response, either as server-sent events or as one
// JSON body, and remembers whether headers are out.
type responder struct {
	w  http.ResponseWriter
	rc *http.ResponseController
	// sent is true once the status line is written; after that, errors
	// must travel inside the body.
	sent bool
}

func newResponder(w http.ResponseWriter) responder {
	return responder{w: w, rc: http.NewResponseController(w)}
}

// setRequestID sets X-Request-Id before anything is written, so that it is
// on success and error responses alike.
func (r *responder) setRequestID(id string) {
	if id != "" {
		r.w.Header().Set("X-Request-Id", id)
	}
}

// startEvents sends the status and SSE headers at once, so that clients and
// proxies see the stream open before the first token.
func (r *responder) startEvents() error {
	h := r.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	// nginx buffers proxied responses unless told not to, which would hold
	// tokens back until the buffer fills.
	h.Set("X-Accel-Buffering", "no")
	r.w.WriteHeader(http.StatusOK)
	r.sent = true
	return r.flush()
}

// event writes one "data: <json>\n\n" event and flushes it.
func (r *responder) event(v any) error {
	b, err := sink.Marshal(v)
	if err != nil {
		return err
	}
	return r.data(b)
}

// namedEvent writes one "event: <name>\ndata: <json>\n\n" event, the form
// of the Responses API's stream, and flushes it.
func (r *responder) namedEvent(name string, v any) error {
	b, err := sink.Marshal(v)
	if err != nil {
		return err
	}
	return r.write("event: "+name+"\n", b)
}

func (r *responder) data(b []byte) error { return r.write("", b) }

// write sends one event: head (an "event:" line or nothing), then b as its
// data line.
func (r *responder) write(head string, b []byte) error {
	buf := make([]byte, 0, len(head)+len(b)+8)
	buf = append(buf, head...)
	buf = append(buf, "data: "...)
	buf = append(buf, b...)
	buf = append(buf, "\n\n"...)
	if _, err := r.w.Write(buf); err != nil {
		return err
	}
	return r.flush()
}

// done ends a successful stream the way OpenAI does.
func (r *responder) done() error { return r.data([]byte("[DONE]")) }

// body writes a whole JSON response.
func (r *responder) body(status int, v any) error {
	b, err := sink.Marshal(v)
	if err != nil {
		return err
	}
	r.w.Header().Set("Content-Type", "application/json")
	r.w.WriteHeader(status)
	r.sent = true
	if _, err := r.w.Write(append(b, '\n')); err != nil {
		return err
	}
	return r.flush()
}

// fail reports e: as a plain error response while nothing is written, else
// as an error event. openai-go and openai-python turn an event with an
// "error" member into an error from the stream; the stream then ends
// without [DONE] so that no client mistakes it for a complete answer.
func (r *responder) fail(e *apierr.Error) {
	if !r.sent {
		apierr.WriteOpenAI(r.w, e)
		r.sent = true
		return
	}
	// The consumer may already be gone; there is nobody left to tell.
	_ = r.event(e.OpenAI())
}

// flush pushes buffered bytes to the consumer. A writer that cannot flush
// (a middleware that hides http.Flusher) still delivers everything at the
// end, so that is not an error; a failed flush is (the consumer is gone).
func (r *responder) flush() error {
	return sink.Flush(r.rc)
}
