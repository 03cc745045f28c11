package protocol

import (
	"bytes"
	"errors"
	"sort"
	"testing"
)

// frameOf encodes msgs into one frame, as the link's writer batches them.
func frameOf(tb testing.TB, msgs ...*Message) []byte {
	tb.Helper()
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = Encode(b, m); err != nil {
			tb.Fatal(err)
		}
	}
	return b
}

// collect decodes a frame and returns what fn was called with.
func collect(frame []byte) ([]*Message, error) {
	var got []*Message
	err := DecodeFrame(frame, func(m *Message) error {
		got = append(got, m)
		return nil
	})
	return got, err
}

// sortedGood returns goodMessages in a fixed order.
func sortedGood(tb testing.TB) []*Message {
	good := goodMessages(tb)
	names := make([]string, 0, len(good))
	for n := range good {
		names = append(names, n)
	}
	sort.Strings(names)
	msgs := make([]*Message, len(names))
	for i, n := range names {
		msgs[i] = good[n]
	}
	return msgs
}

func TestFrameRoundTrip(t *testing.T) {
	msgs := sortedGood(t)
	// Several chunks of one job, as a busy connection batches them.
	for i := range 5 {
		c := testChunk()
		c.Seq = uint64(i)
		msgs = append(msgs, &Message{Type: TypeChunk, Chunk: c})
	}
	frame := frameOf(t, msgs...)
	got, err := collect(frame)
	if err != nil {
		t.Fatalf("DecodeFrame: %v", err)
	}
	if len(got) != len(msgs) {
		t.Fatalf("decoded %d messages, encoded %d", len(got), len(msgs))
	}
	for i := range msgs {
		if !equalMessages(got[i], msgs[i]) {
			t.Errorf("message %d (%s) changed:\n got %s\nwant %s", i, msgs[i].Type, mustEncode(t, got[i]), mustEncode(t, msgs[i]))
		}
	}
}

func TestFrameBlankLines(t *testing.T) {
	ping := frameOf(t, &Message{Type: TypePing, Ping: &Ping{Seq: 1}})
	line := bytes.TrimSuffix(ping, []byte("\n"))
	tests := map[string]struct {
		frame []byte
		n     int
	}{
		"empty frame":               {nil, 0},
		"only newlines":             {[]byte("\n\n\n"), 0},
		"only whitespace":           {[]byte(" \t\r\n \n"), 0},
		"leading blank lines":       {append([]byte("\n\n"), ping...), 1},
		"blank lines between":       {bytes.Join([][]byte{line, {}, []byte("   "), line}, []byte("\n")), 2},
		"no final newline":          {line, 1},
		"CRLF line ends":            {bytes.Join([][]byte{line, line, {}}, []byte("\r\n")), 2},
		"indented message":          {append([]byte("  \t"), ping...), 1},
		"trailing blank lines":      {append(bytes.Clone(ping), "\n\n \n"...), 1},
		"many messages, no newline": {bytes.Join([][]byte{line, line, line}, []byte("\n")), 3},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := collect(tt.frame)
			if err != nil {
				t.Fatalf("DecodeFrame: %v", err)
			}
			if len(got) != tt.n {
				t.Fatalf("decoded %d messages, want %d", len(got), tt.n)
			}
		})
	}
}

func TestFrameStopsAtBadMessage(t *testing.T) {
	first := &Message{Type: TypeChunk, Chunk: testChunk()}
	third := &Message{Type: TypePing, Ping: &Ping{Seq: 9}}
	for name, bad := range map[string]string{
		"invalid message": `{"type":"chunk","chunk":{"id":"","seq":1}}`,
		"not JSON":        `{"type":"chunk",`,
		"unknown type":    `{"type":"teleport"}`,
		"two values":      `{"type":"resume"}{"type":"resume"}`,
	} {
		t.Run(name, func(t *testing.T) {
			frame := frameOf(t, first)
			frame = append(frame, bad+"\n"...)
			frame = append(frame, frameOf(t, third)...)
			got, err := collect(frame)
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("DecodeFrame: %v, want ErrProtocol", err)
			}
			if len(got) != 1 || !equalMessages(got[0], first) {
				t.Fatalf("fn was called with %d messages, want only the first", len(got))
			}
		})
	}
}

func TestFrameStopsAtCallbackError(t *testing.T) {
	frame := frameOf(t, &Message{Type: TypePing, Ping: &Ping{}}, &Message{Type: TypeResume}, &Message{Type: TypeResume})
	stop := errors.New("unknown job")
	calls := 0
	err := DecodeFrame(frame, func(*Message) error {
		calls++
		if calls == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 2 {
		t.Fatalf("DecodeFrame returned %v after %d calls, want the callback's error after 2", err, calls)
	}
}

// TestFrameDoesNotAliasInput: messages handed to fn must not change when the
// caller reuses its read buffer for the next frame.
func TestFrameDoesNotAliasInput(t *testing.T) {
	frame := frameOf(t, &Message{Type: TypeChunk, Chunk: testChunk()}, &Message{Type: TypeHello, Hello: &Hello{Nonce: testNonce(), ChainID: "c"}})
	got, err := collect(frame)
	if err != nil {
		t.Fatal(err)
	}
	want := []*Message{cloneNormalized(got[0]), cloneNormalized(got[1])}
	for i := range frame {
		frame[i] = 'x'
	}
	for i := range got {
		if !equalMessages(got[i], want[i]) {
			t.Fatalf("message %d changed when the frame buffer was overwritten", i)
		}
	}
}

// FuzzDecodeFrame: DecodeFrame never panics, fails only with ErrProtocol
// (fn here never fails), hands fn only valid messages, and every message it
// hands over survives a second trip over the wire unchanged.
func FuzzDecodeFrame(f *testing.F) {
	// Seeds stay small: the fuzzer minimizes every new input, and the
	// messages at the size limits (tens of KB) make that crawl.
	var small []*Message
	for _, m := range sortedGood(f) {
		if b := frameOf(f, m); len(b) <= 1024 {
			f.Add(b)
			small = append(small, m)
		}
	}
	f.Add(frameOf(f, small...))
	f.Add([]byte("\n \r\n"))
	f.Add([]byte(`{"type":"chunk","chunk":{"id":"j","seq":0,"delta":"\ud83e","tokens":1}}`))
	f.Add([]byte(`{"type":"chunk","chunk":{"id":"j","seq":0,"delta":"","tool_calls":[{"id":"c","name":"f","arguments":"{\"a\":1}"}]}}`))
	f.Add([]byte(`{"type":"job","job":{"id":"j","request":{"kind":"chat","model":"m","options":{},"tools":[{"type":"function","function":{"name":"f","parameters":{}}}],"tool_choice":"required","format":"json","messages":[{"role":"tool","content":"x","tool_call_id":"c","tool_calls":[{"name":"f","arguments":"{}"}]}]},"deadline_unix_ms":1,"terms":{"request_id":"j"}}}`))
	f.Add([]byte(`{"type":"ping","ping":{"seq":1},"PING":null}`))
	f.Fuzz(func(t *testing.T, frame []byte) {
		var got []*Message
		err := DecodeFrame(frame, func(m *Message) error {
			if err := m.Validate(); err != nil {
				t.Fatalf("fn got an invalid message: %v", err)
			}
			got = append(got, m)
			return nil
		})
		if err != nil && !errors.Is(err, ErrProtocol) {
			t.Fatalf("error %v does not wrap ErrProtocol", err)
		}
		for _, m := range got {
			b, err := Encode(nil, m)
			if err != nil {
				t.Fatalf("cannot re-encode a decoded message: %v", err)
			}
			back, err := Decode(b)
			if err != nil {
				t.Fatalf("re-encoded message %s does not decode: %v", b, err)
			}
			if !equalMessages(back, m) {
				t.Fatalf("second trip changed the message: %s", b)
			}
			if again := mustEncode(t, back); !bytes.Equal(again, b) {
				t.Fatalf("encoding is not stable:\n%s\n%s", b, again)
			}
		}
	})
}

// BenchmarkChunkRoundTrip is the hot path: every generated token crosses the
// connection as a chunk that the provider encodes and the gateway decodes.
func BenchmarkChunkRoundTrip(b *testing.B) {
	m := &Message{Type: TypeChunk, Chunk: &Chunk{ID: "chatcmpl-01HZX3K9Q7WJ5V", Seq: 1234, Delta: " the", Tokens: 1}}
	var buf []byte
	size := 0
	b.ReportAllocs()
	for b.Loop() {
		var err error
		buf, err = Encode(buf[:0], m)
		if err != nil {
			b.Fatal(err)
		}
		size = len(buf)
		if err := DecodeFrame(buf, func(*Message) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(size))
	b.ReportMetric(float64(size), "wire-bytes/chunk")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "chunks/s")
}

// BenchmarkChunkFrame decodes a batched frame of 32 chunks (a busy stream).
func BenchmarkChunkFrame(b *testing.B) {
	var frame []byte
	for i := range 32 {
		frame = append(frame, frameOf(b, &Message{Type: TypeChunk, Chunk: &Chunk{ID: "chatcmpl-01HZX3K9Q7WJ5V", Seq: uint64(i), Delta: " the", Tokens: 1}})...)
	}
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if err := DecodeFrame(frame, func(*Message) error { n++; return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "chunks/s")
}
