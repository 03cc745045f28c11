package chainrpc

import (
	"fmt"
	"strings"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// Query paths the application answers, each with JSON in the response
// value. Data is the path's argument as text.
const (
	PathAccount = "/account" // data: address → AccountInfo
	PathReceipt = "/receipt" // data: "gateway/request_id" → ledger.Settlement
	PathTx      = "/tx"      // data: tx hash in hex → ledger.TxRecord
	PathDeposit = "/deposit" // data: "consumer/gateway" → DepositInfo
	PathParams  = "/params"  // → ledger.Params
	PathSupply  = "/supply"  // → ledger.Supply
	// PathEpoch: data "" → EpochInfo of the running epoch; an epoch number
	// → the finished epoch's ledger.EpochRecord.
	PathEpoch      = "/epoch"
	PathPayouts    = "/payouts"    // data: epoch number → []ledger.Payout, sorted by account
	PathPayout     = "/payout"     // data: "epoch/address" → ledger.PayoutProof
	PathGovernance = "/governance" // → GovernanceInfo
	PathProvider   = "/provider"   // data: address → ProviderInfo (verification record)
	PathCase       = "/case"       // data: evidence hash in hex → ledger.Case
	// PathCases → []OpenCase: the cases that have not matured, with the
	// receipts and texts of canary cases (anyone may replay them).
	PathCases = "/cases"
)

// OpenCase is a case still collecting verdicts; Opening holds a canary
// case's receipts and texts (empty for a sample case).
type OpenCase struct {
	Evidence receipt.Hash        `json:"evidence"`
	Case     ledger.Case         `json:"case"`
	Opening  *ledger.CaseOpening `json:"opening,omitempty"`
}

// ProviderInfo is a provider's verification record and reputation.
type ProviderInfo struct {
	Address keys.Address `json:"address"`
	ledger.ProviderRecord
	// Reputation is in thousandths; it weighs the provider's rewards.
	Reputation uint64 `json:"reputation_milli"`
	Jailed     bool   `json:"jailed"`
	// Stake is the provider's bonded stake (gateways serve only providers
	// staked at least min_provider_stake).
	Stake money.Amount `json:"stake"`
}

// EpochInfo is the running epoch and the last finished one.
type EpochInfo struct {
	ledger.EpochState
	// EndHeight is the height whose block ends the epoch.
	EndHeight uint64 `json:"end_height"`
	Height    int64  `json:"height"`
}

// GovernanceInfo is who approves parameter changes and the version the
// next change's approvals must sign.
type GovernanceInfo struct {
	ChainID       string             `json:"chain_id"`
	ParamsVersion uint64             `json:"params_version"`
	Validators    []ledger.Validator `json:"validators"`
}

// Query result codes (0 is success).
const (
	QueryCodeNotFound   uint32 = 1
	QueryCodeBadRequest uint32 = 2
	QueryCodeInternal   uint32 = 3
)

// AccountInfo is an account as queries return it.
type AccountInfo struct {
	Address keys.Address `json:"address"`
	ledger.Account
	// Claimable and Unvested split the account's vesting schedules at the
	// height of the answer.
	Claimable money.Amount `json:"claimable"`
	Unvested  money.Amount `json:"unvested"`
}

// DepositInfo is what a consumer locked for a gateway.
type DepositInfo struct {
	Consumer keys.Address `json:"consumer"`
	Gateway  keys.Address `json:"gateway"`
	ledger.Deposit
	// Drawable is what the gateway's receipts can still be paid from at
	// the height of the answer: the locked part and what is unlocking.
	Drawable money.Amount `json:"drawable"`
}

// ParseReceiptRef reads the argument of PathReceipt, "gateway/request_id":
// request ids are unique only per gateway, so a settlement is named by both.
func ParseReceiptRef(ref string) (keys.Address, string, error) {
	g, id, cut := strings.Cut(ref, "/")
	gateway := keys.Address(g)
	if !cut || gateway.Validate() != nil || id == "" {
		return "", "", fmt.Errorf("receipt %q: want GATEWAY/REQUEST_ID (settlements are kept per gateway: the address of the gateway that settled it, a slash, the request id)", ref)
	}
	return gateway, id, nil
}

// ReceiptRef is the argument of PathReceipt for gateway's receipt requestID.
func ReceiptRef(gateway keys.Address, requestID string) string {
	return string(gateway) + "/" + requestID
}
