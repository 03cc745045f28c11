package gateway

import (
	"net/http"
	"time"
)

// DefaultConsumerWriteTimeout is Config.ConsumerWriteTimeout's default:
// a consumer whose connection takes no bytes for this long is cut.
const DefaultConsumerWriteTimeout = 30 * time.Second

// consumerWriter gives every write of an answer to the consumer its own
// deadline (Config.ConsumerWriteTimeout). Without one, a consumer that
// stops reading while keeping its connection open blocks the relay in a
// write once the socket buffers fill, pinning the relay's goroutine, the
// job and its reservation until the consumer goes away. With it, the
// write fails, and the relay treats the consumer as gone: the job is
// cancelled, the provider is paid up to its latest checkpoint and the
// reservation is released (relay.go).
//
// The deadline is cleared after each write, so that the time between
// tokens (up to TokenTimeout) never counts against it, and so that it
// does not outlive the request on a kept-alive connection.
func (g *Gateway) consumerWriter(w http.ResponseWriter) http.ResponseWriter {
	return withWriteDeadline(w, g.cfg.ConsumerWriteTimeout)
}

// withWriteDeadline wraps w so that each write and flush must complete
// within timeout.
func withWriteDeadline(w http.ResponseWriter, timeout time.Duration) http.ResponseWriter {
	return &deadlineWriter{ResponseWriter: w, rc: http.NewResponseController(w), timeout: timeout}
}

type deadlineWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

func (d *deadlineWriter) Write(b []byte) (int, error) {
	defer d.arm()()
	return d.ResponseWriter.Write(b)
}

// FlushError is what http.ResponseController.Flush calls.
func (d *deadlineWriter) FlushError() error {
	defer d.arm()()
	return d.rc.Flush()
}

// Unwrap lets http.ResponseController reach the server's writer.
func (d *deadlineWriter) Unwrap() http.ResponseWriter { return d.ResponseWriter }

// arm sets the write deadline and returns the function that clears it. A
// writer without deadlines (a test recorder) is left as it is.
func (d *deadlineWriter) arm() (disarm func()) {
	if d.rc.SetWriteDeadline(time.Now().Add(d.timeout)) != nil {
		return func() {}
	}
	return func() { d.rc.SetWriteDeadline(time.Time{}) }
}
