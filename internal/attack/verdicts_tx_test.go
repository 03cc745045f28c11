package attack

import (
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// sampleVerdict is a verdict on the sample case of one settled receipt,
// carrying the receipt (what opens the case).
func sampleVerdict(subject keys.PublicKey, br ledger.BatchReceipt, pass bool) ledger.Tx {
	rs := []ledger.BatchReceipt{br}
	return ledger.Tx{Kind: ledger.KindVerdict, Subject: subject.Address(), Digest: vDigest, Evidence: ledger.CaseEvidence(rs, false), Pass: pass, CaseReceipts: rs}
}

// madeUpVerdict is a verdict on evidence nobody can check.
func madeUpVerdict(subject keys.PublicKey, evidence receipt.Hash, pass bool) ledger.Tx {
	return ledger.Tx{Kind: ledger.KindVerdict, Subject: subject.Address(), Digest: vDigest, Evidence: evidence, Pass: pass}
}
