package node_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idlegrid/idlegrid/internal/node"
)

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns
// their files and a pool that trusts it.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "idlegrid test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestGatewayTLS: with a certificate the gateway serves HTTPS only; bad
// TLS settings are refused at start.
func TestGatewayTLS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	ctx := context.Background()
	g, err := node.StartGateway(ctx, node.GatewayConfig{Addr: "127.0.0.1:0", DataDir: t.TempDir(), TLSCert: certFile, TLSKey: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Shutdown(context.Background()) })
	if !strings.HasPrefix(g.URL(), "https://") {
		t.Fatalf("URL %s", g.URL())
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	resp, err := client.Get(g.URL() + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil {
		t.Fatalf("HTTPS /v1/models: %d, TLS %v", resp.StatusCode, resp.TLS != nil)
	}
	if resp, err := http.Get(strings.Replace(g.URL(), "https://", "http://", 1) + "/v1/models"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP served next to HTTPS")
		}
	}
	// A bad TLS setting is refused before the gateway opens its store or
	// listens: here on the address the gateway above holds, the error is
	// about TLS, and no data directory is created.
	taken := strings.TrimPrefix(g.URL(), "https://")
	for name, cfg := range map[string]node.GatewayConfig{
		"cert without key": {TLSCert: certFile},
		"cert and domains": {TLSCert: certFile, TLSKey: keyFile, TLSDomains: []string{"gw.example"}},
		"unreadable cert":  {TLSCert: keyFile, TLSKey: keyFile},
	} {
		cfg.Addr, cfg.DataDir = taken, filepath.Join(t.TempDir(), "gw")
		g, err := node.StartGateway(ctx, cfg)
		if err == nil {
			g.Shutdown(ctx)
			t.Errorf("%s: accepted", name)
			continue
		}
		if !strings.Contains(err.Error(), "TLS") {
			t.Errorf("%s: %v, want the TLS error before listening", name, err)
		}
		if _, err := os.Stat(cfg.DataDir); err == nil {
			t.Errorf("%s: the data directory was created before the TLS settings were checked", name)
		}
	}
}
