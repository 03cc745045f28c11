package main

import (
	"net"
	"os"
	"testing"
)

// defaultPorts are the loopback addresses `idlegrid up` and the other
// commands use by default. A user runs `idlegrid up` in one terminal and
// `go test ./...` in another, so no test may need them: TestMain holds
// every one that is free for the whole run, and a test that forgot to ask
// for its own port fails here as it would next to the user's network.
var defaultPorts = []string{
	"127.0.0.1:8420",  // gateway (up, gateway --addr)
	"127.0.0.1:26657", // validator RPC (up --chain-rpc-addr, ledger --chain-rpc)
	"127.0.0.1:26656", // validator P2P
	"127.0.0.1:11435", // simulator (sim --addr)
}

func TestMain(m *testing.M) {
	var held []net.Listener
	for _, addr := range defaultPorts {
		if l, err := net.Listen("tcp", addr); err == nil {
			held = append(held, l)
		} // taken already: by the user's own network, which is the point
	}
	code := m.Run()
	for _, l := range held {
		l.Close()
	}
	os.Exit(code)
}

// TestDefaultPortsHeld checks the guard itself: while the tests run, each
// default port is taken (by TestMain or by someone else).
func TestDefaultPortsHeld(t *testing.T) {
	for _, addr := range defaultPorts {
		l, err := net.Listen("tcp", addr)
		if err == nil {
			l.Close()
			t.Errorf("%s is free during the tests: the guard in TestMain does not hold it", addr)
		}
	}
}
