package ledger

import (
	"encoding/binary"
	"fmt"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// Reader is committed ledger state: Get returns nil and no error for a key
// that is absent. CometBFT's DB interface satisfies it, and so does a map in
// tests.
type Reader interface {
	Get(key []byte) ([]byte, error)
}

// State keys. Every ledger key starts with a lower-case letter and a slash,
// so a host may keep its own bookkeeping under keys that start otherwise.
const (
	prefixAccount    = "a/" // + address → Account
	prefixDeposit    = "w/" // + consumer + "/" + gateway → Deposit
	prefixReceipt    = "r/" // + gateway address + "/" + request id → Settlement
	prefixDue        = "d/" // + height (8 bytes) → addresses whose escrow matures
	prefixTx         = "t/" // + tx hash (32 bytes) → TxRecord
	keyParams        = "p/params"
	keyChainID       = "p/chain_id"
	keySupply        = "s/supply"
	treasuryDomain   = "idlegrid/treasury"
	maxMetadataBytes = 256
)

// TreasuryAddress holds protocol fees (and, later, the treasury's share of
// emission). Nobody has its key: it is the hash of a fixed string, not of a
// public key, so it can only be credited.
var TreasuryAddress = func() keys.Address {
	h := receipt.Sum([]byte(treasuryDomain))
	var k keys.PublicKey
	copy(k[:], h[:])
	return k.Address()
}()

// Role is a registration an account can hold; several may be combined.
type Role uint8

// Roles.
const (
	RoleProvider Role = 1 << iota
	RoleGateway
	RoleVerifier
	allRoles = RoleProvider | RoleGateway | RoleVerifier
)

// RoleNames are the text forms used in genesis, CLI and events.
var roleNames = map[Role]string{RoleProvider: "provider", RoleGateway: "gateway", RoleVerifier: "verifier"}

func (r Role) String() string {
	if n, ok := roleNames[r]; ok {
		return n
	}
	return fmt.Sprintf("role(%d)", uint8(r))
}

// ParseRole reads "provider", "gateway" or "verifier".
func ParseRole(s string) (Role, error) {
	for _, r := range []Role{RoleProvider, RoleGateway, RoleVerifier} {
		if roleNames[r] == s {
			return r, nil
		}
	}
	return 0, fmt.Errorf("role %q: want provider, gateway or verifier", s)
}

// Entry is an amount that becomes available at a block height: unbonding
// stake and escrowed earnings.
type Entry struct {
	Amount money.Amount `json:"amount"`
	Height uint64       `json:"release_height"`
}

// Account is everything the ledger knows about one address.
type Account struct {
	// PubKey is set once the account signs a transaction or is registered
	// at genesis; zero before.
	PubKey keys.PublicKey `json:"pub_key"`
	// Nonce is the nonce the account's next transaction must carry.
	Nonce   uint64       `json:"nonce"`
	Balance money.Amount `json:"balance"`
	// Stake is bonded: it qualifies roles and is slashable.
	Stake money.Amount `json:"stake"`
	// Unbonding stake returns to the balance by withdraw-unbonded once its
	// height is reached; it stays slashable until then.
	Unbonding []Entry `json:"unbonding,omitempty"`
	// Escrow holds provider earnings until their height; slashable while held.
	Escrow []Entry `json:"escrow,omitempty"`
	// Vesting holds rewards (and genesis allocations) that vest linearly;
	// the vested part is claimable, the rest slashable.
	Vesting []Vest `json:"vesting,omitempty"`
	Roles   Role   `json:"roles"`
	// Metadata per role: what the account published when registering.
	ProviderInfo string `json:"provider_info,omitempty"`
	GatewayInfo  string `json:"gateway_info,omitempty"`
	VerifierInfo string `json:"verifier_info,omitempty"`
	// Jailed accounts earn nothing and cannot settle (set by verdicts).
	Jailed bool `json:"jailed"`
}

// Has reports whether a holds role r.
func (a *Account) Has(r Role) bool { return a.Roles&r != 0 }

// Total is everything the account owns: balance, stake, unbonding, escrow
// and what is still vesting.
func (a *Account) Total() (money.Amount, error) {
	t, err := a.Balance.Add(a.Stake)
	for _, list := range [][]Entry{a.Unbonding, a.Escrow} {
		for _, e := range list {
			if err == nil {
				t, err = t.Add(e.Amount)
			}
		}
	}
	for _, v := range a.Vesting {
		if err == nil {
			t, err = t.Add(v.Amount - v.Released)
		}
	}
	return t, err
}

func (a *Account) encode() []byte {
	e := enc{b: make([]byte, 0, 128)}
	e.u8(1) // record version
	e.key(a.PubKey)
	e.u64(a.Nonce)
	e.amount(a.Balance)
	e.amount(a.Stake)
	e.entries(a.Unbonding)
	e.entries(a.Escrow)
	e.vests(a.Vesting)
	e.u8(uint8(a.Roles))
	e.str(a.ProviderInfo)
	e.str(a.GatewayInfo)
	e.str(a.VerifierInfo)
	e.boolean(a.Jailed)
	return e.b
}

func decodeAccount(b []byte) (Account, error) {
	d := dec{b: b}
	if v := d.u8(); v != 1 && d.err == nil {
		d.fail("account record version %d", v)
	}
	a := Account{
		PubKey:       d.key(),
		Nonce:        d.u64(),
		Balance:      d.amount(),
		Stake:        d.amount(),
		Unbonding:    d.entries(),
		Escrow:       d.entries(),
		Vesting:      d.vests(),
		Roles:        Role(d.u8()),
		ProviderInfo: d.str(maxMetadataBytes, "provider info"),
		GatewayInfo:  d.str(maxMetadataBytes, "gateway info"),
		VerifierInfo: d.str(maxMetadataBytes, "verifier info"),
		Jailed:       d.boolean(),
	}
	return a, d.end()
}

// Settlement records that a receipt was settled, so it never is again.
type Settlement struct {
	Height   uint64         `json:"height"`
	TxHash   receipt.Hash   `json:"tx_hash"`
	Receipt  receipt.Hash   `json:"receipt_hash"`
	Amount   money.Amount   `json:"amount"`
	Consumer keys.Address   `json:"consumer"`
	Provider keys.PublicKey `json:"provider"`
	// PaidByGateway is set when the consumer's deposit for the gateway
	// could not pay all of the receipt and the gateway's stake paid the
	// rest: StakePaid of the Amount.
	PaidByGateway bool         `json:"paid_by_gateway"`
	StakePaid     money.Amount `json:"stake_paid"`
}

func (s *Settlement) encode() []byte {
	e := enc{}
	e.u64(s.Height)
	e.fixed(s.TxHash[:])
	e.fixed(s.Receipt[:])
	e.amount(s.Amount)
	e.address(s.Consumer)
	e.key(s.Provider)
	e.boolean(s.PaidByGateway)
	e.amount(s.StakePaid)
	return e.b
}

func decodeSettlement(b []byte) (Settlement, error) {
	d := dec{b: b}
	var s Settlement
	s.Height = d.u64()
	d.fixed(s.TxHash[:])
	d.fixed(s.Receipt[:])
	s.Amount = d.amount()
	s.Consumer = d.address()
	s.Provider = d.key()
	s.PaidByGateway = d.boolean()
	s.StakePaid = d.amount()
	return s, d.end()
}

// TxRecord says in which block a transaction was executed and how it ended.
type TxRecord struct {
	Height uint64 `json:"height"`
	Code   uint32 `json:"code"`
}

func (t *TxRecord) encode() []byte {
	e := enc{}
	e.u64(t.Height)
	e.u32(t.Code)
	return e.b
}

func decodeTxRecord(b []byte) (TxRecord, error) {
	d := dec{b: b}
	t := TxRecord{Height: d.u64(), Code: d.u32()}
	return t, d.end()
}

// Supply is the ledger's total amount of money and how it changed: the sum
// of every account's Total equals Total at every height, and Total changes
// only by mint (rewards) and burn (slashing).
type Supply struct {
	Total  money.Amount `json:"total"`
	Minted money.Amount `json:"minted"`
	Burned money.Amount `json:"burned"`
	// NodeRewards is what epochs paid to providers and verifiers so far.
	NodeRewards money.Amount `json:"node_rewards"`
}

func (s *Supply) encode() []byte {
	e := enc{}
	e.amount(s.Total)
	e.amount(s.Minted)
	e.amount(s.Burned)
	e.amount(s.NodeRewards)
	return e.b
}

func decodeSupply(b []byte) (Supply, error) {
	d := dec{b: b}
	s := Supply{Total: d.amount(), Minted: d.amount(), Burned: d.amount(), NodeRewards: d.amount()}
	return s, d.end()
}

func accountKey(a keys.Address) string { return prefixAccount + string(a) }

// AccountKeyPrefix starts the state key of every account; the rest of the
// key is the address. Auditors that walk a state store use it.
const AccountKeyPrefix = prefixAccount

func depositKey(consumer, gateway keys.Address) string {
	return prefixDeposit + string(consumer) + "/" + string(gateway)
}

// receiptKey is where the settlement of gateway's receipt requestID is
// kept. Request ids are unique only per gateway (a gateway picks them, and a
// consumer learns its own at the first token): keying by gateway as well
// means a receipt can collide only with receipts its own gateway settled.
// Addresses are fixed-length and contain no slash, so the key is unambiguous.
func receiptKey(gateway keys.Address, requestID string) string {
	return prefixReceipt + string(gateway) + "/" + requestID
}

func dueKey(height uint64) string {
	return prefixDue + string(binary.BigEndian.AppendUint64(nil, height))
}

func txKey(hash receipt.Hash) string { return prefixTx + string(hash[:]) }
