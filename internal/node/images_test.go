package node_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	ollamaapi "github.com/ollama/ollama/api"

	"github.com/idlegrid/idlegrid/internal/gateway/client"
	"github.com/idlegrid/idlegrid/internal/protocol"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// TestImagesRefusedWithoutVision: a request with an image for a model no
// provider serves with the vision capability (the simulator has none) is
// a 400 that says so, on both APIs, before any job runs; a remote image
// URL is refused, never fetched.
func TestImagesRefusedWithoutVision(t *testing.T) {
	tn := startNet(t, netOptions{})
	const png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
	for _, c := range []struct {
		path, body, want string
	}{
		{"/v1/chat/completions", `{"model":"sim","messages":[{"role":"user","content":[{"type":"text","text":"what is it?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,` + png + `"}}]}]}`,
			`"message":"no provider of sim accepts images`},
		{"/api/chat", `{"model":"sim","messages":[{"role":"user","content":"what is it?","images":["` + png + `"]}]}`, `{"error":"no provider of sim accepts images`},
		{"/api/generate", `{"model":"sim","prompt":"what is it?","images":["` + png + `"]}`, `{"error":"no provider of sim accepts images`},
		{"/v1/chat/completions", `{"model":"sim","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"http://127.0.0.1:1/secret.png"}}]}]}`,
			`remote image URLs are not fetched on this network`},
	} {
		status, body := post(t, tn.URL+c.path, testAPIKey, c.body)
		if status != 400 || !strings.Contains(string(body), c.want) {
			t.Errorf("%s: %d %s, want 400 with %s", c.path, status, body, c.want)
		}
	}
	if s := tn.Sim.Stats(); s.Requests != 0 {
		t.Errorf("the simulator got %d requests", s.Requests)
	}
}

// TestImagesServedByVisionProviders: a request with images goes to a
// provider whose model has the vision capability, on both APIs; the
// answer depends on the image (the simulated vision model reads each as a
// word), and the receipt's request hash covers the body that carried it.
func TestImagesServedByVisionProviders(t *testing.T) {
	cfg := fastSim()
	cfg.Models = append(cfg.Models, cfg.Models[0])
	cfg.Models[1].Name, cfg.Models[1].Weights = "eyes", 3
	cfg.Models[1].Capabilities = []string{protocol.CapCompletion, protocol.CapVision}
	tn := startNet(t, netOptions{sim: cfg})
	const png1 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
	const png2 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
	c := client.New(tn.URL, testAPIKey)
	answer := func(body string) (string, string) {
		t.Helper()
		r, err := c.Chat(context.Background(), json.RawMessage(body))
		if err != nil || len(r.Choices) != 1 {
			t.Fatalf("chat: %+v, %v", r, err)
		}
		return r.ID, r.Choices[0].Message.Text()
	}
	chat := func(png string) string {
		return `{"model":"eyes","max_tokens":12,"temperature":0,"messages":[{"role":"user","content":[{"type":"text","text":"what is it?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,` + png + `"}}]}]}`
	}
	id1, a1 := answer(chat(png1))
	_, a2 := answer(chat(png2))
	if a1 == "" || a1 == a2 {
		t.Fatalf("answers %q and %q: the image made no difference", a1, a2)
	}
	if r := fetchReceipt(t, tn, id1); r.RequestHash != receipt.Sum([]byte(chat(png1))) || r.Model != "eyes" || r.PromptTokens == 0 {
		t.Fatalf("receipt %+v", r)
	}
	status, out := post(t, tn.URL+"/api/generate", testAPIKey, `{"model":"eyes","stream":false,"prompt":"what is it?","images":["`+png1+`"],"options":{"temperature":0,"num_predict":12}}`)
	var gen ollamaapi.GenerateResponse
	if status != 200 || json.Unmarshal(out, &gen) != nil {
		t.Fatalf("/api/generate: %d %s", status, out)
	}
	if gen.Response == "" {
		t.Fatal("/api/generate with an image answered nothing")
	}
	// The model without vision is refused before any provider runs.
	if status, out := post(t, tn.URL+"/api/chat", testAPIKey, `{"model":"sim","messages":[{"role":"user","content":"x","images":["`+png1+`"]}]}`); status != 400 || !strings.Contains(string(out), "no provider of sim accepts images") {
		t.Fatalf("images for a model without vision: %d %s", status, out)
	}
}
