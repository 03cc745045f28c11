package chain

import (
	"bytes"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
)

func TestCometLoggerLevels(t *testing.T) {
	var buf bytes.Buffer
	stopping := &atomic.Bool{}
	l := slogLogger{l: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), stopping: stopping}
	tests := []struct {
		name     string
		log      func()
		stopping bool
		want     string
	}{
		{"debug", func() { l.Debug("d", "k", 1) }, false, "level=DEBUG msg=d k=1"},
		{"info is chatty", func() { l.Info("i") }, false, "level=DEBUG msg=i"},
		{"error", func() { l.Error("e", "err", "boom") }, false, "level=ERROR msg=e err=boom"},
		{"with keeps fields", func() { l.With("module", "p2p").Error("w") }, false, "level=ERROR msg=w module=p2p"},
		{"error while stopping", func() { l.With("module", "p2p").Error("closed") }, true, "level=DEBUG msg=closed module=p2p"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf.Reset()
			stopping.Store(tt.stopping)
			tt.log()
			if !strings.Contains(buf.String(), tt.want) {
				t.Fatalf("logged %q, want %q", buf.String(), tt.want)
			}
		})
	}
}
