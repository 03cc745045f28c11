// Package chainrpc is the client side of a ledger node: the client that
// submits transactions and queries state, in-process or over CometBFT's
// RPC, the typed reads and the signer built on it, and the query paths and
// answer types the application encodes (chain imports them, so server and
// client share one definition). It does not link the node, consensus,
// state or block store packages of CometBFT.
package chainrpc
