// Package chain runs the idlegrid ledger on CometBFT: the ABCI application
// around the ledger state machine, the in-process node, and local network
// set-up. Clients of a node (the gateway, the CLI, the web UI) use
// chain/chainrpc; the replay of a chain from its blocks is chain/audit.
package chain
