package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// run executes the CLI in-process and returns stdout, stderr and the error.
func run(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := newRootCmd(&out, &errOut)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

func signedReceipt(t *testing.T) receipt.Signed {
	t.Helper()
	provider, _ := keys.Generate()
	gateway, _ := keys.Generate()
	consumer, _ := keys.Generate()
	r := receipt.Receipt{Version: receipt.Version, ChainID: "idlegrid-dev", RequestID: "chatcmpl-test", Gateway: gateway.Public(), Provider: provider.Public(),
		Consumer: consumer.Public().Address(), Model: "sim", ModelDigest: strings.Repeat("ab", 32), PromptTokens: 10, CompletionTokens: 20,
		PricePromptPerMTok: 200_000, PriceCompletionPerMTok: 600_000, StartUnixMs: 1, EndUnixMs: 2}
	var err error
	if r.Amount, err = receipt.ComputeAmount(r.PromptTokens, r.CompletionTokens, r.PricePromptPerMTok, r.PriceCompletionPerMTok); err != nil {
		t.Fatal(err)
	}
	return receipt.Signed{Receipt: r, ProviderSignature: receipt.SignProvider(provider, &r), GatewaySignature: receipt.SignGateway(gateway, &r)}
}

func TestReceiptsVerify(t *testing.T) {
	dir := t.TempDir()
	s := signedReceipt(t)
	good := filepath.Join(dir, "good.json")
	b, _ := json.Marshal(s)
	os.WriteFile(good, b, 0o600)
	out, _, err := run(t, "receipts", "verify", good, "--data-dir", dir)
	if err != nil || !strings.Contains(out, "chatcmpl-test verifies") || !strings.Contains(out, "10 prompt + 20 completion") {
		t.Fatalf("valid receipt: %v\n%s", err, out)
	}
	s.Receipt.CompletionTokens = 2000 // inflate after signing
	s.Receipt.Amount, _ = receipt.ComputeAmount(s.Receipt.PromptTokens, s.Receipt.CompletionTokens, s.Receipt.PricePromptPerMTok, s.Receipt.PriceCompletionPerMTok)
	bad := filepath.Join(dir, "bad.json")
	b, _ = json.Marshal(s)
	os.WriteFile(bad, b, 0o600)
	if _, _, err := run(t, "receipts", "verify", bad, "--data-dir", dir); err == nil || !strings.Contains(err.Error(), "does NOT verify") {
		t.Fatalf("tampered receipt: %v", err)
	}
	garbage := filepath.Join(dir, "garbage.json")
	os.WriteFile(garbage, []byte("{not json"), 0o600)
	if _, _, err := run(t, "receipts", "verify", garbage, "--data-dir", dir); err == nil {
		t.Fatal("garbage accepted")
	}
	if _, _, err := run(t, "receipts", "verify", "chatcmpl-unknown", "--data-dir", dir); err == nil || !strings.Contains(err.Error(), "no gateway database") {
		t.Fatalf("unknown id without a database: %v", err)
	}
}

func TestKeysCommands(t *testing.T) {
	dir := t.TempDir()
	out, stderr, err := run(t, "keys", "create", "--name", "ci", "--data-dir", dir)
	secret := strings.TrimSpace(out)
	if err != nil || !strings.HasPrefix(secret, "ig-") || !strings.Contains(stderr, "shown only now") {
		t.Fatalf("create: %v %q %q", err, out, stderr)
	}
	out, _, err = run(t, "keys", "list", "--data-dir", dir)
	if err != nil || !strings.Contains(out, "ci") || strings.Contains(out, secret) {
		t.Fatalf("list (must not show the secret): %v\n%s", err, out)
	}
	id := strings.Fields(strings.Split(out, "\n")[1])[0]
	if _, _, err := run(t, "keys", "revoke", id, "--data-dir", dir); err != nil {
		t.Fatal(err)
	}
	out, _, _ = run(t, "keys", "list", "--data-dir", dir)
	if !strings.Contains(out, "revoked") {
		t.Fatalf("not shown revoked:\n%s", out)
	}
	if _, _, err := run(t, "keys", "revoke", "key_nope", "--data-dir", dir); err == nil {
		t.Fatal("revoking an unknown key succeeded")
	}
	if _, _, err := run(t, "keys", "create", "--account", "not-an-address", "--data-dir", dir); err == nil {
		t.Fatal("bad account accepted")
	}
}

// TestConfigPrecedence: flag > IDLEGRID_* environment > config file > default.
func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	fileDir := filepath.Join(dir, "from-file")
	envDir := filepath.Join(dir, "from-env")
	flagDir := filepath.Join(dir, "from-flag")
	cfg := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfg, []byte("data-dir: "+fileDir+"\n"), 0o600)

	created := func(d string) bool {
		_, err := os.Stat(filepath.Join(d, "gateway.db"))
		return err == nil
	}
	if _, _, err := run(t, "--config", cfg, "keys", "create"); err != nil || !created(fileDir) {
		t.Fatalf("config file not applied: %v", err)
	}
	t.Setenv("IDLEGRID_DATA_DIR", envDir)
	if _, _, err := run(t, "--config", cfg, "keys", "create"); err != nil || !created(envDir) {
		t.Fatalf("environment does not win over the file: %v", err)
	}
	if _, _, err := run(t, "--config", cfg, "keys", "create", "--data-dir", flagDir); err != nil || !created(flagDir) {
		t.Fatalf("flag does not win over the environment: %v", err)
	}
	// A value from the environment or the file counts as given: a flag
	// that must be given explicitly takes it from there too.
	t.Setenv("IDLEGRID_EPOCH", "3")
	if _, _, err := run(t, "ledger", "payout", "--chain-rpc", "http://127.0.0.1:1"); err == nil || strings.Contains(err.Error(), "--epoch is required") {
		t.Fatalf("IDLEGRID_EPOCH not taken as --epoch: %v", err)
	}
	os.WriteFile(cfg, []byte("epoch: 3\n"), 0o600)
	t.Setenv("IDLEGRID_EPOCH", "")
	os.Unsetenv("IDLEGRID_EPOCH")
	if _, _, err := run(t, "--config", cfg, "ledger", "payout", "--chain-rpc", "http://127.0.0.1:1"); err == nil || strings.Contains(err.Error(), "--epoch is required") {
		t.Fatalf("epoch from the config file not taken as --epoch: %v", err)
	}
	if _, _, err := run(t, "--config", filepath.Join(dir, "missing.yaml"), "keys", "list"); err == nil {
		t.Fatal("missing config file accepted")
	}
	if _, _, err := run(t, "--log-format", "xml", "keys", "list"); err == nil {
		t.Fatal("bad log format accepted")
	}
}
