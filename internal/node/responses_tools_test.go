package node_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"

	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// TestResponsesToolRoundTrip: function tools on /v1/responses. The
// simulator's call comes back as a function_call item (streamed and not)
// with the receipt's response hash over it; the call and its output sent
// back as input items, or only the output after previous_response_id,
// give exactly the simulator's text answer to the whole conversation.
func TestResponsesToolRoundTrip(t *testing.T) {
	tn := startNet(t, netOptions{})
	c := openaiClient(tn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	seed := option.WithJSONSet("seed", 7)
	var params map[string]any
	if err := json.Unmarshal([]byte(weatherParams), &params); err != nil {
		t.Fatal(err)
	}
	tool := responses.ToolParamOfFunction("get_weather", params, false)
	tool.OfFunction.Description = openai.String("Current weather in a city")
	ask := responses.ResponseNewParams{Model: "sim", MaxOutputTokens: openai.Int(40), Temperature: openai.Float(0),
		Tools: []responses.ToolUnionParam{tool}, Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("What is the weather in Paris?")}}

	first := chatReq("What is the weather in Paris?", 40)
	first.Tools = []protocol.Tool{{Type: "function", Function: protocol.ToolFunction{Name: "get_weather", Description: "Current weather in a city", Parameters: json.RawMessage(weatherParams)}}}
	_, wantCalls, wantRes := directAnswer(t, tn, first)
	if len(wantCalls) != 1 {
		t.Fatalf("the simulator made %d calls, want 1", len(wantCalls))
	}
	checkCall := func(t *testing.T, r responses.Response) responses.ResponseFunctionToolCall {
		t.Helper()
		var calls []responses.ResponseFunctionToolCall
		for _, item := range r.Output {
			if item.Type == "function_call" {
				calls = append(calls, item.AsFunctionCall())
			}
		}
		if len(calls) != 1 || calls[0].CallID != wantCalls[0].ID || calls[0].Name != "get_weather" || calls[0].Arguments != wantCalls[0].Arguments {
			t.Fatalf("output %+v, want the call %+v", r.Output, wantCalls[0])
		}
		if r.Usage.OutputTokens != int64(wantRes.Usage.CompletionTokens) {
			t.Errorf("usage %+v, provider counted %+v", r.Usage, wantRes.Usage)
		}
		if rc := fetchReceipt(t, tn, r.ID); rc.ResponseHash != answerHash("", wantCalls) {
			t.Errorf("receipt %+v: want the hash of the call", rc)
		}
		return calls[0]
	}

	res, err := c.Responses.New(ctx, ask, seed)
	if err != nil {
		t.Fatal(err)
	}
	call := checkCall(t, *res)
	stream := c.Responses.NewStreaming(ctx, ask, seed)
	var streamed responses.Response
	var args string
	for stream.Next() {
		ev := stream.Current()
		switch ev.Type {
		case "response.function_call_arguments.done":
			args = ev.Arguments
		case "response.completed":
			streamed = ev.Response
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	checkCall(t, streamed)
	if args != wantCalls[0].Arguments {
		t.Errorf("streamed arguments %q, want %q", args, wantCalls[0].Arguments)
	}

	second := first
	second.Messages = append(second.Messages,
		protocol.ChatMessage{Role: "assistant", ToolCalls: wantCalls},
		protocol.ChatMessage{Role: "tool", Content: `{"temperature": 21}`, ToolCallID: call.CallID, ToolName: "get_weather"})
	wantText, noCalls, wantRes2 := directAnswer(t, tn, second)
	if len(noCalls) != 0 || wantText == "" {
		t.Fatalf("the simulator answered a tool result with %d calls and %q", len(noCalls), wantText)
	}
	output := responses.ResponseInputItemParamOfFunctionCallOutput(`{"temperature": 21}`)
	output.OfFunctionCallOutput.CallID = openai.String(call.CallID)
	answer := ask
	answer.Input = responses.ResponseNewParamsInputUnion{OfInputItemList: responses.ResponseInputParam{
		responses.ResponseInputItemParamOfMessage("What is the weather in Paris?", responses.EasyInputMessageRoleUser),
		responses.ResponseInputItemParamOfFunctionCall(call.Arguments, call.CallID, call.Name),
		output,
	}}
	continued := ask
	continued.PreviousResponseID = openai.String(res.ID)
	continued.Input = responses.ResponseNewParamsInputUnion{OfInputItemList: responses.ResponseInputParam{output}}
	for name, p := range map[string]responses.ResponseNewParams{"whole conversation": answer, "previous_response_id": continued} {
		r, err := c.Responses.New(ctx, p, seed)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if r.OutputText() != wantText || len(r.Output) != 1 || r.Usage.InputTokens != int64(wantRes2.Usage.PromptTokens) {
			t.Fatalf("%s: %q (%d items, usage %+v), want %q (prompt %d)", name, r.OutputText(), len(r.Output), r.Usage, wantText, wantRes2.Usage.PromptTokens)
		}
		if rc := fetchReceipt(t, tn, r.ID); rc.ResponseHash != receipt.Sum([]byte(wantText)) {
			t.Errorf("%s: receipt %+v", name, rc)
		}
	}
}
