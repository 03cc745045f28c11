package ledger

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
)

// Genesis is the ledger's initial state: the application state of the
// CometBFT genesis document.
type Genesis struct {
	Params   Params           `json:"params"`
	Accounts []GenesisAccount `json:"accounts"`
	// Validators name each CometBFT validator's reward account; those
	// accounts also approve parameter changes.
	Validators []Validator `json:"validators,omitempty"`
}

// GenesisAccount is one funded or registered account at genesis.
type GenesisAccount struct {
	Address keys.Address `json:"address"`
	// PubKey is required when the account holds a role.
	PubKey  keys.PublicKey `json:"pub_key,omitzero"`
	Balance money.Amount   `json:"balance"`
	Stake   money.Amount   `json:"stake,omitempty"`
	Roles   []string       `json:"roles,omitempty"`
	// Info is the metadata published for every role the account holds.
	Info string `json:"info,omitempty"`
	// Approvals lock deposits for gateways out of Balance: each gateway's
	// receipts for this account are paid from its deposit.
	Approvals []GenesisApproval `json:"approvals,omitempty"`
	// Vesting allocations (a team's, say) vest linearly between their
	// heights; they count against the supply cap from genesis.
	Vesting []GenesisVesting `json:"vesting,omitempty"`
}

// GenesisVesting is an allocation that vests linearly over the heights
// after StartHeight up to EndHeight.
type GenesisVesting struct {
	Amount      money.Amount `json:"amount"`
	StartHeight uint64       `json:"start_height"`
	EndHeight   uint64       `json:"end_height"`
}

// GenesisApproval is a deposit a consumer locks for a gateway at genesis,
// out of its genesis balance.
type GenesisApproval struct {
	Gateway keys.Address `json:"gateway"`
	Deposit money.Amount `json:"deposit"`
}

// ParseGenesis decodes and validates genesis JSON; unknown fields are errors
// so a typo cannot silently drop a parameter, and parameters it leaves out
// take their DefaultParams values.
func ParseGenesis(b []byte) (Genesis, error) {
	g := Genesis{Params: DefaultParams()}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&g); err != nil {
		return Genesis{}, fmt.Errorf("ledger genesis: %w", err)
	}
	return g, g.Validate()
}

// Validate checks the genesis for consistency.
func (g *Genesis) Validate() error {
	if err := g.Params.Validate(); err != nil {
		return fmt.Errorf("ledger genesis: %w", err)
	}
	if _, err := g.allocation(); err != nil {
		return err
	}
	seenVal := map[keys.PublicKey]bool{}
	for i, v := range g.Validators {
		if v.ConsensusKey.IsZero() || seenVal[v.ConsensusKey] {
			return fmt.Errorf("ledger genesis validator %d: consensus key missing or listed twice", i)
		}
		seenVal[v.ConsensusKey] = true
		if err := v.Account.Validate(); err != nil {
			return fmt.Errorf("ledger genesis validator %d account: %w", i, err)
		}
	}
	seen := map[keys.Address]bool{}
	for i, a := range g.Accounts {
		if err := a.Address.Validate(); err != nil {
			return fmt.Errorf("ledger genesis account %d: %w", i, err)
		}
		if seen[a.Address] {
			return fmt.Errorf("ledger genesis: account %s listed twice", a.Address)
		}
		seen[a.Address] = true
		if !a.PubKey.IsZero() && a.PubKey.Address() != a.Address {
			return fmt.Errorf("ledger genesis account %s: pub_key belongs to %s", a.Address, a.PubKey.Address())
		}
		if len(a.Roles) > 0 && a.PubKey.Weak() {
			return fmt.Errorf("ledger genesis account %s: a role needs a valid pub_key", a.Address)
		}
		for _, r := range a.Roles {
			if _, err := ParseRole(r); err != nil {
				return fmt.Errorf("ledger genesis account %s: %w", a.Address, err)
			}
		}
		if len(a.Info) > maxMetadataBytes {
			return fmt.Errorf("ledger genesis account %s: info longer than %d bytes", a.Address, maxMetadataBytes)
		}
		left := a.Balance // what the deposits have not locked
		for _, ap := range a.Approvals {
			if err := ap.Gateway.Validate(); err != nil {
				return fmt.Errorf("ledger genesis account %s approval: %w", a.Address, err)
			}
			if ap.Gateway == a.Address {
				return fmt.Errorf("ledger genesis account %s approves itself", a.Address)
			}
			var err error
			if left, err = left.Sub(ap.Deposit); err != nil {
				return fmt.Errorf("ledger genesis account %s: deposits exceed its balance %d", a.Address, a.Balance)
			}
		}
		for _, v := range a.Vesting {
			if v.EndHeight <= v.StartHeight || v.EndHeight > maxPeriodBlocks {
				return fmt.Errorf("ledger genesis account %s: vesting from height %d to %d: want start < end ≤ %d", a.Address, v.StartHeight, v.EndHeight, uint64(maxPeriodBlocks))
			}
		}
	}
	return nil
}

// allocation is the genesis accounts' total. It must fit under the supply
// cap and leave enough for node rewards (ReservesHalf).
func (g *Genesis) allocation() (money.Amount, error) {
	var total money.Amount
	var err error
	for _, ga := range g.Accounts {
		a := ga.account()
		t, errT := a.Total()
		if err = errT; err == nil {
			total, err = total.Add(t)
		}
		if err != nil {
			return 0, fmt.Errorf("ledger genesis: total allocation: %w", err)
		}
	}
	if total > g.Params.SupplyCap {
		return 0, fmt.Errorf("ledger genesis: accounts hold %d, above the supply cap %d", total, g.Params.SupplyCap)
	}
	if !g.Params.ReservesHalf(Supply{Minted: total}) {
		return 0, fmt.Errorf("ledger genesis: accounts hold %d of the cap %d; at least half of all supply must be left for provider and verifier rewards (%d bps of emission)",
			total, g.Params.SupplyCap, g.Params.ProviderRewardBps+g.Params.VerifierRewardBps)
	}
	return total, nil
}

// account is the genesis account's initial record.
func (ga *GenesisAccount) account() Account {
	a := Account{PubKey: ga.PubKey, Balance: ga.Balance, Stake: ga.Stake}
	for _, name := range ga.Roles {
		r, _ := ParseRole(name)
		a.Roles |= r
		a.setInfo(r, ga.Info)
	}
	for _, v := range ga.Vesting {
		a.Vesting = append(a.Vesting, Vest{Amount: v.Amount, Start: v.StartHeight, End: v.EndHeight})
	}
	return a
}

// Init writes the genesis state into a fresh block (height 0): params,
// accounts, approvals and the supply they add up to.
func Init(base Reader, chainID string, g Genesis) (*Block, error) {
	if err := validChainID(chainID); err != nil {
		return nil, err
	}
	if err := g.Validate(); err != nil {
		return nil, err
	}
	b := &Block{base: base, chainID: chainID, params: g.Params, writes: map[string]change{}}
	b.set(keyChainID, []byte(chainID))
	b.set(keyParams, g.Params.encode())
	total, _ := g.allocation() // validated above
	accounts := slices.Clone(g.Accounts)
	slices.SortFunc(accounts, func(x, y GenesisAccount) int { return strings.Compare(string(x.Address), string(y.Address)) })
	var verifiers []keys.Address
	for _, ga := range accounts {
		a := ga.account()
		for _, ap := range ga.Approvals {
			d, err := b.deposit(ga.Address, ap.Gateway)
			if err != nil {
				return nil, err
			}
			a.Balance -= ap.Deposit // Validate checked the balance covers every deposit
			if d.Locked, err = d.Locked.Add(ap.Deposit); err != nil {
				return nil, fmt.Errorf("ledger genesis account %s: deposit for %s: %w", ga.Address, ap.Gateway, err)
			}
			b.putDeposit(ga.Address, ap.Gateway, &d)
		}
		b.putAccount(ga.Address, &a)
		if a.Has(RoleVerifier) {
			verifiers = append(verifiers, ga.Address)
		}
	}
	supply := Supply{Total: total, Minted: total}
	b.set(keySupply, supply.encode())
	if len(verifiers) > 0 {
		e := enc{}
		e.addresses(verifiers)
		b.set(keyVerifiers, e.b)
	}
	if len(g.Validators) > 0 {
		b.set(keyValidators, encodeValidators(g.Validators))
	}
	epoch := EpochState{Number: 1, Start: 1, Signed: make([]uint64, len(g.Validators))}
	b.set(keyEpoch, epoch.encode())
	b.commitTx()
	return b, nil
}

func (a *Account) setInfo(r Role, info string) {
	switch r {
	case RoleProvider:
		a.ProviderInfo = info
	case RoleGateway:
		a.GatewayInfo = info
	case RoleVerifier:
		a.VerifierInfo = info
	}
}

func validChainID(id string) error {
	if id == "" || len(id) > 64 {
		return fmt.Errorf("chain id %q: want 1 to 64 bytes", id)
	}
	return nil
}
