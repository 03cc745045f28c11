// Package clients_test runs third-party clients installed from npm (the
// official OpenAI SDK, ollama-js, the Vercel AI SDK, LangChain) against a
// real `idlegrid up`, the way applications use the network. The scripts
// next to this file print one JSON line per check; the tests here decide
// whether what each client got is right: exactly the simulator's answer on
// the simulator, and on a real Ollama what a random-weight model can show
// (accepted, well-formed, counted, receipted).
package clients_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/protocol"
)

// clients are the scripts, by the name they print as "client".
var clients = []string{"openai", "ollama", "vercel", "langchain"}

// features are the groups of checks, in the order the subtests run. chat,
// stream and errors work on every network of this version; the others are
// the capabilities of issue 21 and fail until they are built.
var features = []string{"chat", "stream", "errors", "tools", "structured", "embeddings", "keyless", "responses"}

const (
	apiKey    = "ig-node-clients-0123456789"
	maxTokens = 24 // IDLEGRID_MAX_TOKENS of the scripts
)

// TestNodeClients runs every client script against `up` on the simulator
// and checks each answer against the simulator's own.
func TestNodeClients(t *testing.T) {
	requireNode(t)
	net := startUp(t, "--backend", "sim")
	want := newSimOracle(t)
	lines := runScripts(t, net, 4*time.Minute, len(clients), map[string]string{"IDLEGRID_MODEL": "sim"})
	checkAll(t, lines, nil, func(t *testing.T, l line) { checkSim(t, net, want, l) })
}

// TestNodeClientsOllama runs the same scripts against `up` serving the real
// Ollama at OLLAMA_URL (models tiny, and tiny-tools for tools).
func TestNodeClientsOllama(t *testing.T) {
	ollama := os.Getenv("OLLAMA_URL")
	if ollama == "" {
		t.Skip("OLLAMA_URL is not set: no real Ollama to put behind the network")
	}
	requireNode(t)
	net := startUp(t, "--backend", "ollama", "--ollama-url", ollama)
	// A random-weight model's answers show nothing more when longer, and a
	// loaded CPU makes ten tokens a second of them: short answers, one
	// script at a time (the model server runs one request at a time; more
	// only queue there, past the gateway's first-token timeout), and
	// patience: the clients retry as they do by default, for the model
	// server is shared and may keep the first token past the gateway's
	// timeout (a 503).
	lines := runScripts(t, net, 8*time.Minute, 1, map[string]string{"IDLEGRID_RETRIES": "2", "IDLEGRID_MODEL": "tiny", "IDLEGRID_TOOLS_MODEL": "tiny-tools", "IDLEGRID_EMBED_MODEL": "tiny",
		"IDLEGRID_MAX_TOKENS": "8", "IDLEGRID_LONG_TOKENS": "8", "IDLEGRID_TIMEOUT_MS": "120000"})
	checkAll(t, lines, randomWeights, func(t *testing.T, l line) { checkOllama(t, net, l) })
}

// randomWeights are the errors clients raise themselves when a model's
// answer is not what they asked for: a random-weight model calls no tool
// and writes no JSON that parses, though the network accepted, served and
// billed the request.
var randomWeights = map[string]bool{
	"ToolChoiceViolationError": true, // Vercel: toolChoice required, no call
	"NoObjectGeneratedError":   true, // Vercel: generateObject, no JSON
	"LengthFinishReasonError":  true, // OpenAI and LangChain: JSON cut at the token limit
	"OutputParserException":    true, // LangChain: no JSON
}

// requireNode skips the test unless node runs and the pinned modules are
// installed (`npm ci` in this directory; .ci/run does it).
func requireNode(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds idlegrid and runs npm clients against it; skipped with -short")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: the npm client tests need Node.js 20 or later")
	}
	out, err := exec.Command(node, "--version").Output()
	if err != nil {
		t.Skipf("node --version: %v", err)
	}
	var major int
	if _, err := fmt.Sscanf(string(out), "v%d", &major); err != nil || major < 20 {
		t.Skipf("node %s is too old: the npm client tests need Node.js 20 or later", strings.TrimSpace(string(out)))
	}
	for _, m := range []string{"openai", "ollama", "ai", "@ai-sdk/openai-compatible", "@langchain/openai", "@langchain/ollama", "@langchain/core", "zod"} {
		if _, err := os.Stat(filepath.Join("node_modules", m, "package.json")); err != nil {
			t.Skipf("the npm modules are not installed (%s missing): run `npm ci` in test/clients", m)
		}
	}
}

// network is a running `idlegrid up`.
type network struct {
	url string
}

// startUp builds idlegrid and runs `up` on free loopback ports with args,
// until the test ends.
func startUp(t *testing.T, args ...string) *network {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "idlegrid")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/idlegrid/idlegrid/cmd/idlegrid").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	args = append([]string{"up", "--addr", "127.0.0.1:0", "--chain-rpc-addr", "127.0.0.1:0", "--data-dir", t.TempDir(),
		"--verify-every", "0", "--plant-every", "0"}, args...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "IDLEGRID_DEV_API_KEY="+apiKey)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	base := make(chan string, 1)
	go func() {
		rx := regexp.MustCompile(`OpenAI API base URL:\s+(http://\S+)/v1`)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := rx.FindStringSubmatch(sc.Text()); m != nil {
				base <- m[1]
			}
		}
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(40 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() && testing.Verbose() {
			t.Logf("idlegrid up's log:\n%s", stderr.String())
		}
	})
	var n network
	select {
	case n.url = <-base:
	case <-exited:
		t.Fatalf("idlegrid up exited before serving:\n%s", stderr.String())
	case <-time.After(60 * time.Second):
		t.Fatal("idlegrid up printed no base URL within 60 s")
	}
	waitForModels(t, n.url)
	return &n
}

// waitForModels waits until the local provider's models are listed.
func waitForModels(t *testing.T, base string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := http.Get(base + "/v1/models")
		if err == nil {
			var list struct {
				Data []struct{ ID string } `json:"data"`
			}
			err = json.NewDecoder(resp.Body).Decode(&list)
			resp.Body.Close()
			if err == nil && len(list.Data) > 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the local provider's models never appeared in /v1/models")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// line is one check's report (lib.mjs, run).
type line struct {
	Client  string  `json:"client"`
	Feature string  `json:"feature"`
	Check   string  `json:"check"`
	Result  *result `json:"result"`
	Error   *thrown `json:"error"`
	Raw     string  `json:"-"`
}

// thrown is what a client threw: its own error class, status and message.
type thrown struct {
	Name       string `json:"name"`
	Message    string `json:"message"`
	Status     int    `json:"status"`
	StatusCode int    `json:"statusCode"`
	OllamaCode int    `json:"status_code"`
}

// HTTPStatus is the status whichever field the client keeps it in.
func (e *thrown) HTTPStatus() int { return max(e.Status, e.StatusCode, e.OllamaCode) }

func (e *thrown) String() string {
	return fmt.Sprintf("%s (HTTP %d): %s", e.Name, e.HTTPStatus(), e.Message)
}

// result is the union of what the checks report; each fills its part.
type result struct {
	ID           string                 `json:"id"`
	Messages     []protocol.ChatMessage `json:"messages"`
	Prompt       string                 `json:"prompt"`
	MaxTokens    int                    `json:"max_tokens"`
	Text         *string                `json:"text"`
	FinishReason string                 `json:"finish_reason"`
	Usage        *usage                 `json:"usage"`
	Chunks       int                    `json:"chunks"`
	// UsageChunkChoices: the choices of the OpenAI stream's usage chunk.
	UsageChunkChoices *int `json:"usage_chunk_choices"`

	// Errors expected by the check.
	Thrown bool            `json:"thrown"`
	Error  *thrown         `json:"error"`
	Got    json.RawMessage `json:"got"`

	// Tools.
	ToolCalls   []toolCall        `json:"tool_calls"`
	First       *result           `json:"first"`
	Second      *result           `json:"second"`
	Steps       []result          `json:"steps"`
	ToolResults []json.RawMessage `json:"tool_results"`
	// Unstreamed is the same request unstreamed (OpenAI's tools/stream).
	Unstreamed *result `json:"unstreamed"`

	// Structured output.
	Valid   *bool           `json:"valid"`
	JSON    *bool           `json:"json"`
	Problem string          `json:"problem"`
	Object  json.RawMessage `json:"object"`

	// Embeddings.
	Count  int         `json:"count"`
	Dims   []int       `json:"dims"`
	Finite bool        `json:"finite"`
	Head   [][]float64 `json:"head"`
	// RepeatCosine compares two embeddings of one input.
	RepeatCosine *float64 `json:"repeat_cosine"`

	// Responses API and Ollama metadata.
	ResponseID string   `json:"response_id"`
	Status     string   `json:"status"`
	Events     []string `json:"events"`
	FinalText  *string  `json:"final_text"`
	Models     []string `json:"models"`
}

type usage struct {
	Prompt     uint64 `json:"prompt"`
	Completion uint64 `json:"completion"`
	Total      uint64 `json:"total"`
}

// toolCall is a call as the client returned it; Arguments is a JSON string
// (OpenAI) or an object (Ollama, Vercel, LangChain).
type toolCall struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	Name      string          `json:"name"`
	Arguments json.RawMessage `json:"arguments"`
	Fragments int             `json:"fragments"`
}

// runScripts runs the client scripts against net, parallel of them at
// once, for at most timeout in all, and returns their lines by client. env
// adds to (and overrides) the scripts' environment.
func runScripts(t *testing.T, net *network, timeout time.Duration, parallel int, env map[string]string) map[string][]line {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out := map[string][]line{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	slots := make(chan struct{}, parallel)
	for _, c := range clients {
		wg.Go(func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			cmd := exec.CommandContext(ctx, "node", c+".mjs")
			cmd.Env = append(os.Environ(), "IDLEGRID_URL="+net.url, "IDLEGRID_API_KEY="+apiKey, fmt.Sprintf("IDLEGRID_MAX_TOKENS=%d", maxTokens))
			for k, v := range env {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var lines []line
			for _, raw := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
				if raw == "" {
					continue
				}
				var l line
				if jerr := json.Unmarshal([]byte(raw), &l); jerr != nil {
					t.Errorf("%s printed a line that is not a check: %v\n%s", c, jerr, raw)
					continue
				}
				l.Raw = raw
				lines = append(lines, l)
			}
			if err != nil {
				t.Errorf("node %s.mjs: %v\n%s", c, err, stderr.String())
			}
			mu.Lock()
			out[c] = lines
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// checkAll runs check on every line, as subtests client/feature/check. A
// client's error fails its check unless tolerated names its type.
func checkAll(t *testing.T, lines map[string][]line, tolerated map[string]bool, check func(*testing.T, line)) {
	for _, c := range clients {
		t.Run(c, func(t *testing.T) {
			for _, f := range features {
				var of []line
				for _, l := range lines[c] {
					if l.Feature == f {
						of = append(of, l)
					}
				}
				if len(of) == 0 {
					continue
				}
				t.Run(f, func(t *testing.T) {
					for _, l := range of {
						t.Run(l.Check, func(t *testing.T) {
							defer func() {
								if t.Failed() {
									t.Logf("the client reported: %s", l.Raw)
								}
							}()
							if l.Error != nil && tolerated[l.Error.Name] {
								t.Skipf("the model's answer did not suit the client: %s", l.Error)
							}
							if l.Error != nil {
								t.Fatalf("the client failed: %s", l.Error)
							}
							if l.Result == nil {
								t.Fatalf("no result: %s", l.Raw)
							}
							check(t, l)
						})
					}
				})
			}
		})
	}
}
