package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// PortkeyVersion is the Portkey AI gateway (npm @portkey-ai/gateway, a
// Node.js gateway for OpenAI-compatible APIs) that the overhead bench runs
// as its peer: pinned, so figures from different days compare.
const PortkeyVersion = "1.15.2"

// portkeyNodeServer is the @hono/node-server (Portkey's HTTP server for
// Node) installed with it: the release Portkey's own lock file pins.
// Portkey's package asks for ^1.3.3, which npm resolves to the newest,
// and with 1.14.2 as with 1.19.19 every streamed answer through Portkey
// fails on Node 20 ("TypeError: immutable" when Portkey adds its headers;
// Portkey issues 1389 and 1550).
const portkeyNodeServer = "1.13.5"

// portkeyPackage is the package.json the pinned Portkey is installed
// from: the override holds every copy of @hono/node-server in the tree to
// portkeyNodeServer.
const portkeyPackage = `{
  "private": true,
  "dependencies": {"@portkey-ai/gateway": "` + PortkeyVersion + `"},
  "overrides": {"@hono/node-server": "` + portkeyNodeServer + `"}
}
`

// portkeyPeer is a running Portkey gateway in front of one OpenAI-compatible
// upstream.
type portkeyPeer struct {
	// URL is the gateway's base URL (http://127.0.0.1:port).
	URL string
	// Upstream is what the x-portkey-custom-host header names.
	Upstream string
	cmd      *exec.Cmd
	done     chan struct{}
	log      *bytes.Buffer
}

// errNoNode says the peer cannot run here; the bench skips its column.
var errNoNode = errors.New("node and npm are not both on PATH")

// portkeyDir is where the pinned Portkey is installed: the user's cache
// directory, so it is downloaded once per machine.
func portkeyDir() (string, error) {
	if d := os.Getenv("IDLEGRID_PORTKEY_DIR"); d != "" {
		return d, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(cache, "idlegrid", "portkey-"+PortkeyVersion+"-node-server-"+portkeyNodeServer), nil
}

// portkeyEntry is the installed server script under dir.
func portkeyEntry(dir string) string {
	return filepath.Join(dir, "node_modules", "@portkey-ai", "gateway", "build", "start-server.js")
}

// portkeyInstalled says whether dir holds the pinned Portkey with the
// pinned @hono/node-server.
func portkeyInstalled(dir string) bool {
	if _, err := os.Stat(portkeyEntry(dir)); err != nil {
		return false
	}
	b, err := os.ReadFile(filepath.Join(dir, "node_modules", "@hono", "node-server", "package.json"))
	var pkg struct{ Version string }
	return err == nil && json.Unmarshal(b, &pkg) == nil && pkg.Version == portkeyNodeServer
}

// installPortkey installs the pinned Portkey into its cache directory
// unless it is there already, and returns the server script's path.
func installPortkey(ctx context.Context, out func(string)) (string, error) {
	if _, err := exec.LookPath("node"); err != nil {
		return "", errNoNode
	}
	dir, err := portkeyDir()
	if err != nil {
		return "", err
	}
	entry := portkeyEntry(dir)
	if portkeyInstalled(dir) {
		return entry, nil
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return "", errNoNode
	}
	out(fmt.Sprintf("installing @portkey-ai/gateway@%s (@hono/node-server@%s) into %s", PortkeyVersion, portkeyNodeServer, dir))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "package.json"), []byte(portkeyPackage), 0o644); err != nil {
		return "", err
	}
	ictx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ictx, npm, "install", "--prefix", dir, "--no-audit", "--no-fund", "--ignore-scripts")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("npm install @portkey-ai/gateway@%s: %w\n%s", PortkeyVersion, err, b)
	}
	if !portkeyInstalled(dir) {
		return "", fmt.Errorf("npm installed @portkey-ai/gateway@%s without %s or without @hono/node-server@%s", PortkeyVersion, entry, portkeyNodeServer)
	}
	return entry, nil
}

// startPortkey runs the Portkey gateway on a free loopback port in front of
// upstream (an OpenAI-compatible base URL without /v1) and waits until it
// answers. Requests name the upstream per request, with Portkey's own
// headers (see header).
func startPortkey(ctx context.Context, upstream string, out func(string)) (*portkeyPeer, error) {
	entry, err := installPortkey(ctx, out)
	if err != nil {
		return nil, err
	}
	// Portkey prints the port it was given, not the one it got, so it is
	// given a free one rather than 0.
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	p := &portkeyPeer{URL: "http://127.0.0.1:" + strconv.Itoa(port), Upstream: upstream + "/v1", done: make(chan struct{}), log: &bytes.Buffer{}}
	preload := filepath.Join(filepath.Dir(entry), "idlegrid-loopback.cjs")
	if err := os.WriteFile(preload, []byte(loopbackPreload), 0o644); err != nil {
		return nil, err
	}
	p.cmd = exec.Command("node", "--require", preload, entry, "--port="+strconv.Itoa(port), "--headless")
	p.cmd.Env = append(os.Environ(), "NODE_ENV=production")
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start portkey: %w", err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.URL + "/")
		if err == nil {
			resp.Body.Close()
			return p, nil
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("portkey exited: %s", p.log)
		case <-ctx.Done():
			p.Close()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Close()
			return nil, fmt.Errorf("portkey did not answer on %s within 30 s: %s", p.URL, p.log)
		}
	}
}

// loopbackPreload binds the servers of Portkey's process to loopback.
// Portkey listens on every interface, and with x-portkey-custom-host it
// forwards to any host a request names: the bench must not open that to
// the network, even for a minute.
const loopbackPreload = `const net = require("net");
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === "number" && typeof args[1] !== "string") {
    return listen.call(this, args[0], "127.0.0.1", ...args.slice(1).filter((a) => typeof a === "function"));
  }
  return listen.apply(this, args);
};
`

// header sets what Portkey needs to route a request to the upstream as an
// OpenAI-compatible provider.
func (p *portkeyPeer) header(h http.Header) { portkeyRoute(h, p.Upstream) }

// portkeyRoute sets the headers that send a request through Portkey to the
// OpenAI-compatible API at upstream (a base URL ending in /v1).
func portkeyRoute(h http.Header, upstream string) {
	h.Set("x-portkey-provider", "openai")
	h.Set("x-portkey-custom-host", upstream)
}

// Pid is the gateway's node process.
func (p *portkeyPeer) Pid() int { return p.cmd.Process.Pid }

// Close stops the gateway and waits for it to exit.
func (p *portkeyPeer) Close() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
