package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/gateway/api/apitypes"
	"github.com/idlegrid/idlegrid/internal/gateway/apierr"
	"github.com/idlegrid/idlegrid/internal/gateway/client"
)

// TestTypedClient drives a whole network through the typed client: the
// model list, a chat answer with its signed receipt, the same request
// streamed, a legacy completion and the account; the in-process views the
// web UI reads (Gateway.Models, Gateway.AccountFor) equal what HTTP
// answers, and a wrong key is refused alike by both.
func TestTypedClient(t *testing.T) {
	tn := startNet(t, netOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := client.New(tn.URL, testAPIKey)
	gw := tn.Gateway.API

	acct, err := c.Account(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if acct.Object != "account" || acct.Account == "" || !acct.Ledger || acct.Spendable == nil {
		t.Errorf("account %+v", acct)
	}
	if in, err := gw.AccountFor(ctx, testAPIKey); err != nil || !reflect.DeepEqual(in, acct) {
		t.Errorf("in-process account %+v, %v; over HTTP %+v", in, err, acct)
	}

	models, err := c.Models(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(models) != 1 || models[0].ID != "sim" || models[0].Providers != 1 || models[0].PricePerMTok == nil || len(models[0].Digests) != 1 {
		t.Fatalf("models %+v", models)
	}
	if in, err := gw.Models(ctx); err != nil || !reflect.DeepEqual(in, models) {
		t.Errorf("in-process models %+v, %v; over HTTP %+v", in, err, models)
	}

	req := map[string]any{"model": "sim", "max_tokens": 12, "temperature": 0, "messages": []map[string]string{{"role": "user", "content": "hello there"}}}
	answer, err := c.Chat(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if len(answer.Choices) != 1 || answer.Choices[0].Message.Text() == "" || answer.Usage == nil || answer.Usage.CompletionTokens == 0 {
		t.Fatalf("answer %+v", answer)
	}
	signed, err := c.Receipt(ctx, answer.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := signed.Verify(); err != nil || signed.Receipt.CompletionTokens != answer.Usage.CompletionTokens {
		t.Errorf("receipt %+v: %v", signed.Receipt, err)
	}

	req["stream"], req["stream_options"] = true, map[string]bool{"include_usage": true}
	var text strings.Builder
	var streamed *apitypes.Usage
	id, err := c.ChatStream(ctx, req, func(ch apitypes.ChatChunk) error {
		for _, choice := range ch.Choices {
			text.WriteString(choice.Delta.Text())
		}
		if ch.Usage.Counts != nil {
			streamed = ch.Usage.Counts
		}
		return nil
	})
	if err != nil || id == "" || id == answer.ID {
		t.Fatalf("stream %q: %v", id, err)
	}
	if text.String() != answer.Choices[0].Message.Text() || streamed == nil || *streamed != *answer.Usage {
		t.Errorf("streamed %q (usage %+v), answered %q (usage %+v)", text.String(), streamed, answer.Choices[0].Message.Text(), answer.Usage)
	}

	done, err := c.Complete(ctx, map[string]any{"model": "sim", "max_tokens": 5, "prompt": "once upon a time"})
	if err != nil || len(done.Choices) != 1 || done.Usage.Counts == nil || done.Choices[0].FinishReason == nil {
		t.Errorf("completion %+v: %v", done, err)
	}

	_, httpErr := client.New(tn.URL, "ig-wrong-key").Account(ctx)
	_, inErr := gw.AccountFor(ctx, "ig-wrong-key")
	var ae *client.APIError
	var viaHTTP, inProcess *apierr.Error
	if !errors.As(httpErr, &ae) || ae.Status != http.StatusUnauthorized || ae.Code != "invalid_api_key" ||
		!errors.As(httpErr, &viaHTTP) || !errors.As(inErr, &inProcess) || viaHTTP.Message != inProcess.Message || viaHTTP.Status != inProcess.Status {
		t.Errorf("wrong key: over HTTP %v, in process %v", httpErr, inErr)
	}
	if _, err := gw.AccountFor(ctx, ""); !errors.As(err, &inProcess) || inProcess.Status != http.StatusUnauthorized {
		t.Errorf("no key in process: %v", err)
	}
}

// TestConsumerViewsDecodeStrictly: /v1/models, /v1/models/{id} and
// /v1/account have no member the exported types lack, so the gateway
// encodes with them.
func TestConsumerViewsDecodeStrictly(t *testing.T) {
	tn := startNet(t, netOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := client.New(tn.URL, testAPIKey)
	for _, tc := range []struct {
		path string
		into any
	}{
		{"/v1/models", &apitypes.ModelList{}},
		{"/v1/models/sim", &apitypes.Model{}},
		{"/v1/account", &apitypes.Account{}},
	} {
		resp, err := c.Do(ctx, http.MethodGet, tc.path, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %v", tc.path, resp.StatusCode, err)
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(tc.into); err != nil {
			t.Errorf("GET %s: %v\n%s", tc.path, err, b)
		}
	}
}

// TestUIReadsTheGatewayInProcess: the gateway's web UI shows the model
// list and a key's account from the gateway's own views (web.API), and
// the API's refusal of a wrong key.
func TestUIReadsTheGatewayInProcess(t *testing.T) {
	tn := startNet(t, netOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	acct, err := client.New(tn.URL, testAPIKey).Account(ctx)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(tn.URL + "/ui/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "<td>sim</td>") || strings.Contains(string(b), "Models are unavailable") {
		t.Errorf("overview: %d\n%s", resp.StatusCode, b)
	}
	for _, tc := range []struct {
		key    string
		status int
		want   string
	}{
		{testAPIKey, http.StatusOK, string(acct.Account)},
		{"ig-wrong-key", http.StatusUnauthorized, "Incorrect API key provided."},
	} {
		resp, err := http.PostForm(tn.URL+"/ui/account", map[string][]string{"key": {tc.key}})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.want) {
			t.Errorf("account page for %s: %d, want %d with %q", tc.key, resp.StatusCode, tc.status, tc.want)
		}
	}
}
