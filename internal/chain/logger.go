package chain

import (
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/cockroachdb/pebble"
	cmtlog "github.com/cometbft/cometbft/libs/log"
)

// slogLogger bridges CometBFT's logger interface to slog. CometBFT logs
// every block, vote and peer event at info level, which would drown the rest
// of an idlegrid process, so its info becomes our debug; its errors stay
// errors (a failed handshake or a peer that cannot be dialled is something an
// operator must see), except once the node is stopping, when CometBFT
// reports every listener and connection it closes as an error.
type slogLogger struct {
	l        *slog.Logger
	stopping *atomic.Bool // nil: never stopping
}

var _ cmtlog.Logger = slogLogger{}

// orDiscard returns l, or a logger that drops everything when l is nil.
func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// Debug implements cmtlog.Logger.
func (s slogLogger) Debug(msg string, keyvals ...any) { s.l.Debug(msg, keyvals...) }

// Info implements cmtlog.Logger; CometBFT's info is chatty, so it goes to debug.
func (s slogLogger) Info(msg string, keyvals ...any) { s.l.Debug(msg, keyvals...) }

// Error implements cmtlog.Logger; during shutdown errors are expected and
// go to debug.
func (s slogLogger) Error(msg string, keyvals ...any) {
	if s.stopping != nil && s.stopping.Load() {
		s.l.Debug(msg, keyvals...)
		return
	}
	s.l.Error(msg, keyvals...)
}

// With implements cmtlog.Logger.
func (s slogLogger) With(keyvals ...any) cmtlog.Logger {
	return slogLogger{l: s.l.With(keyvals...), stopping: s.stopping}
}

// pebbleLogger sends pebble's logs to slog instead of the standard log
// package, where it would print a line for every database it reopens.
type pebbleLogger struct {
	l *slog.Logger
}

var _ pebble.Logger = pebbleLogger{}

// Infof implements pebble.Logger.
func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug(fmt.Sprintf(format, args...), "module", "pebble")
}

// Fatalf implements pebble.Logger. Pebble expects it not to return; its
// default exits the process, a panic at least unwinds and can be reported.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error(msg, "module", "pebble")
	panic("pebble: " + msg)
}
