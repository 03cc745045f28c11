package gateway

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/idlegrid/idlegrid/internal/store"
)

// Keyless access. A gateway configured with Config.Keyless serves requests
// that carry no API key when they come from one of its client addresses,
// billing them to Config.KeylessAccount: `idlegrid up` does so for
// loopback, so the `ollama` CLI and local apps that cannot send a key just
// work. The address is the TCP peer's (http.Request.RemoteAddr), never a
// header such as X-Forwarded-For, which any client can write. A request
// that carries a key is authenticated by it, from anywhere.
//
// Two kinds of loopback traffic are not the machine's owner and stay
// refused: a request a peer gateway forwarded (its peer address is the
// forwarding gateway's, and the consumer behind it may be anywhere), and a
// request from a web page of another origin, which a browser on this
// machine sends on behalf of whatever site it shows (the Origin header; a
// browser always sets it on cross-site POSTs and cannot be made to forge
// it). Both may still send a key.

// LoopbackPrefixes are the loopback addresses: 127.0.0.0/8 and ::1.
var LoopbackPrefixes = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// keylessAccountKeyID is the APIKey.ID of keyless requests.
const keylessAccountKeyID = "keyless"

// ParsePrefixes parses a list of CIDR prefixes or single addresses.
func ParsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an address nor a CIDR prefix (e.g. 10.0.0.0/8)", s)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// keyless returns the key record a request without an API key is billed
// to, when the gateway lets its client through without one.
func (g *Gateway) keyless(r *http.Request) (store.APIKey, bool) {
	if len(g.cfg.Keyless) == 0 || r.Header.Get(ForwardedHeader) != "" || !sameMachineOrigin(r.Header.Get("Origin")) {
		return store.APIKey{}, false
	}
	peer, ok := peerAddr(r.RemoteAddr)
	if !ok {
		return store.APIKey{}, false
	}
	for _, p := range g.cfg.Keyless {
		if p.Contains(peer) {
			return store.APIKey{ID: keylessAccountKeyID, Name: keylessAccountKeyID, Account: g.cfg.KeylessAccount}, true
		}
	}
	return store.APIKey{}, false
}

// peerAddr is the IP of a RemoteAddr ("host:port"), IPv4-mapped IPv6
// addresses unmapped.
func peerAddr(remote string) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}

// sameMachineOrigin reports whether an Origin header allows keyless
// access: absent (not a browser, or a same-origin GET), or a page served
// from this machine's loopback names.
func sameMachineOrigin(origin string) bool {
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	host := u.Hostname()
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}
