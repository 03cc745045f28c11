package node

import (
	"fmt"
	"net"

	"github.com/idlegrid/idlegrid/internal/gateway"
	"github.com/idlegrid/idlegrid/internal/hub"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/store"
)

// startPeering sets up cross-gateway routing for a gateway on a shared
// database: it publishes this gateway's models under its peer URL and
// forwards the requests placement gives a peer.
func startPeering(cfg GatewayConfig, key keys.PrivateKey, st *store.Store, h *hub.Hub, ln net.Listener) (*gateway.Peering, error) {
	url := cfg.PeerURL
	if url == "" {
		scheme := "http"
		if cfg.TLSCert != "" || len(cfg.TLSDomains) > 0 {
			scheme = "https"
		}
		url = scheme + "://" + ln.Addr().String()
		if ip := ln.Addr().(*net.TCPAddr).IP; ip.IsUnspecified() {
			return nil, fmt.Errorf("gateway listens on %s, which peers cannot dial: set the URL they reach it at (--peer-url)", ln.Addr())
		}
	}
	p, err := gateway.NewPeering(gateway.PeerConfig{Directory: st, Hub: h, Key: key.Public(), URL: url,
		Interval: cfg.PeerInterval, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	return p, nil
}

// leavePeers stops publishing this gateway's models and withdraws them.
func (g *Gateway) leavePeers() {
	if g.stopPeering != nil {
		g.stopPeering()
		<-g.peered
		g.stopPeering = nil
	}
}
