package client

import (
	"bytes"
	"errors"
	"testing"

	"github.com/idlegrid/idlegrid/internal/gateway/api/apitypes"
)

// FuzzReadChatStream: any bytes from a gateway end the stream with a
// result (nil only after [DONE]), never a panic, and never hand the
// callback more chunks than the stream has lines.
func FuzzReadChatStream(f *testing.F) {
	for _, s := range []string{
		chunk1 + chunk2 + usage + "data: [DONE]\n\n",
		chunk1 + chunk2,
		"data: [DONE]\n\n",
		`data: {"error":{"message":"x","type":"server_error","param":null,"code":null}}` + "\n\n",
		"event: x\ndata: {}\n\n: comment\n\n",
		`data: {"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{"}}]}}],"usage":{"prompt_tokens":-1}}` + "\n",
		"data: null\n\ndata: [DONE]",
		"data: {\"usage\":null,\"choices\":null}\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		lines := bytes.Count(b, []byte("\n")) + 1
		n := 0
		err := ReadChatStream(bytes.NewReader(b), 512, func(apitypes.ChatChunk) error {
			n++
			return nil
		}, 200, "id")
		if n > lines {
			t.Fatalf("%d chunks from %d lines", n, lines)
		}
		if err == nil && !bytes.Contains(b, []byte("[DONE]")) {
			t.Fatal("a stream without [DONE] ended without error")
		}
		var ae *APIError
		if errors.As(err, &ae) && ae.Status != 200 {
			t.Fatalf("error event with status %d", ae.Status)
		}
	})
}

// FuzzDecodeError: any error body gives an *APIError with the status and
// a message.
func FuzzDecodeError(f *testing.F) {
	for _, s := range []string{
		`{"error":{"message":"Incorrect API key provided.","type":"authentication_error","param":null,"code":"invalid_api_key"}}`,
		`<html>oops</html>`,
		`{"error":"model not found"}`,
		`{"error":{"message":""}}`,
		"\xff\xfe",
		``,
	} {
		f.Add(401, []byte(s))
	}
	f.Fuzz(func(t *testing.T, status int, b []byte) {
		e := decodeError(status, "id", b)
		if e.Status != status || e.Message == "" || e.RequestID != "id" {
			t.Fatalf("%+v", e)
		}
	})
}
