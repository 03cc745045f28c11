package node_test

import (
	"strings"
	"testing"
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
