package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	ollamaapi "github.com/ollama/ollama/api"
	"github.com/openai/openai-go/v3"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/gateway"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/receipt"
	"github.com/idlegrid/idlegrid/internal/tstest"
)

// personSchema is the structured-output schema of the tests.
const personSchema = `{"type":"object","properties":{"name":{"type":"string","minLength":2},"age":{"type":"integer","minimum":0,"maximum":150},"email":{"type":"string","format":"email"},"tags":{"type":"array","items":{"type":"string"},"minItems":1},"role":{"enum":["admin","user"]}},"required":["name","age","email","tags","role"],"additionalProperties":false}`

func compileSchema(t *testing.T, src string) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestStructuredOutput: response_format json_schema (strict) and
// json_object through openai-go, and format through the Ollama client, on
// the simulator: the answer is JSON that conforms to the schema, exactly
// the simulator's, receipted with the hash of that text; an invalid schema
// is a 400 that names where it is wrong.
func TestStructuredOutput(t *testing.T) {
	tn := startNet(t, netOptions{})
	c := openaiClient(tn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	validator := compileSchema(t, personSchema)
	var schemaDoc map[string]any
	if err := json.Unmarshal([]byte(personSchema), &schemaDoc); err != nil {
		t.Fatal(err)
	}
	req := chatReq("Describe a user", 100)
	req.Format = json.RawMessage(personSchema)
	wantText, _, wantRes := directAnswer(t, tn, req)

	for _, streaming := range []bool{false, true} {
		params := openaiChatParams("sim", "Describe a user", 100)
		params.ResponseFormat = openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &openai.ResponseFormatJSONSchemaParam{
			JSONSchema: openai.ResponseFormatJSONSchemaJSONSchemaParam{Name: "person", Strict: openai.Bool(true), Schema: schemaDoc}}}
		msg, finish, id, _ := chatTurn(t, ctx, c, params, streaming)
		if msg.Content != wantText || finish != "stop" {
			t.Fatalf("streaming=%v: %q (%s), want %q", streaming, msg.Content, finish, wantText)
		}
		var v any
		if err := json.Unmarshal([]byte(msg.Content), &v); err != nil {
			t.Fatal(err)
		}
		if err := validator.Validate(v); err != nil {
			t.Fatalf("%s does not conform: %v", msg.Content, err)
		}
		if r := fetchReceipt(t, tn, id); r.ResponseHash != receipt.Sum([]byte(wantText)) || r.CompletionTokens != wantRes.Usage.CompletionTokens {
			t.Errorf("receipt %+v", r)
		}
	}

	params := openaiChatParams("sim", "Describe a user", 100)
	params.ResponseFormat = openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONObject: &openai.ResponseFormatJSONObjectParam{}}
	msg, _, _, _ := chatTurn(t, ctx, c, params, false)
	var obj map[string]any
	if err := json.Unmarshal([]byte(msg.Content), &obj); err != nil {
		t.Fatalf("json_object answer %q: %v", msg.Content, err)
	}

	var gen strings.Builder
	oc := ollamaClient(t, tn.URL)
	err := oc.Generate(ctx, &ollamaapi.GenerateRequest{Model: "sim", Prompt: "Describe a user", Format: json.RawMessage(personSchema),
		Options: map[string]any{"num_predict": 100}}, func(r ollamaapi.GenerateResponse) error {
		gen.WriteString(r.Response)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal([]byte(gen.String()), &v); err != nil || validator.Validate(v) != nil {
		t.Fatalf("/api/generate with a schema: %q, %v", gen.String(), err)
	}

	bad := openaiChatParams("sim", "Describe a user", 100)
	bad.ResponseFormat = openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &openai.ResponseFormatJSONSchemaParam{
		JSONSchema: openai.ResponseFormatJSONSchemaJSONSchemaParam{Name: "person", Schema: map[string]any{"type": "object", "properties": map[string]any{"age": map[string]any{"type": "int"}}}}}}
	_, err = c.Chat.Completions.New(ctx, bad)
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest || apiErr.Param != "response_format.json_schema.schema/properties/age/type" {
		t.Fatalf("invalid schema: %v", err)
	}
}

// TestToolAndStructuredReceiptsSettle: a tool-call answer and a structured
// answer are billed like text: each receipt (its response hash over the
// call, or the JSON text, as the consumer got them) settles on the ledger
// for exactly its amount, taken from the consumer's deposit.
func TestToolAndStructuredReceiptsSettle(t *testing.T) {
	tn := startNet(t, netOptions{gateway: gateway.Config{SettleInterval: 100 * time.Millisecond}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l := chainrpc.StateReader{Client: tn.Validator.Node.Client()}
	gw := tn.Gateway.Key.Public().Address()
	depBefore, err := l.Deposit(ctx, tn.Account, gw)
	if err != nil {
		t.Fatal(err)
	}
	c := openaiClient(tn)
	call := openaiChatParams("sim", "What is the weather in Paris?", 40)
	call.Tools = []openai.ChatCompletionToolUnionParam{weatherTool()}
	callMsg, _, callID, _ := chatTurn(t, ctx, c, call, true)
	var schemaDoc map[string]any
	if err := json.Unmarshal([]byte(personSchema), &schemaDoc); err != nil {
		t.Fatal(err)
	}
	structured := openaiChatParams("sim", "Describe a user", 100)
	structured.ResponseFormat = openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &openai.ResponseFormatJSONSchemaParam{
		JSONSchema: openai.ResponseFormatJSONSchemaJSONSchemaParam{Name: "person", Schema: schemaDoc}}}
	jsonMsg, _, jsonID, _ := chatTurn(t, ctx, c, structured, false)
	if len(callMsg.ToolCalls) != 1 || jsonMsg.Content == "" {
		t.Fatalf("answers: %+v, %q", callMsg, jsonMsg.Content)
	}
	got := []protocol.ToolCall{{ID: callMsg.ToolCalls[0].ID, Name: callMsg.ToolCalls[0].Function.Name, Arguments: callMsg.ToolCalls[0].Function.Arguments}}
	wantHash := map[string]receipt.Hash{callID: answerHash("", got), jsonID: receipt.Sum([]byte(jsonMsg.Content))}
	tstest.WaitFor(t, 30*time.Second, "both receipts settled", func() bool {
		a := getAccount(t, tn, testAPIKey)
		return a.Receipts.Settled == 2 && a.Receipts.Pending == 0
	})
	var spent money.Amount
	for id, hash := range wantHash {
		r, err := tn.Gateway.Store.Receipt(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if r.Receipt.ResponseHash != hash || r.Receipt.Amount == 0 {
			t.Errorf("receipt %s: hash %s amount %d; want the hash of what the consumer got (%s)", id, r.Receipt.ResponseHash, r.Receipt.Amount, hash)
		}
		st, err := l.Settlement(ctx, gw, id)
		if err != nil || st.Receipt != r.Receipt.Hash() || st.Amount != r.Receipt.Amount {
			t.Fatalf("settlement of %s: %+v, %v", id, st, err)
		}
		spent += r.Receipt.Amount
	}
	depAfter, err := l.Deposit(ctx, tn.Account, gw)
	if err != nil {
		t.Fatal(err)
	}
	if depAfter.Locked != depBefore.Locked-spent {
		t.Errorf("deposit %d → %d, want a drop of exactly %d", depBefore.Locked, depAfter.Locked, spent)
	}
}
