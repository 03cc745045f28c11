// Package econ simulates the network's economics on the real ledger state
// machine: a population of providers of several hardware classes serves a
// demand curve through one gateway for hundreds of epochs, every request is
// settled in signed receipts by ledger.ExecuteBlock, and the epochs' emission
// is paid by the ledger's own reward code (work units are what consumers
// paid; each provider's reward is capped below the protocol fees it paid).
// The simulation runs no verifiers: canaries, and the verdicts that would
// follow them, are modelled next to the ledger, explicitly, and a caught
// provider loses what a conviction on the ledger takes (its share of stake,
// its escrow and unvested rewards, read out of the simulated ledger state).
//
// Run is the entry point; Report.Print, Report.Summary and Report.WriteSVG
// present its result. docs/economics.md describes the model and its limits.
package econ
