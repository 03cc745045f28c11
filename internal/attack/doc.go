// Package attack is idlegrid's attack suite: each test plays one attacker
// of the network (a consumer who wants inference free, a provider who
// wants pay without work, a gateway or verifier who wants to steal or
// grief, a sybil with many keys) against the real packages — the ledger's
// state machine, the gateway, the hub, the rate limiter, an in-process
// network — and asserts that the attack fails, naming the property that
// stops it. SECURITY.md lists each attacker and the test that shows it.
//
// The files are named for the findings of the adversarial review they
// answer (c1_verdicts_test.go, h3_blackhole_test.go, …), so a finding and
// its proof are one lookup apart.
package attack
