// Package chain runs the idlegrid ledger on CometBFT: an in-process node
// around the ABCI application, local network set-up, and the client the
// gateway and CLI use to submit transactions and query state.
package chain
