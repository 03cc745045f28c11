package openai

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	oai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/openai/openai-go/v3/shared"

	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/gateway/sink"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

func responsesInput(text string) responses.ResponseNewParamsInputUnion {
	return responses.ResponseNewParamsInputUnion{OfString: oai.String(text)}
}

// TestOpenAIGoResponses: openai-go's Responses.New decodes the response
// object, its message, usage and the incomplete reason of an answer cut by
// the token limit (the fake relay ends with "length").
func TestOpenAIGoResponses(t *testing.T) {
	client, ctx := newClient(t)
	res, err := client.Responses.New(ctx, responses.ResponseNewParams{
		Model:           "llama3.2:1b",
		Instructions:    oai.String("be brief"),
		Input:           responses.ResponseNewParamsInputUnion{OfInputItemList: responses.ResponseInputParam{responses.ResponseInputItemParamOfMessage("hi", responses.EasyInputMessageRoleUser)}},
		MaxOutputTokens: oai.Int(3),
		Temperature:     oai.Float(0.2),
		Metadata:        shared.Metadata{"trace": "t1"},
		Store:           oai.Bool(true),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.ID != "req-42" || res.Object != "response" || res.CreatedAt != 1700000000 || res.Model != "llama3.2:1b" || res.Status != responses.ResponseStatusIncomplete ||
		res.IncompleteDetails.Reason != "max_output_tokens" || res.Instructions.OfString != "be brief" || res.MaxOutputTokens != 3 || res.Temperature != 0.2 ||
		res.Metadata["trace"] != "t1" {
		t.Fatalf("response %+v", res)
	}
	if res.OutputText() != "Hello world" || len(res.Output) != 1 {
		t.Fatalf("output %+v", res.Output)
	}
	msg := res.Output[0].AsMessage()
	if msg.ID != "msg_req-42" || msg.Role != "assistant" || msg.Status != "incomplete" || len(msg.Content) != 1 || msg.Content[0].Type != "output_text" ||
		!msg.Content[0].JSON.Annotations.Valid() || len(msg.Content[0].Annotations) != 0 {
		t.Errorf("message %+v", msg)
	}
	u := res.Usage
	if u.InputTokens != 5 || u.OutputTokens != 3 || u.TotalTokens != 8 || !u.JSON.InputTokensDetails.Valid() || !u.JSON.OutputTokensDetails.Valid() {
		t.Errorf("usage %+v", u)
	}
}

// TestOpenAIGoResponsesStream: openai-go's NewStreaming decodes every
// event of the official sequence, in order, with consecutive sequence
// numbers, and the deltas spell the final text.
func TestOpenAIGoResponsesStream(t *testing.T) {
	client, ctx := newClient(t)
	stream := client.Responses.NewStreaming(ctx, responses.ResponseNewParams{Model: "m", Input: responsesInput("hi")})
	var types []string
	var text strings.Builder
	var final responses.Response
	for stream.Next() {
		ev := stream.Current()
		if ev.SequenceNumber != int64(len(types)) {
			t.Errorf("event %d (%s) has sequence_number %d", len(types), ev.Type, ev.SequenceNumber)
		}
		types = append(types, ev.Type)
		switch ev.Type {
		case "response.output_text.delta":
			text.WriteString(ev.Delta)
			if ev.ItemID != "msg_req-42" {
				t.Errorf("delta for item %q", ev.ItemID)
			}
		case "response.created":
			if ev.Response.ID != "req-42" || ev.Response.Status != responses.ResponseStatusInProgress {
				t.Errorf("created %+v", ev.Response)
			}
		case "response.output_text.done":
			if ev.Text != "Hello world" {
				t.Errorf("output_text.done text %q", ev.Text)
			}
		case "response.incomplete":
			final = ev.Response
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
		"response.output_text.delta", "response.output_text.delta", "response.output_text.delta",
		"response.output_text.done", "response.content_part.done", "response.output_item.done", "response.incomplete"}
	if strings.Join(types, " ") != strings.Join(want, " ") {
		t.Fatalf("events\n got %v\nwant %v", types, want)
	}
	if text.String() != "Hello world" || final.OutputText() != "Hello world" || final.Usage.OutputTokens != 3 || final.IncompleteDetails.Reason != "max_output_tokens" {
		t.Errorf("deltas %q, final %+v", text.String(), final)
	}
}

// TestOpenAIGoResponsesStreamFailure: a provider lost mid-answer ends the
// stream with response.failed carrying the error and the text so far; a
// failure before the provider accepted is the HTTP error itself.
func TestOpenAIGoResponsesStreamFailure(t *testing.T) {
	client, ctx := newClient(t)
	stream := client.Responses.NewStreaming(ctx, responses.ResponseNewParams{Model: modelFailMid, Input: responsesInput("hi")})
	var last responses.ResponseStreamEventUnion
	for stream.Next() {
		last = stream.Current()
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	failed := last.AsResponseFailed()
	if last.Type != "response.failed" || failed.Response.Status != responses.ResponseStatusFailed ||
		failed.Response.Error.Code != "server_error" || failed.Response.Error.Message != "the provider disconnected" || failed.Response.OutputText() != "Hel" {
		t.Fatalf("last event %s: %+v", last.Type, failed.Response)
	}

	stream = client.Responses.NewStreaming(ctx, responses.ResponseNewParams{Model: modelFailEarly, Input: responsesInput("hi")})
	for stream.Next() {
		t.Error("got an event from a failed request")
	}
	var apiErr *oai.Error
	if !errors.As(stream.Err(), &apiErr) || apiErr.StatusCode != http.StatusNotFound || apiErr.Code != "model_not_found" {
		t.Errorf("fail before Begin: %v", stream.Err())
	}
}

// TestOpenAIGoResponsesErrors: what the network cannot do is a 400 that
// openai-go surfaces with the parameter and code.
func TestOpenAIGoResponsesErrors(t *testing.T) {
	client, ctx := newClient(t)
	tests := []struct {
		name   string
		params responses.ResponseNewParams
		param  string
		code   string
	}{
		{"built-in tools", responses.ResponseNewParams{Model: "m", Input: responsesInput("hi"),
			Tools: []responses.ToolUnionParam{{OfWebSearch: &responses.WebSearchToolParam{Type: responses.WebSearchToolTypeWebSearch}}}}, "tools[0].type", "unsupported_value"},
		{"conversation", responses.ResponseNewParams{Model: "m", Input: responsesInput("hi"),
			Conversation: responses.ResponseNewParamsConversationUnion{OfString: oai.String("conv_1")}}, "conversation", codeUnsupportedParameter},
		{"json_schema without a name", responses.ResponseNewParams{Model: "m", Input: responsesInput("hi"),
			Text: responses.ResponseTextConfigParam{Format: responses.ResponseFormatTextConfigUnionParam{OfJSONSchema: &responses.ResponseFormatTextJSONSchemaConfigParam{Schema: map[string]any{"type": "object"}}}}}, "text.format.name", "invalid_value"},
	}
	for _, tt := range tests {
		_, err := client.Responses.New(ctx, tt.params)
		var apiErr *oai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest || apiErr.Param != tt.param || apiErr.Code != tt.code {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}

// toolServer answers /v1/responses with a script: "Let me check.", then
// a call of get_weather, like a provider that calls a tool.
func toolServer(t *testing.T) oai.Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		p, e := ParseResponses(body)
		if e != nil {
			apierr.WriteOpenAI(w, e)
			return
		}
		s := NewResponsesSink(w, p)
		if s.Begin(sink.Meta{RequestID: "resp_42", Model: p.Request.Model, Created: time.Unix(1700000000, 0)}) != nil {
			return
		}
		if s.Delta(sink.Delta{Text: "Let me check."}) != nil {
			return
		}
		if s.Delta(sink.Delta{ToolCalls: []protocol.ToolCall{{ID: "call_1", Name: "get_weather", Arguments: `{"city":"Paris"}`}}}) != nil {
			return
		}
		_ = s.End(sink.Final{FinishReason: "stop", Usage: protocol.Usage{PromptTokens: 9, CompletionTokens: 6}})
	}))
	t.Cleanup(srv.Close)
	return oai.NewClient(option.WithBaseURL(srv.URL+"/v1/"), option.WithAPIKey("x"), option.WithMaxRetries(0))
}

// TestOpenAIGoResponsesToolCall: a tool call reaches openai-go as a
// function_call output item after the message, streamed with
// response.function_call_arguments.delta/done between its item events.
func TestOpenAIGoResponsesToolCall(t *testing.T) {
	client := toolServer(t)
	ctx := context.Background()
	params := responses.ResponseNewParams{Model: "m", Input: responsesInput("weather in Paris?"),
		Tools: []responses.ToolUnionParam{responses.ToolParamOfFunction("get_weather", map[string]any{"type": "object"}, true)}}
	res, err := client.Responses.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Output) != 2 || res.OutputText() != "Let me check." || res.Status != responses.ResponseStatusCompleted || len(res.Tools) != 1 {
		t.Fatalf("output %+v", res.Output)
	}
	call := res.Output[1].AsFunctionCall()
	if call.Type != "function_call" || call.CallID != "call_1" || call.Name != "get_weather" || call.Arguments != `{"city":"Paris"}` || call.ID != "fc_42_0" {
		t.Errorf("call %+v", call)
	}

	stream := client.Responses.NewStreaming(ctx, params)
	var types []string
	var args string
	for stream.Next() {
		ev := stream.Current()
		types = append(types, ev.Type)
		if ev.Type == "response.function_call_arguments.done" {
			args = ev.Arguments
			if ev.OutputIndex != 1 || ev.ItemID != "fc_42_0" {
				t.Errorf("arguments done %+v", ev)
			}
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added", "response.output_text.delta",
		"response.output_text.done", "response.content_part.done", "response.output_item.done",
		"response.output_item.added", "response.function_call_arguments.delta", "response.function_call_arguments.done", "response.output_item.done", "response.completed"}
	if strings.Join(types, " ") != strings.Join(want, " ") || args != `{"city":"Paris"}` {
		t.Fatalf("events\n got %v\nwant %v (arguments %q)", types, want, args)
	}
}
