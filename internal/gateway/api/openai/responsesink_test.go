package openai

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/idlegrid/idlegrid/internal/gateway/api/apitypes"
	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/gateway/sink"
)

// respMeta is testMeta with a /v1/responses id.
func respMeta() sink.Meta {
	m := testMeta()
	m.RequestID = "resp_abc"
	return m
}

// respSink is a responses sink that play begins with respMeta's id.
type respSink struct{ sink.Sink }

func (s respSink) Begin(m sink.Meta) error {
	m.RequestID = respMeta().RequestID
	return s.Sink.Begin(m)
}

func newRespSink(w http.ResponseWriter, p Params) sink.Sink { return respSink{NewResponsesSink(w, p)} }

func responsesParams(t *testing.T, body string) Params {
	t.Helper()
	p, e := ParseResponses([]byte(body))
	if e != nil {
		t.Fatal(e.Message)
	}
	return p
}

// respObject is the response object around status, output and usage, as
// the sink writes it for the request of TestResponsesSinkStream.
func respObject(status, completedAt, incomplete, output, usage string) string {
	return `{"id":"resp_abc","object":"response","created_at":1700000000,"status":"` + status + `","background":false,"completed_at":` + completedAt +
		`,"error":null,"incomplete_details":` + incomplete + `,"instructions":"be brief","max_output_tokens":null,"max_tool_calls":null,"model":"m","output":[` + output +
		`],"parallel_tool_calls":true,"previous_response_id":null,"reasoning":{"effort":null,"summary":null},"service_tier":"default","store":true,"temperature":null,` +
		`"text":{"format":{"type":"text"},"verbosity":"medium"},"tool_choice":"auto","tools":[],"top_logprobs":0,"top_p":null,"truncation":"disabled","usage":` + usage +
		`,"user":null,"metadata":{"k":"v"}}`
}

const (
	respUsage    = `{"input_tokens":5,"input_tokens_details":{"cached_tokens":0},"output_tokens":3,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":8}`
	respRequest  = `{"model":"m","input":"hi","stream":true,"instructions":"be brief","metadata":{"k":"v"}}`
	respItemHead = `{"id":"msg_abc","type":"message","status":"`
)

func respEvent(name, data string) string {
	return "event: " + name + "\ndata: " + data + "\n\n"
}

func respMessage(status, text string) string {
	return respItemHead + status + `","content":[{"type":"output_text","annotations":[],"logprobs":[],"text":"` + text + `"}],"role":"assistant"}`
}

// TestResponsesSinkStream pins the whole event stream of a short answer:
// OpenAI's event names and order, sequence numbers from 0, the message
// item id derived from the response id, and the final response object.
func TestResponsesSinkStream(t *testing.T) {
	rec := httptest.NewRecorder()
	play(t, newRespSink(rec, responsesParams(t, respRequest)), threeDeltas()[:2], 0, nil)
	if rec.Header().Get("Content-Type") != "text/event-stream" || !rec.Flushed {
		t.Errorf("headers %v", rec.Header())
	}
	start := respObject("in_progress", "null", "null", "", "null")
	text := func(seq, rest string) string {
		return `"item_id":"msg_abc","output_index":0,"content_index":0,` + rest + `,"sequence_number":` + seq + `}`
	}
	checkBody(t, rec.Body.String(), ""+
		respEvent("response.created", `{"type":"response.created","response":`+start+`,"sequence_number":0}`)+
		respEvent("response.in_progress", `{"type":"response.in_progress","response":`+start+`,"sequence_number":1}`)+
		respEvent("response.output_item.added", `{"type":"response.output_item.added","output_index":0,"item":`+respItemHead+`in_progress","content":[],"role":"assistant"},"sequence_number":2}`)+
		respEvent("response.content_part.added", `{"type":"response.content_part.added",`+text("3", `"part":{"type":"output_text","annotations":[],"logprobs":[],"text":""}`))+
		respEvent("response.output_text.delta", `{"type":"response.output_text.delta",`+text("4", `"delta":"Hel","logprobs":[]`))+
		respEvent("response.output_text.delta", `{"type":"response.output_text.delta",`+text("5", `"delta":"lo <b>","logprobs":[]`))+
		respEvent("response.output_text.done", `{"type":"response.output_text.done",`+text("6", `"text":"Hello <b>","logprobs":[]`))+
		respEvent("response.content_part.done", `{"type":"response.content_part.done",`+text("7", `"part":{"type":"output_text","annotations":[],"logprobs":[],"text":"Hello <b>"}`))+
		respEvent("response.output_item.done", `{"type":"response.output_item.done","output_index":0,"item":`+respMessage("completed", "Hello <b>")+`,"sequence_number":8}`)+
		respEvent("response.completed", `{"type":"response.completed","response":`+respObject("completed", "1700000000", "null", respMessage("completed", "Hello <b>"), respUsage)+`,"sequence_number":9}`))
}

func TestResponsesSinkNonStream(t *testing.T) {
	p := responsesParams(t, respRequest)
	p.Stream = false
	rec := httptest.NewRecorder()
	play(t, newRespSink(rec, p), threeDeltas()[:2], 0, nil)
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" || rec.Header().Get("X-Request-Id") != "resp_abc" {
		t.Errorf("status %d headers %v", rec.Code, rec.Header())
	}
	checkBody(t, rec.Body.String(), respObject("completed", "1700000000", "null", respMessage("completed", "Hello <b>"), respUsage)+"\n")
}

// TestResponsesSinkIncomplete: an answer cut by the token limit ends with
// response.incomplete, the reason, and an incomplete message item.
func TestResponsesSinkIncomplete(t *testing.T) {
	rec := httptest.NewRecorder()
	s := NewResponsesSink(rec, responsesParams(t, respRequest))
	if err := s.Begin(respMeta()); err != nil {
		t.Fatal(err)
	}
	f := testFinal()
	f.FinishReason = "length"
	if err := s.End(f); err != nil {
		t.Fatal(err)
	}
	events := strings.Split(strings.TrimSuffix(rec.Body.String(), "\n\n"), "\n\n")
	var names []string
	for _, e := range events {
		names = append(names, strings.TrimPrefix(strings.SplitN(e, "\n", 2)[0], "event: "))
	}
	want := "response.created response.in_progress response.output_item.added response.content_part.added response.output_text.done response.content_part.done response.output_item.done response.incomplete"
	if strings.Join(names, " ") != want {
		t.Fatalf("events %v, want %s", names, want)
	}
	checkBody(t, events[len(events)-1], "event: response.incomplete\ndata: "+
		`{"type":"response.incomplete","response":`+respObject("incomplete", "null", `{"reason":"max_output_tokens"}`, respMessage("incomplete", ""), respUsage)+`,"sequence_number":7}`)
}

// TestResponsesSinkFail: a failure before Begin is a plain OpenAI error;
// mid-stream it is response.failed with the error and the text so far.
func TestResponsesSinkFail(t *testing.T) {
	rec := httptest.NewRecorder()
	play(t, newRespSink(rec, responsesParams(t, respRequest)), nil, -1, apierr.ModelNotFound("m"))
	if rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), `"code":"model_not_found"`) {
		t.Errorf("fail before Begin: %d %s", rec.Code, rec.Body.String())
	}

	rec = httptest.NewRecorder()
	play(t, newRespSink(rec, responsesParams(t, respRequest)), threeDeltas(), 1, apierr.Upstream("the provider disconnected"))
	events := strings.Split(strings.TrimSuffix(rec.Body.String(), "\n\n"), "\n\n")
	last := events[len(events)-1]
	failed := respObject("failed", "null", "null", respMessage("incomplete", "Hel"), "null")
	failed = strings.Replace(failed, `"error":null`, `"error":{"code":"server_error","message":"the provider disconnected"}`, 1)
	checkBody(t, last, "event: response.failed\ndata: "+`{"type":"response.failed","response":`+failed+`,"sequence_number":5}`)

	p := responsesParams(t, respRequest)
	p.Stream = false
	rec = httptest.NewRecorder()
	play(t, newRespSink(rec, p), threeDeltas(), 1, apierr.Upstream("the provider disconnected"))
	if rec.Code != http.StatusBadGateway || !strings.Contains(rec.Body.String(), `"the provider disconnected"`) {
		t.Errorf("non-streaming fail after Begin: %d %s", rec.Code, rec.Body.String())
	}
}

// TestResponsesSinkLogprobs: requested log-probabilities travel with each
// delta and in the final text part, in the chat API's token shape.
func TestResponsesSinkLogprobs(t *testing.T) {
	rec := httptest.NewRecorder()
	play(t, newRespSink(rec, responsesParams(t, `{"model":"m","input":"x","stream":true,"top_logprobs":1}`)), logprobDeltas(), 0, nil)
	var done struct {
		Response struct {
			Output []struct {
				Content []struct {
					Logprobs []apitypes.ChatTokenLogprob `json:"logprobs"`
				} `json:"content"`
			} `json:"output"`
		} `json:"response"`
	}
	events := strings.Split(strings.TrimSuffix(rec.Body.String(), "\n\n"), "\n\n")
	last := events[len(events)-1]
	if err := json.Unmarshal([]byte(strings.SplitN(last, "data: ", 2)[1]), &done); err != nil {
		t.Fatal(err)
	}
	lps := done.Response.Output[0].Content[0].Logprobs
	if len(lps) != 3 || lps[1].Token != "é" || len(lps[0].TopLogprobs) != 1 || len(lps[2].TopLogprobs) != 0 {
		t.Fatalf("final logprobs %+v", lps)
	}
	if !strings.Contains(events[4], `"delta":"Hé","logprobs":[{"token":"H","logprob":-0.5,"bytes":[72],"top_logprobs":[{"token":"H","logprob":-0.5,"bytes":[72]}]},{"token":"é"`) {
		t.Errorf("delta event %s", events[4])
	}
}
