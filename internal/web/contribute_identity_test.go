package web_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/idlegrid/idlegrid/internal/backend/ollama"
	"github.com/idlegrid/idlegrid/internal/web"
)

// TestContributeIdentityMatchesGo: the browser provider computes a model's
// identity from /api/show exactly as the native agent does, so a model a
// visitor's page serves is the same model to gateways and verifiers. With
// OLLAMA_URL set, the real server's answers are compared too.
func TestContributeIdentityMatchesGo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	blob := func(c string) string { return "/m/blobs/sha256-" + strings.Repeat(c, 64) }
	shows := []map[string]any{
		{"modelfile": "FROM " + blob("a") + "\nTEMPLATE {{ .Prompt }}\n", "template": "{{ .Prompt }}"},
		{"modelfile": "# c\n\r\nfrom  C:\\m\\blobs\\sha256-" + strings.Repeat("B", 64) + " \nADAPTER " + blob("c") + "\nFROM " + blob("d") + "/\n",
			"template": "ü 😀", "system": "be brief", "parameters": "stop                           \"<|x|>\"\ntemperature\t0.7\r\nnum_ctx 4096\n\nstop \"é\"\nstop \"z\"",
			"messages": []map[string]string{{"role": "user", "content": "hi \U0001F600"}}, "renderer": "r", "parser": "p"},
		{"modelfile": "FROM sim\n"},
		{"modelfile": "ADAPTER " + blob("e") + "\n"},
		{},
	}
	var bodies []string
	for _, s := range shows {
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, string(b))
	}
	// A lone surrogate: Go's JSON and the page both read it as U+FFFD.
	bodies = append(bodies, `{"modelfile":"FROM `+blob("f")+`","system":"x\ud83d","parameters":"stop \"\u00a0\"\u2028"}`)
	if u := os.Getenv("OLLAMA_URL"); u != "" {
		for _, model := range []string{"tiny", "tiny-q4sim", "tiny-tools"} {
			resp, err := http.Post(u+"/api/show", "application/json", strings.NewReader(`{"model":"`+model+`"}`))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			bodies = append(bodies, string(b))
		}
	}
	ctx := newChromium(t, 60*time.Second)
	srv := bareUI(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+web.ContributePath), chromedp.WaitVisible(chromedp.CSS("#state"))); err != nil {
		t.Fatal(err)
	}
	input, err := json.Marshal(bodies)
	if err != nil {
		t.Fatal(err)
	}
	js := `(async (bodies) => {
  const o = await import("/ui/static/contribute/ollama.js");
  const out = [];
  for (const b of bodies) out.push(await o.modelIdentity(JSON.parse(b)));
  return out;
})(` + string(input) + `)`
	got, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](js, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(bodies) {
		t.Fatalf("page returned %d identities for %d answers", len(got), len(bodies))
	}
	for i, b := range bodies {
		want, err := ollama.IdentityFromShow([]byte(b))
		if err != nil {
			t.Fatal(err)
		}
		if got[i] != want {
			t.Errorf("answer %d: page %q, Go %q\n%s", i, got[i], want, b[:min(len(b), 300)])
		}
	}
	if got[0] == "" || got[1] == "" || got[2] != "" || got[3] != "" {
		t.Errorf("identities %q: want ones for the first two answers only", got[:5])
	}
}
