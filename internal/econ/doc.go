// Package econ simulates the network's economics on the real ledger state
// machine: a population of providers of several hardware classes serves a
// demand curve through one gateway for hundreds of epochs, every request is
// settled in signed receipts by ledger.ExecuteBlock, and the epochs' emission
// is paid by the ledger's own reward code. What the ledger does not have yet
// (slashing, canaries) is modelled next to it, explicitly, from amounts read
// out of the simulated ledger state.
//
// Run is the entry point; Report.Print, Report.Summary and Report.WriteSVG
// present its result. docs/economics.md describes the model and its limits.
package econ
