package node_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/gateway"
	"github.com/idlegrid/idlegrid/internal/gateway/api/apitypes"
	"github.com/idlegrid/idlegrid/internal/node"
)

// ollamaCLI runs the real ollama CLI (OLLAMA_BIN) against the network's
// gateway, with a HOME of its own and no API key (it cannot send one);
// it returns stdout, stderr without terminal escapes, and the error.
func ollamaCLI(t *testing.T, tn *testNet, args ...string) (string, string, error) {
	t.Helper()
	return ollamaCLIInput(t, tn, "", args...)
}

// ollamaCLIInput is ollamaCLI with stdin.
func ollamaCLIInput(t *testing.T, tn *testNet, stdin string, args ...string) (string, string, error) {
	t.Helper()
	bin := ollamaBin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "OLLAMA_HOST="+strings.TrimPrefix(tn.URL, "http://"), "HOME="+t.TempDir(), "OLLAMA_API_KEY=")
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr, cmd.Stdin = &out, &errOut, strings.NewReader(stdin)
	err := cmd.Run()
	return out.String(), terminalEscapes.ReplaceAllString(errOut.String(), ""), err
}

// ollamaBin is the ollama CLI binary the tests run (OLLAMA_BIN); the test
// is skipped without one.
func ollamaBin(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("OLLAMA_BIN")
	if bin == "" {
		t.Skip("OLLAMA_BIN is not set: the ollama CLI tests need the binary of an Ollama release")
	}
	return bin
}

var terminalEscapes = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

// fields splits CLI output into lines of space-separated fields.
func fields(out string) [][]string {
	var rows [][]string
	for line := range strings.Lines(out) {
		if f := strings.Fields(line); len(f) > 0 {
			rows = append(rows, f)
		}
	}
	return rows
}

// hasRow reports whether some line of out has exactly these fields.
func hasRow(out string, want ...string) bool {
	for _, row := range fields(out) {
		if strings.Join(row, " ") == strings.Join(want, " ") {
			return true
		}
	}
	return false
}

// TestOllamaCLI drives the gateway of `up` on the simulator with the real
// ollama CLI, which sends no API key: list, show, ps, pull (a model the
// network serves, and one it does not) and run with a prompt, whose answer
// is the simulator's, billed to the dev account with a receipt.
func TestOllamaCLI(t *testing.T) {
	ollamaBin(t)
	tn := startNet(t, netOptions{keyless: true})
	digest := tn.Gateway.Hub.Snapshot()[0].Capabilities.Models[0].Digest

	out, _, err := ollamaCLI(t, tn, "list")
	if err != nil || !hasRow(out, "NAME", "ID", "SIZE", "MODIFIED") || !strings.HasPrefix(strings.Join(fields(out)[1], " "), "sim "+digest[:12]+" ") {
		t.Errorf("ollama list: %v\n%s", err, out)
	}
	out, _, err = ollamaCLI(t, tn, "show", "sim")
	for _, row := range [][]string{{"architecture", "sim"}, {"parameters", "1B"}, {"context", "length", "4096"}, {"embedding", "length", "0"}, {"quantization", "Q8_0"}, {"completion"}} {
		if !hasRow(out, row...) {
			t.Errorf("ollama show: no row %q: %v\n%s", row, err, out)
		}
	}
	out, _, err = ollamaCLI(t, tn, "ps")
	if err != nil || !hasRow(out, "NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL") || !hasRow(out, "sim", digest[:12], "0", "B", "100%", "CPU", "4096", "Forever") {
		t.Errorf("ollama ps: %v\n%s", err, out)
	}
	_, errOut, err := ollamaCLI(t, tn, "pull", "sim")
	if err != nil || !hasRow(errOut, "success") {
		t.Errorf("ollama pull sim: %v\n%s", err, errOut)
	}
	_, errOut, err = ollamaCLI(t, tn, "pull", "no-such-model")
	if err == nil || !strings.Contains(errOut, "Error: pull model manifest: file does not exist") {
		t.Errorf("ollama pull no-such-model: %v\n%s", err, errOut)
	}

	// With a prompt, `run` generates (/api/generate): what it prints is
	// the simulator's answer to the same prompt.
	status, body := post(t, tn.URL+"/api/generate", testAPIKey, `{"model":"sim","stream":false,"prompt":"hello there"}`)
	var want struct{ Response string }
	if err := json.Unmarshal(body, &want); status != 200 || err != nil || want.Response == "" {
		t.Fatalf("/api/generate: %d %s", status, body)
	}
	status, body = post(t, tn.URL+"/api/generate", testAPIKey, `{"model":"sim","stream":false,"prompt":"hello there\n"}`)
	var wantStdin struct{ Response string }
	if err := json.Unmarshal(body, &wantStdin); status != 200 || err != nil || wantStdin.Response == "" {
		t.Fatalf("/api/generate: %d %s", status, body)
	}
	ctx := context.Background()
	before, err := tn.Gateway.Store.ConsumerSpend(ctx, tn.Account)
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, err = ollamaCLI(t, tn, "run", "sim", "hello there")
	if err != nil || strings.TrimSpace(out) != strings.TrimSpace(want.Response) {
		t.Errorf("ollama run: %v\nstdout %q\nwant   %q\nstderr %s", err, out, want.Response, errOut)
	}
	// Without a terminal, the prompt may come on stdin (all of it, its
	// newline included).
	out, errOut, err = ollamaCLIInput(t, tn, "hello there\n", "run", "sim")
	if err != nil || strings.TrimSpace(out) != strings.TrimSpace(wantStdin.Response) {
		t.Errorf("echo prompt | ollama run: %v\nstdout %q\nwant   %q\nstderr %s", err, out, wantStdin.Response, errOut)
	}
	after, err := tn.Gateway.Store.ConsumerSpend(ctx, tn.Account)
	if err != nil {
		t.Fatal(err)
	}
	if n := after.PendingCount + after.SettledCount - before.PendingCount - before.SettledCount; n != 2 {
		t.Errorf("two ollama runs left %d receipts for the dev account, want 2", n)
	}
}

// TestOllamaCLIRealOllama: the same commands with a real Ollama behind
// the provider (plumbing: the tiny model's text is gibberish).
func TestOllamaCLIRealOllama(t *testing.T) {
	ollamaBin(t)
	ollamaURL := os.Getenv("OLLAMA_URL")
	if ollamaURL == "" {
		t.Skip("OLLAMA_URL not set: start a test Ollama with shared/scripts/ollama-test-server.sh start")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, err := node.OpenBackend(ctx, node.BackendOllama, ollamaURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The random-weight model never stops by itself: 16 tokens, not 1024.
	tn := startNet(t, netOptions{backend: b, slots: 2, keyless: true, gateway: gateway.Config{DefaultMaxTokens: 16}})
	out, _, err := ollamaCLI(t, tn, "show", "tiny")
	// The provider reports the counts the backend's /api/show has.
	for _, row := range [][]string{{"architecture", "llama"}, {"parameters", "513K"}, {"context", "length", "4096"}, {"embedding", "length", "8"}, {"quantization", "F16"}} {
		if !hasRow(out, row...) {
			t.Errorf("ollama show tiny: no row %q: %v\n%s", row, err, out)
		}
	}
	if out, _, err = ollamaCLI(t, tn, "ps"); err != nil || !strings.Contains(out, "tiny:latest") {
		t.Errorf("ollama ps: %v\n%s", err, out)
	}
	if _, errOut, err := ollamaCLI(t, tn, "pull", "tiny"); err != nil || !hasRow(errOut, "success") {
		t.Errorf("ollama pull tiny: %v\n%s", err, errOut)
	}
	out, errOut, err := ollamaCLI(t, tn, "run", "tiny", "hello", "--verbose")
	if err != nil || strings.TrimSpace(out) == "" || !strings.Contains(errOut, "eval count:") {
		t.Errorf("ollama run tiny: %v\nstdout %q\nstderr %s", err, out, errOut)
	}
}

// TestKeylessUp: `up` with keyless access serves a loopback client
// without an API key, billed to the dev account, and its banner says so;
// without it (as `idlegrid gateway` by default) the same request is a 401.
func TestKeylessUp(t *testing.T) {
	const chat = `{"model":"sim","max_tokens":3,"messages":[{"role":"user","content":"hi"}]}`
	for _, keyless := range []bool{true, false} {
		tn := startNet(t, netOptions{keyless: keyless})
		status, body := post(t, tn.URL+"/v1/chat/completions", "", chat)
		want := map[bool]int{true: 200, false: 401}[keyless]
		if status != want {
			t.Fatalf("keyless %v: status %d, want %d: %s", keyless, status, want, body)
		}
		var banner strings.Builder
		tn.PrintBanner(&banner, tn.DataDir)
		wantBanner := map[bool]string{true: "Keyless access:       on for loopback clients", false: "Keyless access:       off"}[keyless]
		if !strings.Contains(banner.String(), wantBanner) {
			t.Errorf("keyless %v: banner without %q:\n%s", keyless, wantBanner, banner.String())
		}
		if !keyless {
			continue
		}
		var resp apitypes.ChatCompletion
		if err := json.Unmarshal(body, &resp); err != nil {
			t.Fatal(err)
		}
		s, err := tn.Gateway.Store.Receipt(context.Background(), resp.ID)
		if err != nil || s.Receipt.Consumer != tn.Account {
			t.Errorf("receipt %s: consumer %v (%v), want the dev account %s", resp.ID, s.Receipt.Consumer, err, tn.Account)
		}
		if status, body := post(t, tn.URL+"/v1/chat/completions", "ig-wrong", chat); status != 401 {
			t.Errorf("a wrong key on loopback: %d %s, want 401 (a key sent is checked)", status, body)
		}
	}
}
