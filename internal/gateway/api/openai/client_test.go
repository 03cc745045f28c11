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

	"github.com/idlegrid/idlegrid/internal/gateway/api/jsonfield"
	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/gateway/sink"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// Models the fake relay treats specially.
const (
	modelFailMid   = "fail-mid"   // fails after the first delta
	modelFailEarly = "fail-early" // fails before Begin
)

// fakeRelay drives a sink like the gateway's relay with a deterministic
// script: "Hel", "lo", " world", then End with fixed usage.
func fakeRelay(s sink.Sink, p Params) {
	switch p.Request.Model {
	case modelFailEarly:
		s.Fail(apierr.ModelNotFound(p.Request.Model))
		return
	}
	if s.Begin(sink.Meta{RequestID: "req-42", Model: p.Request.Model, Created: time.Unix(1700000000, 0)}) != nil {
		return
	}
	for i, text := range []string{"Hel", "lo", " world"} {
		if p.Request.Model == modelFailMid && i == 1 {
			s.Fail(apierr.Upstream("the provider disconnected"))
			return
		}
		d := sink.Delta{Text: text}
		if p.Request.Options.Logprobs {
			d.Logprobs = []protocol.TokenLogprob{{Token: text, Logprob: -0.5, Top: []protocol.TopLogprob{{Token: text, Logprob: -0.5}, {Token: "x", Logprob: -2}}}}
		}
		if s.Delta(d) != nil {
			return
		}
	}
	_ = s.End(sink.Final{FinishReason: "length", Usage: protocol.Usage{PromptTokens: 5, CompletionTokens: 3}})
}

// newTestServer serves the OpenAI API the way the gateway core wires this
// package: read the body, Parse, create the sink, run the relay.
func newTestServer(t *testing.T) *httptest.Server {
	t.Helper()
	handle := func(parse func([]byte) (Params, *apierr.Error), newSink func(http.ResponseWriter, Params) sink.Sink) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				apierr.WriteOpenAI(w, apierr.Invalid("", "could not read the body"))
				return
			}
			p, e := parse(body)
			if e != nil {
				apierr.WriteOpenAI(w, e)
				return
			}
			fakeRelay(newSink(w, p), p)
		}
	}
	models := []Model{{ID: "llama3.2:1b", Created: 1700000000}, {ID: "qwen2.5:0.5b", Created: 1700000001, OwnedBy: "someone",
		Providers: 3, PricePrompt: PriceRange{Min: 200_000, Median: 250_000}, PriceCompletion: PriceRange{Min: 600_000, Median: 1_000_000}, TokensPerSecond: 42.04, Digests: []string{"aaaa", "bbbb"}}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", handle(ParseChat, NewChatSink))
	mux.HandleFunc("POST /v1/completions", handle(ParseCompletion, NewCompletionSink))
	mux.HandleFunc("POST /v1/responses", handle(ParseResponses, NewResponsesSink))
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, r *http.Request) { WriteModelList(w, models) })
	mux.HandleFunc("GET /v1/models/{id}", func(w http.ResponseWriter, r *http.Request) {
		for _, m := range models {
			if m.ID == r.PathValue("id") {
				WriteModel(w, m)
				return
			}
		}
		apierr.WriteOpenAI(w, apierr.ModelNotFound(r.PathValue("id")))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func newClient(t *testing.T) (oai.Client, context.Context) {
	t.Helper()
	srv := newTestServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	// No retries: the errors under test must surface at once.
	return oai.NewClient(option.WithBaseURL(srv.URL+"/v1/"), option.WithAPIKey("x"), option.WithMaxRetries(0)), ctx
}

func TestOpenAIGoChat(t *testing.T) {
	client, ctx := newClient(t)
	res, err := client.Chat.Completions.New(ctx, oai.ChatCompletionNewParams{
		Model:       "llama3.2:1b",
		Messages:    []oai.ChatCompletionMessageParamUnion{oai.SystemMessage("be brief"), oai.UserMessage("hi")},
		Temperature: oai.Float(0.2),
		Seed:        oai.Int(1),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.ID != "req-42" || res.Model != "llama3.2:1b" || res.Created != 1700000000 || len(res.Choices) != 1 {
		t.Fatalf("response %+v", res)
	}
	c := res.Choices[0]
	if c.Message.Content != "Hello world" || c.Message.Role != "assistant" || c.FinishReason != "length" {
		t.Errorf("choice %+v", c)
	}
	if res.Usage.PromptTokens != 5 || res.Usage.CompletionTokens != 3 || res.Usage.TotalTokens != 8 {
		t.Errorf("usage %+v", res.Usage)
	}
}

func TestOpenAIGoChatStream(t *testing.T) {
	client, ctx := newClient(t)
	stream := client.Chat.Completions.NewStreaming(ctx, oai.ChatCompletionNewParams{
		Model:         "llama3.2:1b",
		Messages:      []oai.ChatCompletionMessageParamUnion{oai.UserMessage("hi")},
		StreamOptions: oai.ChatCompletionStreamOptionsParam{IncludeUsage: oai.Bool(true)},
		Logprobs:      oai.Bool(true),
		TopLogprobs:   oai.Int(1),
	})
	var acc oai.ChatCompletionAccumulator
	chunks := 0
	for stream.Next() {
		chunks++
		if !acc.AddChunk(stream.Current()) {
			t.Fatalf("accumulator rejected chunk %d: %s", chunks, stream.Current().RawJSON())
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if chunks != 6 {
		t.Errorf("got %d chunks, want 6 (role, 3 deltas, finish, usage)", chunks)
	}
	if acc.ID != "req-42" || len(acc.Choices) != 1 || acc.Choices[0].Message.Content != "Hello world" || acc.Choices[0].FinishReason != "length" {
		t.Errorf("accumulated %+v", acc.ChatCompletion)
	}
	if acc.Usage.PromptTokens != 5 || acc.Usage.CompletionTokens != 3 || acc.Usage.TotalTokens != 8 {
		t.Errorf("usage %+v", acc.Usage)
	}
	if lp := acc.Choices[0].Logprobs.Content; len(lp) != 3 || lp[1].Token != "lo" || len(lp[1].TopLogprobs) != 1 {
		t.Errorf("logprobs %+v", lp)
	}
}

func TestOpenAIGoChatStreamErrorMidStream(t *testing.T) {
	client, ctx := newClient(t)
	stream := client.Chat.Completions.NewStreaming(ctx, oai.ChatCompletionNewParams{
		Model:    modelFailMid,
		Messages: []oai.ChatCompletionMessageParamUnion{oai.UserMessage("hi")},
	})
	var text strings.Builder
	for stream.Next() {
		for _, c := range stream.Current().Choices {
			text.WriteString(c.Delta.Content)
		}
	}
	err := stream.Err()
	if err == nil || !strings.Contains(err.Error(), "the provider disconnected") {
		t.Fatalf("stream.Err() = %v, want the provider's error", err)
	}
	if text.String() != "Hel" {
		t.Errorf("text before the error = %q", text.String())
	}
}

func TestOpenAIGoErrors(t *testing.T) {
	client, ctx := newClient(t)
	_, err := client.Chat.Completions.New(ctx, oai.ChatCompletionNewParams{
		Model:    "m",
		Messages: []oai.ChatCompletionMessageParamUnion{oai.UserMessage("hi")},
		N:        oai.Int(2),
	})
	var apiErr *oai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest || apiErr.Param != "n" || apiErr.Code != jsonfield.CodeUnsupportedValue {
		t.Errorf("n=2: %v", err)
	}

	stream := client.Chat.Completions.NewStreaming(ctx, oai.ChatCompletionNewParams{
		Model:    modelFailEarly,
		Messages: []oai.ChatCompletionMessageParamUnion{oai.UserMessage("hi")},
	})
	for stream.Next() {
		t.Error("got a chunk from a failed request")
	}
	if !errors.As(stream.Err(), &apiErr) || apiErr.StatusCode != http.StatusNotFound || apiErr.Code != "model_not_found" {
		t.Errorf("fail before Begin: %v", stream.Err())
	}
}

func TestOpenAIGoCompletions(t *testing.T) {
	client, ctx := newClient(t)
	params := oai.CompletionNewParams{
		Model:     "llama3.2:1b",
		Prompt:    oai.CompletionNewParamsPromptUnion{OfString: oai.String("Once upon")},
		MaxTokens: oai.Int(3),
		Logprobs:  oai.Int(1),
	}
	res, err := client.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if res.ID != "req-42" || len(res.Choices) != 1 || res.Choices[0].Text != "Hello world" || res.Choices[0].FinishReason != "length" || res.Usage.TotalTokens != 8 {
		t.Errorf("completion %+v", res)
	}
	if lp := res.Choices[0].Logprobs; len(lp.Tokens) != 3 || lp.TextOffset[2] != 5 || lp.TopLogprobs[0]["Hel"] != -0.5 {
		t.Errorf("logprobs %+v", lp)
	}

	params.StreamOptions = oai.ChatCompletionStreamOptionsParam{IncludeUsage: oai.Bool(true)}
	stream := client.Completions.NewStreaming(ctx, params)
	var text strings.Builder
	var reason string
	var total int64
	for stream.Next() {
		c := stream.Current()
		for _, ch := range c.Choices {
			text.WriteString(ch.Text)
			if ch.FinishReason != "" {
				reason = string(ch.FinishReason)
			}
		}
		total += c.Usage.TotalTokens
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if text.String() != "Hello world" || reason != "length" || total != 8 {
		t.Errorf("streamed %q reason %q total %d", text.String(), reason, total)
	}
}

func TestOpenAIGoModels(t *testing.T) {
	client, ctx := newClient(t)
	page, err := client.Models.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Data) != 2 || page.Data[0].ID != "llama3.2:1b" || page.Data[0].OwnedBy != "idlegrid" || page.Data[1].OwnedBy != "someone" || page.Data[1].Created != 1700000001 {
		t.Errorf("models %+v", page.Data)
	}
	m, err := client.Models.Get(ctx, "qwen2.5:0.5b")
	if err != nil || m.ID != "qwen2.5:0.5b" || m.OwnedBy != "someone" {
		t.Fatalf("Get: %+v, %v", m, err)
	}
	// The market fields reach the client as extra fields.
	extra := m.JSON.ExtraFields
	for name, want := range map[string]string{
		"providers":         `3`,
		"price_per_mtok":    `{"prompt":{"min":"0.200000","median":"0.250000"},"completion":{"min":"0.600000","median":"1.000000"}}`,
		"tokens_per_second": `42`,
		"digests":           `["aaaa","bbbb"]`,
	} {
		if got := extra[name].Raw(); got != want {
			t.Errorf("extra field %s = %s, want %s", name, got, want)
		}
	}
	if _, ok := page.Data[0].JSON.ExtraFields["providers"]; ok {
		t.Error("a model without providers shows market fields")
	}
	var apiErr *oai.Error
	if _, err := client.Models.Get(ctx, "nope"); !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound {
		t.Errorf("Get unknown: %v", err)
	}
}
