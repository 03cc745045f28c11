package ollama

import (
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// BenchmarkRelay measures how many tokens per second the client can take
// from the simulator's HTTP server when the model itself costs nothing:
// the ceiling of JSON encoding, HTTP streaming and parsing per token.
func BenchmarkRelay(b *testing.B) {
	_, c := startSim(b, endlessConfig(0))
	req := protocol.Request{Kind: protocol.KindGenerate, Model: "sim", Prompt: "bench", Options: protocol.Options{MaxTokens: 1000}}
	tokens := 0
	start := time.Now()
	for b.Loop() {
		res, err := c.Generate(b.Context(), req, func(d backend.Delta) error { return nil })
		if err != nil {
			b.Fatal(err)
		}
		tokens += int(res.Usage.CompletionTokens)
	}
	b.ReportMetric(float64(tokens)/time.Since(start).Seconds(), "tokens/s")
}
