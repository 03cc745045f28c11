package ledger

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/money"
)

// Params are the rules fixed at genesis.
type Params struct {
	// Minimum stakes for a role to take part: a provider below its minimum
	// cannot have receipts settled; a gateway below its minimum cannot
	// settle.
	MinProviderStake money.Amount `json:"min_provider_stake"`
	MinGatewayStake  money.Amount `json:"min_gateway_stake"`
	MinVerifierStake money.Amount `json:"min_verifier_stake"`
	// UnbondingBlocks is how long unstaked money stays slashable before it
	// can be withdrawn.
	UnbondingBlocks uint64 `json:"unbonding_blocks"`
	// EscrowBlocks is how long a provider's earnings are held (slashable)
	// before they join its balance.
	EscrowBlocks uint64 `json:"escrow_blocks"`
	// GatewayFeeBps and ProtocolFeeBps are the shares of each receipt's
	// amount, in basis points, that go to the settling gateway and to the
	// treasury; the provider gets the rest.
	GatewayFeeBps  uint32 `json:"gateway_fee_bps"`
	ProtocolFeeBps uint32 `json:"protocol_fee_bps"`
	// MaxBatchReceipts bounds one settle-batch transaction.
	MaxBatchReceipts uint32 `json:"max_batch_receipts"`
}

// maxPeriodBlocks bounds holding periods (about 300 years at one block a
// second).
const maxPeriodBlocks = 10_000_000_000

// DefaultParams are the parameters of a local network (`idlegrid up`).
func DefaultParams() Params {
	return Params{
		MinProviderStake: 100 * money.Unit,
		MinGatewayStake:  1_000 * money.Unit,
		MinVerifierStake: 100 * money.Unit,
		UnbondingBlocks:  100,
		EscrowBlocks:     20,
		GatewayFeeBps:    500,
		ProtocolFeeBps:   100,
		MaxBatchReceipts: 4096,
	}
}

// Validate checks params for consistency.
func (p *Params) Validate() error {
	if uint64(p.GatewayFeeBps)+uint64(p.ProtocolFeeBps) > 10_000 {
		return fmt.Errorf("params: gateway fee %d bps + protocol fee %d bps exceed 10000", p.GatewayFeeBps, p.ProtocolFeeBps)
	}
	// Bounded so that height + period can never wrap around.
	if p.UnbondingBlocks > maxPeriodBlocks || p.EscrowBlocks > maxPeriodBlocks {
		return fmt.Errorf("params: unbonding_blocks and escrow_blocks must be at most %d", maxPeriodBlocks)
	}
	if p.MaxBatchReceipts == 0 {
		return errors.New("params: max_batch_receipts must be at least 1")
	}
	return nil
}

func (p *Params) encode() []byte {
	e := enc{}
	e.amount(p.MinProviderStake)
	e.amount(p.MinGatewayStake)
	e.amount(p.MinVerifierStake)
	e.u64(p.UnbondingBlocks)
	e.u64(p.EscrowBlocks)
	e.u32(p.GatewayFeeBps)
	e.u32(p.ProtocolFeeBps)
	e.u32(p.MaxBatchReceipts)
	return e.b
}

func decodeParams(b []byte) (Params, error) {
	d := dec{b: b}
	p := Params{
		MinProviderStake: d.amount(),
		MinGatewayStake:  d.amount(),
		MinVerifierStake: d.amount(),
		UnbondingBlocks:  d.u64(),
		EscrowBlocks:     d.u64(),
		GatewayFeeBps:    d.u32(),
		ProtocolFeeBps:   d.u32(),
		MaxBatchReceipts: d.u32(),
	}
	return p, d.end()
}

// Genesis is the ledger's initial state: the application state of the
// CometBFT genesis document.
type Genesis struct {
	Params   Params           `json:"params"`
	Accounts []GenesisAccount `json:"accounts"`
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
	// Approvals let gateways charge this account's receipts.
	Approvals []GenesisApproval `json:"approvals,omitempty"`
}

// GenesisApproval is an allowance a consumer grants a gateway at genesis.
type GenesisApproval struct {
	Gateway   keys.Address `json:"gateway"`
	Allowance money.Amount `json:"allowance"`
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
		for _, ap := range a.Approvals {
			if err := ap.Gateway.Validate(); err != nil {
				return fmt.Errorf("ledger genesis account %s approval: %w", a.Address, err)
			}
			if ap.Gateway == a.Address {
				return fmt.Errorf("ledger genesis account %s approves itself", a.Address)
			}
		}
	}
	return nil
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
	var supply Supply
	accounts := slices.Clone(g.Accounts)
	slices.SortFunc(accounts, func(x, y GenesisAccount) int { return strings.Compare(string(x.Address), string(y.Address)) })
	for _, ga := range accounts {
		a := Account{PubKey: ga.PubKey, Balance: ga.Balance, Stake: ga.Stake}
		for _, name := range ga.Roles {
			r, _ := ParseRole(name)
			a.Roles |= r
			a.setInfo(r, ga.Info)
		}
		total, err := a.Total()
		if err == nil {
			supply.Total, err = supply.Total.Add(total)
		}
		if err != nil {
			return nil, fmt.Errorf("ledger genesis: total supply: %w", err)
		}
		b.putAccount(ga.Address, &a)
		for _, ap := range ga.Approvals {
			b.set(allowanceKey(ga.Address, ap.Gateway), amountBytes(ap.Allowance))
		}
	}
	supply.Minted = supply.Total
	b.set(keySupply, supply.encode())
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
