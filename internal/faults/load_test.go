package faults

import (
	"strings"
	"testing"
)

// TestReadStream: only a stream that ends with a finish reason and [DONE]
// counts as completed; an error event or a cut connection is a failure.
func TestReadStream(t *testing.T) {
	const (
		role  = `data: {"id":"r1","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}` + "\n\n"
		text  = `data: {"id":"r1","choices":[{"index":0,"delta":{"content":" hi"},"finish_reason":null}]}` + "\n\n"
		stop  = `data: {"id":"r1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}` + "\n\n"
		usage = `data: {"id":"r1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":7}}` + "\n\n"
		done  = "data: [DONE]\n\n"
	)
	tests := []struct {
		name      string
		body      string
		completed bool
		tokens    uint64
		failure   string
	}{
		{name: "whole answer", body: role + text + stop + usage + done, completed: true, tokens: 7},
		{name: "cut off", body: role + text, failure: "without [DONE]"},
		{name: "error event", body: role + text + `data: {"error":{"message":"provider failed"}}` + "\n\n", failure: "error event"},
		{name: "done without finish", body: role + text + done, failure: "without a finish reason"},
		{name: "chunk of another request", body: role + strings.Replace(text, "r1", "r2", 1) + stop + done, failure: "chunk id"},
		{name: "garbage", body: role + "data: {not json\n\n", failure: "undecodable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := outcome{id: "r1"}
			readStream(strings.NewReader(tt.body), &o)
			if o.completed != tt.completed || o.tokens != tt.tokens || !strings.Contains(o.failure, tt.failure) || (tt.failure == "") != (o.failure == "") {
				t.Fatalf("got completed %v, %d tokens, failure %q; want %v, %d, %q", o.completed, o.tokens, o.failure, tt.completed, tt.tokens, tt.failure)
			}
		})
	}
}
