package client

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/idlegrid/idlegrid/internal/gateway/api/apitypes"
)

// ReadChatStream reads the server-sent events of a streamed chat
// completion from r up to [DONE], calling onChunk with each chunk. Lines
// longer than maxLine bytes are an error. An error event is an *APIError
// with status and requestID (the response's); a stream that ends without
// [DONE] is ErrTruncated. Each "data:" line is one event (the gateway
// never splits one over several lines); other lines are ignored.
func ReadChatStream(r io.Reader, maxLine int, onChunk func(apitypes.ChatChunk) error, status int, requestID string) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, min(maxLine, 64<<10)), maxLine)
	chunks := 0
	for sc.Scan() {
		data, ok := bytes.CutPrefix(sc.Bytes(), []byte("data:"))
		if !ok {
			continue
		}
		data = bytes.TrimPrefix(data, []byte(" "))
		if string(data) == "[DONE]" {
			return nil
		}
		var ev struct {
			apitypes.ChatChunk
			Error *apitypes.ErrorObject `json:"error"`
		}
		if err := json.Unmarshal(data, &ev); err != nil {
			return fmt.Errorf("stream event %d: %w", chunks+1, err)
		}
		if ev.Error != nil {
			return newAPIError(status, requestID, ev.Error)
		}
		chunks++
		if err := onChunk(ev.ChatChunk); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("stream line longer than %d bytes after %d chunks", maxLine, chunks)
		}
		return fmt.Errorf("%w: after %d chunks: %w", ErrTruncated, chunks, err)
	}
	return fmt.Errorf("%w (after %d chunks)", ErrTruncated, chunks)
}
