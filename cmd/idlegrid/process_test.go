package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/backend"
	"github.com/idlegrid/idlegrid/internal/backend/sim"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/protocol"
)

// The tests in this file run the real binary as separate processes, the
// way an operator does: flags, environment, output and signals included.

// buildBinary compiles idlegrid once per test binary run.
func buildBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the idlegrid binary; skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "idlegrid")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// proc is a running idlegrid process whose stdout is scanned for a line.
type proc struct {
	cmd   *exec.Cmd
	lines chan string
	done  chan error
}

func start(t *testing.T, bin string, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if testing.Verbose() {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, lines: make(chan string, 100), done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() { cmd.Process.Kill() })
	return p
}

// await returns the first submatch of re in the process's output.
func (p *proc) await(t *testing.T, re string) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(60 * time.Second)
	for {
		select {
		case l := <-p.lines:
			if m := rx.FindStringSubmatch(l); m != nil {
				return m[len(m)-1]
			}
		case err := <-p.done:
			t.Fatalf("process exited (%v) before printing %q", err, re)
		case <-deadline:
			t.Fatalf("no line matching %q within 60s", re)
		}
	}
}

// stop sends sig and requires a clean exit.
func (p *proc) stop(t *testing.T, sig os.Signal) {
	t.Helper()
	p.cmd.Process.Signal(sig)
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("exit after %v: %v", sig, err)
		}
	case <-time.After(40 * time.Second):
		t.Fatalf("no exit within 40s of %v", sig)
	}
}

// waitForSim waits until the gateway at base lists the simulator's model.
func waitForSim(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/v1/models")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(b), `"sim"`) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the provider never appeared in /v1/models")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func chat(t *testing.T, base, key string) string {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), "POST", base+"/v1/chat/completions",
		strings.NewReader(`{"model":"sim","max_tokens":5,"messages":[{"role":"user","content":"hello"}]}`))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"role":"assistant","content":" `) {
		t.Fatalf("chat: %d %s", resp.StatusCode, b)
	}
	return string(b)
}

func TestUpProcess(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	const key = "ig-process-test-0123456789"
	up := start(t, bin, []string{"IDLEGRID_DEV_API_KEY=" + key, "OLLAMA_HOST=127.0.0.1:1"},
		"up", "--addr", "127.0.0.1:0", "--data-dir", dir, "--backend", "auto", "--chain-rpc-addr", "127.0.0.1:0")
	base := up.await(t, `OpenAI API base URL:\s+(http://\S+)/v1`)
	chat(t, base, key)
	up.stop(t, os.Interrupt)
}

// TestSeparateRoles runs a gateway and a provider as separate processes and
// manages keys with the CLI while the gateway runs.
func TestSeparateRoles(t *testing.T) {
	bin := buildBinary(t)
	gwDir, pvDir := t.TempDir(), t.TempDir()
	gw := start(t, bin, nil, "gateway", "--addr", "127.0.0.1:0", "--data-dir", gwDir, "--log-format", "json")
	base := gw.await(t, `listening on (http://\S+) `)
	pv := start(t, bin, nil, "provide", "--gateway", base, "--backend", "sim", "--data-dir", pvDir, "--slots", "2", "--control-addr", "127.0.0.1:0")
	pv.await(t, `created provider key`)
	pv.await(t, `serving built-in simulator`)
	control := pv.await(t, `control endpoint (http://\S+)`)
	out, err := exec.Command(bin, "keys", "create", "--data-dir", gwDir).Output()
	if err != nil {
		t.Fatal(err)
	}
	key := strings.TrimSpace(string(out))
	waitForSim(t, base) // the agent may still be completing its handshake
	chat(t, base, key)
	// The owner pauses and resumes the running provider.
	provide := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, append([]string{"provide"}, append(args, "--control", control)...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("provide %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if out := provide("pause", "gaming"); !strings.Contains(out, "state     paused: gaming") {
		t.Fatalf("provide pause:\n%s", out)
	}
	if out := provide("status"); !strings.Contains(out, "paused: gaming") || !strings.Contains(out, "1 served") {
		t.Fatalf("provide status:\n%s", out)
	}
	if out := provide("resume"); !strings.Contains(out, "state     serving") {
		t.Fatalf("provide resume:\n%s", out)
	}
	// The resume reaches the gateway over the agent's connection, a moment
	// after the command returns.
	for deadline := time.Now().Add(10 * time.Second); ; {
		req, _ := http.NewRequest("POST", base+"/v1/chat/completions", strings.NewReader(`{"model":"sim","max_tokens":2,"messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %d after the resume", resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
	st, err := os.Stat(filepath.Join(pvDir, "provider.key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("provider key file: %v %v", st.Mode(), err)
	}
	pv.stop(t, syscall.SIGTERM)
	gw.stop(t, syscall.SIGTERM)
}

// TestSimProcess: the simulator as a standalone Ollama-compatible server.
func TestSimProcess(t *testing.T) {
	bin := buildBinary(t)
	sim := start(t, bin, nil, "sim", "--addr", "127.0.0.1:0", "--tokens-per-second", "0")
	base := sim.await(t, `Ollama API at (http://\S+)`)
	resp, err := http.Post(base+"/api/generate", "application/json", strings.NewReader(`{"model":"sim","prompt":"hi","stream":false,"options":{"num_predict":4}}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"done":true`) || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("generate: %d %v %s", resp.StatusCode, resp.Header, b)
	}
	sim.stop(t, os.Interrupt)
}

// longPrompt finds a prompt whose greedy answer from the default simulator
// (what `provide --backend sim` serves) is at least n tokens long, so that a
// stream is still running when the test interrupts it.
func longPrompt(t *testing.T, n int) string {
	t.Helper()
	s, err := sim.New(sim.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	zero := 0.0
	for i := range 500 {
		prompt := fmt.Sprintf("tell a long story %d", i)
		req := protocol.Request{Kind: protocol.KindChat, Model: "sim", Messages: []protocol.ChatMessage{{Role: "user", Content: prompt}},
			Options: protocol.Options{MaxTokens: 1000, Temperature: &zero}}
		res, err := s.Generate(context.Background(), req, func(backend.Delta) error { return nil })
		if err == nil && res.Usage.CompletionTokens >= uint64(n) {
			return prompt
		}
	}
	t.Fatalf("no prompt gives %d tokens", n)
	return ""
}

// TestProviderKilled: a provider process killed with SIGKILL mid-stream
// (no close frame, no goodbye) ends the consumer's stream with an error
// event, and no receipt is issued for the undelivered answer: at most the
// provider's last checkpoint, for tokens the consumer received.
func TestProviderKilled(t *testing.T) {
	bin := buildBinary(t)
	prompt := longPrompt(t, 60)
	gwDir, pvDir := t.TempDir(), t.TempDir()
	gw := start(t, bin, nil, "gateway", "--addr", "127.0.0.1:0", "--data-dir", gwDir)
	base := gw.await(t, `listening on (http://\S+) `)
	pv := start(t, bin, nil, "provide", "--gateway", base, "--backend", "sim", "--data-dir", pvDir, "--no-control")
	pv.await(t, `serving built-in simulator`)
	out, err := exec.Command(bin, "keys", "create", "--data-dir", gwDir).Output()
	if err != nil {
		t.Fatal(err)
	}
	key := strings.TrimSpace(string(out))
	deadline := time.Now().Add(30 * time.Second)
	var resp *http.Response
	for {
		req, _ := http.NewRequest("POST", base+"/v1/chat/completions", strings.NewReader(
			`{"model":"sim","stream":true,"temperature":0,"max_tokens":1000,"messages":[{"role":"user","content":"`+prompt+`"}]}`))
		req.Header.Set("Authorization", "Bearer "+key)
		if resp, err = http.DefaultClient.Do(req); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == 200 {
			break
		}
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatalf("stream not accepted: %d", resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond) // the agent is still connecting
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	delivered := 0 // content chunks: the simulator sends a token per chunk
	for range 3 {  // role chunk and two content chunks
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(line, `"content":"`) {
			delivered++
		}
		r.ReadString('\n')
	}
	pv.cmd.Process.Kill()
	var last string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			break
		}
		if line = strings.TrimSpace(line); line != "" {
			last = line
			if strings.Contains(line, `"content":"`) {
				delivered++
			}
		}
	}
	if !strings.HasPrefix(last, `data: {"error":`) || !strings.Contains(last, "provider") {
		t.Fatalf("stream ended with %q, want an error event about the provider", last)
	}
	id := resp.Header.Get("X-Request-Id")
	gw.stop(t, syscall.SIGTERM)
	// The killed provider is paid by its last checkpoint, if one reached the
	// gateway: a verified receipt for the prompt (the agent's estimate,
	// protocol version 3) and at most the tokens the consumer received;
	// never one for the undelivered rest of the answer.
	out, err = exec.Command(bin, "receipts", "verify", id, "--data-dir", gwDir).CombinedOutput()
	if err != nil {
		if !strings.Contains(string(out), "no receipt") {
			t.Fatalf("receipts verify: %v %s", err, out)
		}
		return
	}
	m := regexp.MustCompile(`tokens\s+(\d+) prompt \+ (\d+) completion`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("receipts verify printed no token counts:\n%s", out)
	}
	want := protocol.PromptEstimate(&protocol.Request{Messages: []protocol.ChatMessage{{Role: "user", Content: prompt}}})
	if prompt, completion := atoi(t, m[1]), atoi(t, m[2]); uint64(prompt) != want || completion == 0 || completion > delivered {
		t.Fatalf("the killed stream's receipt bills %d prompt (want %d) and %d completion tokens; the consumer received %d:\n%s", prompt, want, completion, delivered, out)
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// account reads GET /v1/account.
// account reads GET /v1/account: the deposit receipts are paid from, what
// is pending and settled, and the receipt counts.
func account(t *testing.T, base, key string) (deposit, pending, settled uint64, counts map[string]int64) {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/v1/account", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a struct {
		Deposit  uint64           `json:"deposit"`
		Pending  uint64           `json:"pending_settlement"`
		Settled  uint64           `json:"settled_spend"`
		Receipts map[string]int64 `json:"receipts"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /v1/account: %d %v", resp.StatusCode, err)
	}
	return a.Deposit, a.Pending, a.Settled, a.Receipts
}

// TestGatewayKilledBeforeSettlement: `up` serves requests and is killed with
// SIGKILL before settling any receipt. After a restart it settles every one
// of them exactly once: the consumer pays their sum, once, even across a
// further restart.
func TestGatewayKilledBeforeSettlement(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	const key = "ig-process-test-kill-0123456789"
	env := []string{"IDLEGRID_DEV_API_KEY=" + key, "OLLAMA_HOST=127.0.0.1:1"}
	args := []string{"up", "--addr", "127.0.0.1:0", "--data-dir", dir, "--backend", "sim", "--chain-rpc-addr", "127.0.0.1:0"}
	up := start(t, bin, env, append(args, "--settle-interval", "1h", "--settle-batch", "100000")...)
	base := up.await(t, `OpenAI API base URL:\s+(http://\S+)/v1`)
	for range 5 {
		chat(t, base, key)
	}
	before, pending, settled, counts := account(t, base, key)
	if pending == 0 || settled != 0 || counts["pending"] != 5 {
		t.Fatalf("before the kill: pending %d settled %d receipts %v; want 5 pending", pending, settled, counts)
	}
	up.cmd.Process.Kill()
	<-up.done

	up = start(t, bin, env, append(args, "--settle-interval", "100ms")...)
	base = up.await(t, `OpenAI API base URL:\s+(http://\S+)/v1`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		balance, p, s, c := account(t, base, key)
		if c["settled"] == 5 {
			if p != 0 || s != pending || balance != before-pending {
				t.Fatalf("after restart: balance %d (was %d), pending %d, settled %d; want %d charged once", balance, before, p, s, pending)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("receipts not settled after restart: %v", c)
		}
		time.Sleep(50 * time.Millisecond)
	}
	up.stop(t, os.Interrupt)

	// Once more: nothing is settled a second time.
	up = start(t, bin, env, append(args, "--settle-interval", "100ms")...)
	base = up.await(t, `OpenAI API base URL:\s+(http://\S+)/v1`)
	time.Sleep(500 * time.Millisecond)
	if balance, p, s, c := account(t, base, key); balance != before-pending || p != 0 || s != pending || c["settled"] != 5 {
		t.Fatalf("after a second restart: balance %d pending %d settled %d receipts %v", balance, p, s, c)
	}
	up.stop(t, os.Interrupt)
}

// TestValidatorAndLedgerCLI: a validator network from `validator init`,
// one node run by `validator start`, and the ledger read and changed with
// `idlegrid ledger` over its RPC; epochs pay the validator, its payout
// proof verifies (and a doctored one does not), it claims what vested, and
// it changes a parameter.
func TestValidatorAndLedgerCLI(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "alice.key")
	alice := writeKey(t, keyFile)
	bob := "idg" + strings.Repeat("0b", 20)
	appState := filepath.Join(dir, "genesis.json")
	if err := os.WriteFile(appState, []byte(`{"params":{"epoch_blocks":4,"vesting_blocks":2},"accounts":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "validator", "init", "--validators", "1", "--out", filepath.Join(dir, "net"), "--app-state", appState, "--fund", string(alice)+"=100").CombinedOutput()
	if err != nil {
		t.Fatalf("validator init: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0") // a free port for the metrics
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := ln.Addr().String()
	ln.Close()
	v := start(t, bin, nil, "validator", "start", "--home", filepath.Join(dir, "net", "node0"), "--metrics-addr", metricsAddr)
	rpc := v.await(t, `RPC at (http://\S+)`)
	ledger := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, append([]string{"ledger", "--chain-rpc", rpc, "--key-file", keyFile}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("ledger %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if out := ledger("balance"); !strings.Contains(out, "balance   100.000000") {
		t.Fatalf("balance at genesis:\n%s", out)
	}
	if out := ledger("send", bob, "2.5"); !strings.Contains(out, "ok") {
		t.Fatalf("send:\n%s", out)
	}
	ledger("stake", "10")
	if out := ledger("balance"); !strings.Contains(out, "balance   87.500000") || !strings.Contains(out, "stake     10.000000") {
		t.Fatalf("balance after send and stake:\n%s", out)
	}
	if out := ledger("balance", bob); !strings.Contains(out, "balance   2.500000") {
		t.Fatalf("recipient:\n%s", out)
	}
	// Four blocks make an epoch: the validator, which signed block 2 (the
	// commit block 3 carries), earned epoch 1's validator pool.
	rewardKey := filepath.Join(dir, "net", "node0", "config", "reward.key")
	if out := ledger("epoch", "1"); !strings.Contains(out, "epoch 1, heights 1 to 4") || !strings.Contains(out, "payees     2") {
		t.Fatalf("epoch 1:\n%s", out)
	}
	proofFile := filepath.Join(dir, "proof.json")
	out1 := ledger("--key-file", rewardKey, "payout", "--epoch", "1", "--out", proofFile)
	if !strings.Contains(out1, "epoch 1: idg") || !strings.Contains(out1, "earned 20000.000000") {
		t.Fatalf("payout:\n%s", out1)
	}
	if out := ledger("verify-payout", proofFile); !strings.HasPrefix(out, "ok: ") {
		t.Fatalf("verify-payout:\n%s", out)
	}
	// The root the audit recomputes from the blocks verifies it too.
	auditOut, err := exec.Command(bin, "audit", "--chain-rpc", rpc, "--epoch", "1").CombinedOutput()
	if err != nil || !strings.Contains(string(auditOut), "every app hash matches") {
		t.Fatalf("audit: %v\n%s", err, auditOut)
	}
	m := regexp.MustCompile(`epoch 1 payout root, recomputed from the blocks: ([0-9a-f]{64})`).FindStringSubmatch(string(auditOut))
	if m == nil {
		t.Fatalf("audit printed no root for epoch 1:\n%s", auditOut)
	}
	if out := ledger("verify-payout", "--root", m[1], proofFile); !strings.HasPrefix(out, "ok: ") {
		t.Fatalf("verify-payout --root:\n%s", out)
	}
	proof, _ := os.ReadFile(proofFile)
	doctored := regexp.MustCompile(`"amount": \d+`).ReplaceAll(proof, []byte(`"amount": 99000000`))
	if err := os.WriteFile(proofFile, doctored, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "ledger", "--chain-rpc", rpc, "verify-payout", proofFile).CombinedOutput(); err == nil || !strings.Contains(string(out), "REJECTED") {
		t.Fatalf("a doctored proof: %v\n%s", err, out)
	}
	// The reward vests over two blocks; by now it has.
	if out := ledger("--key-file", rewardKey, "claim"); !strings.Contains(out, "ok") {
		t.Fatalf("claim:\n%s", out)
	}
	// The one validator approves and submits a parameter change.
	change := filepath.Join(dir, "change.json")
	if err := os.WriteFile(change, []byte(`{"epoch_emission": 1000000}`), 0o644); err != nil {
		t.Fatal(err)
	}
	approval := filepath.Join(dir, "approval.json")
	if err := os.WriteFile(approval, []byte(ledger("--key-file", rewardKey, "params", "approve", change)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := ledger("params", "submit", change, "--approval", approval); !strings.Contains(out, "ok") {
		t.Fatalf("params submit:\n%s", out)
	}
	if out := ledger("params"); !strings.Contains(out, `"epoch_emission": 1000000`) || !strings.Contains(out, `"params_version": 1`) {
		t.Fatalf("params after the change:\n%s", out)
	}
	// Provider onboarding: the new key has no money, so init says how to
	// fund it; once funded, it registers and stakes.
	pvDir := t.TempDir()
	initArgs := []string{"provide", "init", "--backend", "sim", "--runs", "2", "--max-tokens", "8", "--data-dir", pvDir, "--chain-rpc", rpc, "--stake", "5"}
	out2, err := exec.Command(bin, initArgs...).CombinedOutput()
	m2 := regexp.MustCompile(`ledger address (idg[0-9a-f]+)`).FindStringSubmatch(string(out2))
	if err == nil || m2 == nil || !strings.Contains(string(out2), "send it tokens first") || !strings.Contains(string(out2), "tokens/s") {
		t.Fatalf("provide init without funds: %v\n%s", err, out2)
	}
	ledger("send", m2[1], "6")
	out2, err = exec.Command(bin, initArgs...).CombinedOutput()
	if err != nil || !strings.Contains(string(out2), "registered as a provider") || !strings.Contains(string(out2), "staked 5.000000") ||
		!strings.Contains(string(out2), "idlegrid provide --gateway URL --key-file "+filepath.Join(pvDir, "provider.key")) {
		t.Fatalf("provide init: %v\n%s", err, out2)
	}
	if out := ledger("balance", m2[1]); !strings.Contains(out, "stake     5.000000") || !strings.Contains(out, "roles     provider") {
		t.Fatalf("provider after init:\n%s", out)
	}
	// The audit replays the chain over RPC and agrees.
	if out, err := exec.Command(bin, "audit", "--chain-rpc", rpc).CombinedOutput(); err != nil || !strings.Contains(string(out), "every app hash matches") {
		t.Fatalf("audit: %v\n%s", err, out)
	}
	// CometBFT's metrics: the block height among them.
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(mb), "cometbft_consensus_height") {
		t.Errorf("validator metrics lack the block height:\n%.500s", mb)
	}
	// An overdraft fails with the ledger's reason and a non-zero exit.
	cmd := exec.Command(bin, "ledger", "--chain-rpc", rpc, "--key-file", keyFile, "send", bob, "1000")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "balance") {
		t.Fatalf("overdraft: %v\n%s", err, out)
	}
	v.stop(t, os.Interrupt)
	if out, err := exec.Command(bin, "audit", "--home", filepath.Join(dir, "net", "node0")).CombinedOutput(); err != nil || !strings.Contains(string(out), "every app hash matches") {
		t.Fatalf("audit --home: %v\n%s", err, out)
	}
}

// writeKey writes a fresh key file and returns its address.
func writeKey(t *testing.T, path string) keys.Address {
	t.Helper()
	k, err := keys.Generate()
	if err != nil {
		t.Fatal(err)
	}
	if err := keys.Save(path, k); err != nil {
		t.Fatal(err)
	}
	return k.Public().Address()
}

// TestSeparateRolesOnLedger runs a validator, a gateway settling on it
// (--chain-rpc) and a provider as separate processes: a funded consumer is
// served and its receipt settles on the ledger; an unfunded one gets 402.
func TestSeparateRolesOnLedger(t *testing.T) {
	bin := buildBinary(t)
	dir, gwDir, pvDir := t.TempDir(), t.TempDir(), t.TempDir()
	gw := writeKey(t, filepath.Join(gwDir, "gateway.key"))
	pv := writeKey(t, filepath.Join(pvDir, "provider.key"))
	consumer := writeKey(t, filepath.Join(dir, "consumer.key"))
	gwKey, _ := keys.Load(filepath.Join(gwDir, "gateway.key"))
	pvKey, _ := keys.Load(filepath.Join(pvDir, "provider.key"))
	genesis := fmt.Sprintf(`{"accounts":[
		{"address":%q,"balance":100000000,"approvals":[{"gateway":%q,"deposit":100000000}]},
		{"address":%q,"pub_key":%q,"stake":5000000000,"roles":["gateway"]},
		{"address":%q,"pub_key":%q,"stake":500000000,"roles":["provider"]}]}`,
		consumer, gw, gw, gwKey.Public(), pv, pvKey.Public())
	appState := filepath.Join(dir, "genesis.json")
	if err := os.WriteFile(appState, []byte(genesis), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "validator", "init", "--validators", "1", "--chain-id", "roles-test", "--out", filepath.Join(dir, "net"), "--app-state", appState).CombinedOutput(); err != nil {
		t.Fatalf("validator init: %v\n%s", err, out)
	}
	v := start(t, bin, nil, "validator", "start", "--home", filepath.Join(dir, "net", "node0"))
	rpc := v.await(t, `RPC at (http://\S+)`)
	g := start(t, bin, nil, "gateway", "--addr", "127.0.0.1:0", "--data-dir", gwDir, "--chain-id", "roles-test", "--chain-rpc", rpc, "--settle-interval", "100ms")
	base := g.await(t, `listening on (http://\S+) `)
	p := start(t, bin, nil, "provide", "--gateway", base, "--backend", "sim", "--data-dir", pvDir, "--chain-id", "roles-test", "--no-control")
	p.await(t, `serving built-in simulator`)
	apiKey := func(account keys.Address) string {
		t.Helper()
		out, err := exec.Command(bin, "keys", "create", "--data-dir", gwDir, "--account", string(account)).Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	key := apiKey(consumer)
	waitForSim(t, base)
	chat(t, base, key)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, pending, settled, c := account(t, base, key)
		if c["settled"] == 1 {
			if pending != 0 || settled == 0 {
				t.Fatalf("settled receipt: pending %d settled %d", pending, settled)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the receipt did not settle: %v", c)
		}
		time.Sleep(50 * time.Millisecond)
	}
	poor := apiKey(keys.Address("idg" + strings.Repeat("0c", 20)))
	req, _ := http.NewRequest("POST", base+"/v1/chat/completions", strings.NewReader(`{"model":"sim","max_tokens":5,"messages":[{"role":"user","content":"hello"}]}`))
	req.Header.Set("Authorization", "Bearer "+poor)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPaymentRequired || !strings.Contains(string(b), "insufficient_funds") {
		t.Fatalf("unfunded consumer: %d %s", resp.StatusCode, b)
	}
	// A provider whose key the ledger does not know is refused at the
	// handshake, and `provide` tells its user what to run.
	stranger := exec.Command(bin, "provide", "--gateway", base, "--backend", "sim", "--data-dir", t.TempDir(), "--chain-id", "roles-test", "--no-control")
	stderr, err := stranger.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := stranger.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stranger.Process.Kill(); stranger.Wait() })
	told := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "idlegrid provide: the gateway refuses this provider") {
				told <- sc.Text()
			}
		}
		close(told)
	}()
	select {
	case line := <-told:
		if !strings.Contains(line, "not registered as a provider on the ledger; run `idlegrid provide init`") {
			t.Fatalf("unregistered provider was told: %s", line)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("an unregistered provider was not told why the gateway refuses it")
	}
	p.stop(t, syscall.SIGTERM)
	g.stop(t, syscall.SIGTERM)
	v.stop(t, os.Interrupt)
}
