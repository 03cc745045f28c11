package web

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// ContributePath is where the gateway serves the browser provider page: a
// tab that holds a provider key in WebCrypto, dials this gateway's provider
// WebSocket and relays jobs to the visitor's own Ollama. Its scripts are
// hand-written ES modules under static/contribute/, embedded with the rest
// of the UI; nothing is built and nothing third-party is loaded.
const ContributePath = "/contribute"

// DefaultOllamaURL is where the page looks for Ollama unless the visitor
// names another server.
const DefaultOllamaURL = "http://127.0.0.1:11434"

// maxOriginLen bounds the ?ollama= parameter; real origins are far shorter.
const maxOriginLen = 256

// contributeData is what contribute.html renders.
type contributeData struct {
	// OllamaURL is the origin the page may fetch, as the CSP allows it.
	OllamaURL string
	// Error explains why the requested Ollama URL was refused.
	Error string
}

// contribute serves the page. The Ollama server it talks to is chosen in
// the URL (?ollama=http://host:port) rather than only in the page, because
// the Content-Security-Policy must name it: the page holds a signing key and
// runs text from strangers through it, so its connect-src lists exactly
// three places — this gateway over HTTP ('self'), this gateway's provider
// WebSocket (ws:// or wss:// of the same host, spelled out because older
// browsers do not let 'self' match WebSocket schemes) and the one Ollama
// origin the visitor picked. A script that went wrong could not send the key
// or a prompt anywhere else. Scripts load only from this origin
// (script-src 'self', no inline code), and the page renders job data with
// textContent, never as HTML.
func (u *UI) contribute(w http.ResponseWriter, r *http.Request) {
	d := contributeData{OllamaURL: DefaultOllamaURL}
	status := http.StatusOK
	if raw := r.URL.Query().Get("ollama"); raw != "" {
		origin, err := ParseOllamaOrigin(raw)
		if err != nil {
			status = http.StatusBadRequest
			d.Error = err.Error()
		} else {
			d.OllamaURL = origin
		}
	}
	w.Header().Set("Content-Security-Policy", contributeCSP(r, d.OllamaURL))
	// The page must not be cached with another visitor's choice of
	// server baked into its policy.
	w.Header().Set("Cache-Control", "no-store")
	u.render(w, status, "contribute.html", &page{Title: "Provide from this browser", Nav: "contribute", Data: d})
}

// contributeCSP is the page's policy; see contribute for why each source
// is there. ollama must come from ParseOllamaOrigin (no spaces, quotes or
// semicolons can reach the header).
func contributeCSP(r *http.Request, ollama string) string {
	connect := []string{"'self'"}
	if host := r.Host; validHostPort(host) {
		scheme := "ws://"
		if r.TLS != nil {
			scheme = "wss://"
		}
		connect = append(connect, scheme+host)
	}
	connect = append(connect, ollama)
	return "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src " + strings.Join(connect, " ") +
		"; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
}

// ParseOllamaOrigin checks a visitor's Ollama server URL and returns its
// origin (scheme://host[:port], lower case): http or https, a host name or
// IP address, no credentials, path, query or fragment. Only such an origin
// may enter the page's Content-Security-Policy.
func ParseOllamaOrigin(raw string) (string, error) {
	if len(raw) > maxOriginLen {
		return "", fmt.Errorf("the Ollama URL is longer than %d characters", maxOriginLen)
	}
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return "", fmt.Errorf("the Ollama URL %q does not parse: want http://host:port", raw)
	}
	scheme := strings.ToLower(u.Scheme)
	switch {
	case scheme != "http" && scheme != "https":
		return "", fmt.Errorf("the Ollama URL %q must start with http:// or https://", raw)
	case u.User != nil:
		return "", errors.New("the Ollama URL must not carry a user name or password")
	case u.Opaque != "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return "", fmt.Errorf("the Ollama URL %q must be only scheme, host and port (like %s)", raw, DefaultOllamaURL)
	}
	host := strings.ToLower(u.Host)
	if !validHostPort(host) {
		return "", fmt.Errorf("the Ollama URL %q has no valid host (like 127.0.0.1:11434)", raw)
	}
	return scheme + "://" + host, nil
}

// validHostPort reports whether s is a DNS name, an IPv4 address or a
// bracketed IPv6 address, with an optional port 1–65535.
func validHostPort(s string) bool {
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return false
		}
		host, port = s[1:end], s[end+1:]
		if ip := net.ParseIP(host); ip == nil || ip.To4() != nil || strings.ContainsAny(host, "%") {
			return false
		}
		if port == "" {
			return true
		}
		if port[0] != ':' {
			return false
		}
		return validPort(port[1:])
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		host, port = s[:i], s[i+1:]
		if !validPort(port) {
			return false
		}
	}
	return validHostName(host)
}

func validPort(p string) bool {
	if p == "" || len(p) > 5 || p[0] == '0' {
		return false
	}
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535 && strconv.Itoa(n) == p
}

// validHostName accepts DNS labels of letters, digits and hyphens (which
// covers dotted IPv4 addresses), at most 253 bytes.
func validHostName(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
