package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestNoSecretsInLogs runs the embedded network with debug logs, serves
// requests (good key, bad key), settles them on the ledger, creates and
// uses another API key, lets the dev verifier post a verdict, then reads every secret the run holds — API keys,
// every key file's private seed, the validator's and the node's CometBFT
// private keys — and fails if any of them appears in the logs. The API key
// fixed for the run may appear on stdout only in the banner, which is there
// to show it.
func TestNoSecretsInLogs(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	const devKey = "ig-secret-test-0123456789abcdef"
	logFile := filepath.Join(t.TempDir(), "up.log")
	lf, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	cmd := exec.Command(bin, "up", "--addr", "127.0.0.1:0", "--data-dir", dir, "--backend", "sim", "--chain-rpc-addr", "127.0.0.1:0",
		"--settle-interval", "100ms", "--verify-every", "50ms", "--log-level", "debug", "--log-format", "json")
	cmd.Env = append(os.Environ(), "IDLEGRID_DEV_API_KEY="+devKey)
	cmd.Stderr = lf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	var banner strings.Builder
	baseRE := regexp.MustCompile(`OpenAI API base URL:\s+(http://\S+)/v1`)
	base := ""
	sc := bufio.NewScanner(stdout)
	for base == "" && sc.Scan() {
		banner.WriteString(sc.Text() + "\n")
		if m := baseRE.FindStringSubmatch(sc.Text()); m != nil {
			base = m[1]
		}
	}
	if base == "" {
		t.Fatalf("no base URL in:\n%s", banner.String())
	}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		for sc.Scan() {
			banner.WriteString(sc.Text() + "\n")
		}
	}()
	waitForSim(t, base)
	chat(t, base, devKey)
	req, _ := http.NewRequest("POST", base+"/v1/chat/completions", strings.NewReader(`{"model":"sim","messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer ig-wrong-0123456789abcdef")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	out, err := exec.Command(bin, "keys", "create", "--data-dir", dir).Output()
	if err != nil {
		t.Fatal(err)
	}
	second := strings.TrimSpace(string(out))
	chat(t, base, second)
	// Wait for the dev verifier's first verdict, so its logs are checked too.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		b, _ := os.ReadFile(logFile)
		if strings.Contains(string(b), `"msg":"verdict"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the dev verifier reached no verdict")
		}
	}
	cmd.Process.Signal(syscall.SIGINT)
	<-scanned // stdout ends when the process does
	cmd.Wait()

	secrets := map[string]string{"the dev API key": devKey, "the dev API key's body": strings.TrimPrefix(devKey, "ig-"),
		"a created API key": second, "a created API key's body": strings.TrimPrefix(second, "ig-")}
	for _, f := range []string{"dev-account.key", "gateway.key", "provider.key", "verifier.key", filepath.Join("chain", "config", "reward.key")} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatalf("key file %s: %v", f, err)
		}
		var kf struct{ Seed string }
		if err := json.Unmarshal(b, &kf); err != nil || len(kf.Seed) != 64 {
			t.Fatalf("key file %s: %v", f, err)
		}
		secrets[f+" seed"] = kf.Seed
		raw, _ := hex.DecodeString(kf.Seed)
		secrets[f+" seed (base64)"] = base64.StdEncoding.EncodeToString(raw)
		if f == "verifier.key" {
			h := sha256.Sum256(append([]byte("idlegrid/verifier-api-key\n"), raw...))
			secrets["the dev verifier's API key"] = hex.EncodeToString(h[:16])
		}
	}
	for _, f := range []string{"priv_validator_key.json", "node_key.json"} {
		b, err := os.ReadFile(filepath.Join(dir, "chain", "config", f))
		if err != nil {
			t.Fatal(err)
		}
		var kf struct {
			PrivKey struct{ Value string } `json:"priv_key"`
		}
		if err := json.Unmarshal(b, &kf); err != nil || kf.PrivKey.Value == "" {
			t.Fatalf("%s: %v", f, err)
		}
		secrets[f] = kf.PrivKey.Value
	}
	logs, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(logs) < 1000 || !strings.Contains(string(logs), `"level":"DEBUG"`) {
		t.Fatalf("the run logged only %d bytes, or nothing at debug level", len(logs))
	}
	for what, s := range secrets {
		if strings.Contains(string(logs), s) {
			t.Errorf("the logs contain %s", what)
		}
		if !strings.Contains(what, "API key") && strings.Contains(banner.String(), s) {
			t.Errorf("the output contains %s", what)
		}
	}
	t.Logf("%d bytes of logs checked for %d secrets", len(logs), len(secrets))
}
