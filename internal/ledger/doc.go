// Package ledger is idlegrid's ledger as a pure, deterministic state
// machine: accounts, role registrations, stakes with unbonding, escrowed
// provider earnings, consumer deposits for gateways, and the settlement of
// batches of signed receipts. A Block applies signed transactions to
// committed state and yields the sorted changes the host persists; the app
// hash chains over those changes. There is no clock, no randomness, no
// float and no map-order dependence here: every node and every auditor that
// replays the same transactions computes the same state byte for byte.
// CometBFT runs it (package chain); this package knows nothing of that.
package ledger
