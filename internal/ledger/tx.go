package ledger

import (
	"crypto/sha256"
	"fmt"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// TxVersion is the transaction format version written by this code.
const TxVersion = 1

// txSignTag separates transaction signatures from every other signature
// made with the same key (receipts, provider handshakes).
const txSignTag = "idlegrid/tx/v1\n"

// Kind is the type of a transaction.
type Kind uint8

// Transaction kinds. The numbers are part of the encoding: never reuse one.
const (
	KindTransfer         Kind = 1
	KindRegister         Kind = 2
	KindStake            Kind = 3
	KindUnstake          Kind = 4
	KindWithdrawUnbonded Kind = 5
	KindSettleBatch      Kind = 6
	KindApprove          Kind = 7
	KindClaim            Kind = 8
	KindParams           Kind = 9
	KindVerdict          Kind = 10
	KindPlant            Kind = 11
	KindReveal           Kind = 12
	KindUnjail           Kind = 13
)

var kindNames = map[Kind]string{
	KindTransfer: "transfer", KindRegister: "register", KindStake: "stake", KindUnstake: "unstake",
	KindWithdrawUnbonded: "withdraw-unbonded", KindSettleBatch: "settle-batch", KindApprove: "approve",
	KindClaim: "claim", KindParams: "params", KindVerdict: "verdict", KindPlant: "plant", KindReveal: "reveal",
	KindUnjail: "unjail",
}

func (k Kind) String() string {
	if n, ok := kindNames[k]; ok {
		return n
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Tx is a transaction: who sends it, in which order (Nonce), and one body
// chosen by Kind. Exactly the body fields of its kind are encoded.
type Tx struct {
	ChainID string
	Kind    Kind
	Sender  keys.PublicKey
	// Nonce must equal the sender account's Nonce; it then increments, so a
	// transaction runs at most once.
	Nonce uint64

	// Transfer: To receives Amount. Stake, Unstake: Amount.
	To     keys.Address
	Amount money.Amount
	// Register: the role taken and its public metadata (e.g. a URL).
	Role Role
	Info string
	// Approve: the sender's deposit for Gateway becomes Amount (set, not
	// added to): raising it locks balance, lowering it starts unlocking.
	Gateway keys.Address
	// SettleBatch: signed receipts in canonical bytes, and the RFC 6962
	// Merkle root over their hashes.
	Receipts []BatchReceipt
	Root     receipt.Hash
	// Params: the new parameters and the validators' approvals of them
	// (see ApproveParams).
	Params    Params
	Approvals []Approval
	// Verdict: whether Subject, serving the model with Digest, passed the
	// check of Evidence (the case's hash, CaseEvidence). The verdict that
	// opens a case carries what the case is about: the settled receipts
	// (CaseReceipts) and, for a canary case, each one's request body and
	// response text (CaseTexts); later verdicts name the case only. Plant:
	// Evidence is the PlantCommitment. Reveal: the planted Evidence, its
	// right verdict Pass and the commitment's Salt.
	Subject      keys.Address
	Digest       string
	Evidence     receipt.Hash
	Pass         bool
	CaseReceipts []BatchReceipt
	CaseTexts    []CaseText
	Salt         receipt.Hash

	Signature keys.Signature
}

// BatchReceipt is one signed receipt inside a settle-batch transaction. The
// receipt stays in its canonical bytes so that a receipt that fails to
// decode rejects only itself.
type BatchReceipt struct {
	Bytes             []byte
	ProviderSignature keys.Signature
	GatewaySignature  keys.Signature
}

// NewBatchReceipt wraps a signed receipt for a batch.
func NewBatchReceipt(s *receipt.Signed) BatchReceipt {
	return BatchReceipt{Bytes: s.Receipt.Bytes(), ProviderSignature: s.ProviderSignature, GatewaySignature: s.GatewaySignature}
}

// BatchRoot is the Merkle root a settle-batch must carry for its receipts.
func BatchRoot(rs []BatchReceipt) receipt.Hash {
	leaves := make([]receipt.Hash, len(rs))
	for i := range rs {
		leaves[i] = receipt.LeafHash(rs[i].Bytes)
	}
	return receipt.MerkleRoot(leaves)
}

// CaseText is what a canary receipt is about: the request body the
// verifier sent (its SHA-256 is the receipt's RequestHash) and the text it
// received (ResponseHash). A canary's prompt was written by the verifier,
// so it is public; real traffic never puts text on the chain.
type CaseText struct {
	Request  []byte `json:"request"`
	Response string `json:"response"`
}

// Limits of a case's evidence: a verdict tx carries at most
// MaxCaseReceipts receipts (a canary batch) and texts of at most
// MaxCaseTextBytes each, so it stays under ~300 KiB.
const (
	MaxCaseReceipts  = 8
	MaxCaseTextBytes = 16 << 10
)

// Limits the decoder enforces before allocating.
const (
	maxReceiptBytes = 2048
	maxBatch        = 1 << 16
	maxParamsBytes  = 1 << 20
	maxApprovals    = 256
)

// Approval is a validator's signature on a parameter change.
type Approval struct {
	Key       keys.PublicKey `json:"key"`
	Signature keys.Signature `json:"signature"`
}

// paramsSignTag separates parameter approvals from every other signature.
const paramsSignTag = "idlegrid/params/v1\n"

// ParamsMessage is what a validator signs to approve p as the chain's
// parameters after version earlier changes: replaying an old approval
// cannot bring old parameters back.
func ParamsMessage(chainID string, version uint64, p *Params) []byte {
	e := enc{}
	e.str(chainID)
	e.u64(version)
	e.bytes(p.encode())
	d := sha256.Sum256(e.b)
	return append([]byte(paramsSignTag), d[:]...)
}

// ApproveParams signs p as the parameters after version changes on chainID.
func ApproveParams(k keys.PrivateKey, chainID string, version uint64, p *Params) Approval {
	return Approval{Key: k.Public(), Signature: k.Sign(ParamsMessage(chainID, version, p))}
}

// unsigned is the canonical encoding of everything but the signature.
func (t *Tx) unsigned() []byte {
	e := enc{b: make([]byte, 0, 128)}
	e.u8(TxVersion)
	e.str(t.ChainID)
	e.u8(uint8(t.Kind))
	e.key(t.Sender)
	e.u64(t.Nonce)
	switch t.Kind {
	case KindTransfer:
		e.address(t.To)
		e.amount(t.Amount)
	case KindRegister:
		e.u8(uint8(t.Role))
		e.str(t.Info)
	case KindStake, KindUnstake:
		e.amount(t.Amount)
	case KindWithdrawUnbonded:
	case KindSettleBatch:
		e.fixed(t.Root[:])
		e.u32(uint32(len(t.Receipts)))
		for _, r := range t.Receipts {
			e.bytes(r.Bytes)
			e.fixed(r.ProviderSignature[:])
			e.fixed(r.GatewaySignature[:])
		}
	case KindApprove:
		e.address(t.Gateway)
		e.amount(t.Amount)
	case KindClaim:
	case KindParams:
		e.bytes(t.Params.encode())
		e.u32(uint32(len(t.Approvals)))
		for _, a := range t.Approvals {
			e.key(a.Key)
			e.fixed(a.Signature[:])
		}
	case KindVerdict:
		e.address(t.Subject)
		e.str(t.Digest)
		e.fixed(t.Evidence[:])
		e.boolean(t.Pass)
		e.u32(uint32(len(t.CaseReceipts)))
		for _, r := range t.CaseReceipts {
			e.bytes(r.Bytes)
			e.fixed(r.ProviderSignature[:])
			e.fixed(r.GatewaySignature[:])
		}
		e.u32(uint32(len(t.CaseTexts)))
		for _, c := range t.CaseTexts {
			e.bytes(c.Request)
			e.str(c.Response)
		}
	case KindPlant:
		e.fixed(t.Evidence[:])
	case KindReveal:
		e.fixed(t.Evidence[:])
		e.boolean(t.Pass)
		e.fixed(t.Salt[:])
	case KindUnjail:
	}
	return e.b
}

// Sign sets the sender and the signature; set ChainID and Nonce first.
func (t *Tx) Sign(k keys.PrivateKey) {
	t.Sender = k.Public()
	t.Signature = k.Sign(signedMessage(t.unsigned()))
}

// VerifySignature checks the sender's signature.
func (t *Tx) VerifySignature() bool {
	return t.Sender.Verify(signedMessage(t.unsigned()), t.Signature)
}

// verifyDecoded is VerifySignature for t as DecodeTx returned it from raw.
// DecodeTx accepts only canonical bytes, so the unsigned encoding is raw
// without its signature: a megabyte-sized batch is not encoded again.
func (t *Tx) verifyDecoded(raw []byte) bool {
	return t.Sender.Verify(signedMessage(raw[:len(raw)-keys.SignatureSize]), t.Signature)
}

// signedMessage is what the sender signs: the tag and the SHA-256 of the
// unsigned bytes. Signing the digest rather than the bytes keeps a
// megabyte-sized settle-batch cheap to check: ed25519 would hash the whole
// message with SHA-512 on every check, SHA-256 is faster.
func signedMessage(unsigned []byte) []byte {
	d := sha256.Sum256(unsigned)
	return append([]byte(txSignTag), d[:]...)
}

// Bytes is the canonical encoding of the signed transaction.
func (t *Tx) Bytes() []byte { return append(t.unsigned(), t.Signature[:]...) }

// TxHash is the sha256 of a transaction's bytes: its id on the chain.
func TxHash(b []byte) receipt.Hash { return sha256.Sum256(b) }

// DecodeTx parses a transaction's bytes. It accepts exactly what Bytes
// produces, so DecodeTx(b) succeeding implies Bytes() == b. It checks form
// only; signatures, nonces and balances are checked against state.
func DecodeTx(b []byte) (Tx, error) {
	d := dec{b: b}
	var t Tx
	if v := d.u8(); v != TxVersion && d.err == nil {
		d.fail("transaction version %d, want %d", v, TxVersion)
	}
	t.ChainID = d.str(64, "chain id")
	t.Kind = Kind(d.u8())
	t.Sender = d.key()
	t.Nonce = d.u64()
	switch t.Kind {
	case KindTransfer:
		t.To = d.address()
		t.Amount = d.amount()
	case KindRegister:
		t.Role = Role(d.u8())
		t.Info = d.str(maxMetadataBytes, "info")
	case KindStake, KindUnstake:
		t.Amount = d.amount()
	case KindWithdrawUnbonded:
	case KindSettleBatch:
		d.fixed(t.Root[:])
		// Each receipt takes at least 4+128 bytes: the count cannot claim
		// more than the remaining bytes can hold.
		n := d.length(min(maxBatch, len(d.b)/(4+2*keys.SignatureSize)), "receipt count")
		t.Receipts = make([]BatchReceipt, 0, n)
		for range n {
			r := BatchReceipt{Bytes: d.bytes(maxReceiptBytes, "receipt")}
			d.fixed(r.ProviderSignature[:])
			d.fixed(r.GatewaySignature[:])
			t.Receipts = append(t.Receipts, r)
		}
	case KindApprove:
		t.Gateway = d.address()
		t.Amount = d.amount()
	case KindClaim:
	case KindParams:
		raw := d.bytes(maxParamsBytes, "params")
		if d.err == nil {
			var err error
			if t.Params, err = decodeParams(raw); err != nil {
				d.fail("params: %v", err)
			}
		}
		n := d.length(min(maxApprovals, len(d.b)/(keys.PublicKeySize+keys.SignatureSize)), "approval count")
		for range n {
			var a Approval
			a.Key = d.key()
			d.fixed(a.Signature[:])
			t.Approvals = append(t.Approvals, a)
		}
	case KindVerdict:
		t.Subject = d.address()
		t.Digest = d.str(receipt.MaxDigest, "digest")
		d.fixed(t.Evidence[:])
		t.Pass = d.boolean()
		n := d.length(MaxCaseReceipts, "case receipts")
		for range n {
			r := BatchReceipt{Bytes: d.bytes(maxReceiptBytes, "receipt")}
			d.fixed(r.ProviderSignature[:])
			d.fixed(r.GatewaySignature[:])
			t.CaseReceipts = append(t.CaseReceipts, r)
		}
		n = d.length(MaxCaseReceipts, "case texts")
		for range n {
			t.CaseTexts = append(t.CaseTexts, CaseText{Request: d.bytes(MaxCaseTextBytes, "request"), Response: d.str(MaxCaseTextBytes, "response")})
		}
	case KindPlant:
		d.fixed(t.Evidence[:])
	case KindReveal:
		d.fixed(t.Evidence[:])
		t.Pass = d.boolean()
		d.fixed(t.Salt[:])
	case KindUnjail:
	default:
		if d.err == nil {
			d.fail("unknown transaction kind %d", t.Kind)
		}
	}
	d.fixed(t.Signature[:])
	if err := d.end(); err != nil {
		return Tx{}, fmt.Errorf("transaction: %w", err)
	}
	return t, nil
}
