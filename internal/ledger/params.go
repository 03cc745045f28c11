package ledger

import (
	"errors"
	"fmt"
	"slices"

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

	// SupplyCap bounds everything ever minted, genesis allocation included.
	// No parameter change can alter it.
	SupplyCap money.Amount `json:"supply_cap"`
	// EpochBlocks is the length of a reward epoch in blocks.
	EpochBlocks uint64 `json:"epoch_blocks"`
	// EpochEmission is what the first epoch mints; it halves every
	// HalvingEpochs epochs, and minting stops at SupplyCap.
	EpochEmission money.Amount `json:"epoch_emission"`
	HalvingEpochs uint64       `json:"halving_epochs"`
	// Shares of each epoch's emission, in basis points summing to 10000:
	// providers by work units, verifiers by stake, validators by blocks
	// signed, and the treasury.
	ProviderRewardBps  uint32 `json:"provider_reward_bps"`
	VerifierRewardBps  uint32 `json:"verifier_reward_bps"`
	ValidatorRewardBps uint32 `json:"validator_reward_bps"`
	TreasuryRewardBps  uint32 `json:"treasury_reward_bps"`
	// VestingBlocks is how long a reward takes to vest, linearly from the
	// end of its epoch; unvested rewards stay slashable. Zero pays at once.
	VestingBlocks uint64 `json:"vesting_blocks"`
	// AllowedDigests names, per model, the weights (digests) a provider may
	// serve under that name; a receipt for a listed model with another
	// digest does not settle. Models not listed accept any digest.
	AllowedDigests []ModelDigests `json:"allowed_digests"`
	// VerdictQuorum is how many verifiers' verdicts decide a case (by
	// majority; a tie acquits). Verifiers in the minority lose
	// VerifierSlashBps of their stake.
	VerdictQuorum    uint32 `json:"verdict_quorum"`
	VerifierSlashBps uint32 `json:"verifier_slash_bps"`
	// VerdictDelayBlocks is how long after its first verdict a case
	// counts for or against its provider: the time a gateway has to reveal
	// that it planted the sample to test the verifiers.
	VerdictDelayBlocks uint64 `json:"verdict_delay_blocks"`
	// ConvictFailures failed cases within ConvictWindowBlocks convict a
	// provider: it loses SlashStakeBps of its stake and unbonding stake, all
	// its escrowed earnings and unvested rewards (burned), and is jailed
	// for JailBlocks, after which it may unjail.
	ConvictFailures     uint32 `json:"convict_failures"`
	ConvictWindowBlocks uint64 `json:"convict_window_blocks"`
	SlashStakeBps       uint32 `json:"slash_stake_bps"`
	JailBlocks          uint64 `json:"jail_blocks"`

	// Emission (C3) and chain floods (L1).
	//
	// RewardMaxPaidBps caps a provider's share of an epoch's emission at
	// this share, in basis points, of what consumers paid it in the epoch,
	// counted through the protocol fees its receipts paid: at most
	// fees × RewardMaxPaidBps / ProtocolFeeBps (times its reputation).
	// It must be below ProtocolFeeBps, so that the reward of a provider
	// that pays itself stays below the fees it paid to the treasury; zero
	// mints no provider emission.
	RewardMaxPaidBps uint32 `json:"reward_max_paid_bps"`
	// ExistentialDeposit is the least transfer that creates an account:
	// every account in state was paid at least this much.
	ExistentialDeposit money.Amount `json:"existential_deposit"`
	// Deposits (M3).
	// DepositUnlockBlocks is how long money a consumer takes out of a
	// deposit stays drawable by the deposit's gateway before it returns to
	// the consumer: it must exceed the time a gateway needs to settle what
	// it admitted against the deposit.
	DepositUnlockBlocks uint64 `json:"deposit_unlock_blocks"`
	// Verification (C1/H1).
	// VerdictFailStakeBps is the share of the eligible verifiers' stake
	// that must vote one way for a case to be decided that way at
	// maturity (fail-votes must also outweigh pass-votes); short of it
	// the case is undecided and has no effect. A coalition holding less
	// than this share of verifier stake can neither convict nor acquit.
	VerdictFailStakeBps uint32 `json:"verdict_fail_stake_bps"`
	// PlantRevealBlocks is how long a gateway has to reveal a plant
	// commitment; a commitment still unrevealed then, or a second reveal
	// of one evidence hash, burns PlantForfeitBps of the gateway's stake.
	PlantRevealBlocks uint64 `json:"plant_reveal_blocks"`
	PlantForfeitBps   uint32 `json:"plant_forfeit_bps"`
}

// ModelDigests lists the digests allowed for one model name.
type ModelDigests struct {
	Model   string   `json:"model"`
	Digests []string `json:"digests"`
}

func (p *Params) validateVerification() error {
	if p.VerdictQuorum == 0 || p.VerdictQuorum > maxVotes {
		return fmt.Errorf("params: verdict_quorum must be 1 to %d", maxVotes)
	}
	if p.ConvictFailures == 0 || p.ConvictFailures > maxRecentFailures {
		return fmt.Errorf("params: convict_failures must be 1 to %d", maxRecentFailures)
	}
	if p.VerifierSlashBps > 10_000 || p.SlashStakeBps > 10_000 || p.PlantForfeitBps > 10_000 {
		return errors.New("params: verifier_slash_bps, slash_stake_bps and plant_forfeit_bps must be at most 10000")
	}
	if p.VerdictFailStakeBps == 0 || p.VerdictFailStakeBps > 10_000 {
		return errors.New("params: verdict_fail_stake_bps must be 1 to 10000")
	}
	if p.VerdictDelayBlocks > maxPeriodBlocks || p.ConvictWindowBlocks > maxPeriodBlocks || p.JailBlocks > maxPeriodBlocks || p.PlantRevealBlocks > maxPeriodBlocks {
		return fmt.Errorf("params: verdict_delay_blocks, convict_window_blocks, jail_blocks and plant_reveal_blocks must be at most %d", uint64(maxPeriodBlocks))
	}
	if p.UnbondingBlocks <= p.VerdictDelayBlocks {
		return errors.New("params: unbonding_blocks must exceed verdict_delay_blocks (stake stays slashable until every case opened before it unbonds has matured)")
	}
	if p.PlantRevealBlocks <= p.VerdictDelayBlocks {
		return errors.New("params: plant_reveal_blocks must exceed verdict_delay_blocks (a plant's case must be able to mature before its reveal is due)")
	}
	if len(p.AllowedDigests) > maxDigestModels {
		return fmt.Errorf("params: allowed_digests lists %d models, at most %d", len(p.AllowedDigests), maxDigestModels)
	}
	seen := map[string]bool{}
	for _, m := range p.AllowedDigests {
		if m.Model == "" || len(m.Model) > maxModelName || seen[m.Model] {
			return fmt.Errorf("params: allowed_digests: model %q empty, too long or listed twice", m.Model)
		}
		seen[m.Model] = true
		if len(m.Digests) == 0 || len(m.Digests) > maxModelDigests {
			return fmt.Errorf("params: allowed_digests: model %q needs 1 to %d digests", m.Model, maxModelDigests)
		}
		for _, d := range m.Digests {
			if d == "" || len(d) > maxModelName {
				return fmt.Errorf("params: allowed_digests: model %q: digest %q: want 1 to %d bytes", m.Model, d, maxModelName)
			}
		}
	}
	return nil
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

		SupplyCap:          1_000_000_000 * money.Unit,
		EpochBlocks:        100,
		EpochEmission:      200_000 * money.Unit,
		HalvingEpochs:      1_000,
		ProviderRewardBps:  7_000,
		VerifierRewardBps:  1_500,
		ValidatorRewardBps: 1_000,
		TreasuryRewardBps:  500,
		VestingBlocks:      1_000,

		VerdictQuorum:       1,
		VerifierSlashBps:    1_000,
		VerdictDelayBlocks:  20,
		ConvictFailures:     3,
		ConvictWindowBlocks: 10_000,
		SlashStakeBps:       5_000,
		JailBlocks:          10_000,

		RewardMaxPaidBps:    50,
		ExistentialDeposit:  money.Unit / 100,
		DepositUnlockBlocks: 100,
		// Verification (C1/H1).
		VerdictFailStakeBps: 5_000,
		PlantRevealBlocks:   200,
		PlantForfeitBps:     1_000,
	}
}

// DigestAllowed reports whether a provider may serve model with digest.
// "name" and "name:latest" are the same model, as in Ollama.
func (p *Params) DigestAllowed(model, digest string) bool {
	for _, m := range p.AllowedDigests {
		if sameModelName(m.Model, model) {
			return slices.Contains(m.Digests, digest)
		}
	}
	return true
}

func sameModelName(a, b string) bool {
	return a == b || a == b+":latest" || a+":latest" == b
}

// Emission is what epoch (numbered from 1) mints by the schedule, before the
// supply cap clamps it: EpochEmission halved once every HalvingEpochs.
func (p *Params) Emission(epoch uint64) money.Amount {
	if epoch == 0 || p.HalvingEpochs == 0 {
		return 0
	}
	halvings := (epoch - 1) / p.HalvingEpochs
	if halvings >= 64 {
		return 0
	}
	return p.EpochEmission >> halvings
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
	if p.DepositUnlockBlocks == 0 || p.DepositUnlockBlocks > maxPeriodBlocks {
		return fmt.Errorf("params: deposit_unlock_blocks must be 1 to %d (a gateway needs time to settle what it admitted)", uint64(maxPeriodBlocks))
	}
	return p.validateRewards()
}

func (p *Params) validateRewards() error {
	if p.SupplyCap == 0 {
		return errors.New("params: supply_cap must be positive")
	}
	if p.EpochBlocks == 0 || p.EpochBlocks > maxPeriodBlocks || p.VestingBlocks > maxPeriodBlocks {
		return fmt.Errorf("params: epoch_blocks must be 1 to %d and vesting_blocks at most %d", maxPeriodBlocks, maxPeriodBlocks)
	}
	if p.HalvingEpochs == 0 {
		return errors.New("params: halving_epochs must be at least 1")
	}
	if p.EpochEmission > p.SupplyCap {
		return fmt.Errorf("params: epoch_emission %d exceeds supply_cap %d", p.EpochEmission, p.SupplyCap)
	}
	if sum := uint64(p.ProviderRewardBps) + uint64(p.VerifierRewardBps) + uint64(p.ValidatorRewardBps) + uint64(p.TreasuryRewardBps); sum != 10_000 {
		return fmt.Errorf("params: reward shares (provider %d + verifier %d + validator %d + treasury %d bps) must sum to 10000, not %d",
			p.ProviderRewardBps, p.VerifierRewardBps, p.ValidatorRewardBps, p.TreasuryRewardBps, sum)
	}
	if p.RewardMaxPaidBps > 0 && p.RewardMaxPaidBps >= p.ProtocolFeeBps {
		return fmt.Errorf("params: reward_max_paid_bps %d must be below protocol_fee_bps %d (or 0): a provider paying itself would earn more emission than it pays in fees",
			p.RewardMaxPaidBps, p.ProtocolFeeBps)
	}
	if err := p.validateVerification(); err != nil {
		return err
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
	e.amount(p.SupplyCap)
	e.u64(p.EpochBlocks)
	e.amount(p.EpochEmission)
	e.u64(p.HalvingEpochs)
	e.u32(p.ProviderRewardBps)
	e.u32(p.VerifierRewardBps)
	e.u32(p.ValidatorRewardBps)
	e.u32(p.TreasuryRewardBps)
	e.u64(p.VestingBlocks)
	e.u32(uint32(len(p.AllowedDigests)))
	for _, m := range p.AllowedDigests {
		e.str(m.Model)
		e.u32(uint32(len(m.Digests)))
		for _, d := range m.Digests {
			e.str(d)
		}
	}
	e.u32(p.VerdictQuorum)
	e.u32(p.VerifierSlashBps)
	e.u64(p.VerdictDelayBlocks)
	e.u32(p.ConvictFailures)
	e.u64(p.ConvictWindowBlocks)
	e.u32(p.SlashStakeBps)
	e.u64(p.JailBlocks)
	e.u32(p.RewardMaxPaidBps)
	e.amount(p.ExistentialDeposit)
	// Deposits (M3).
	e.u64(p.DepositUnlockBlocks)
	// Verification (C1/H1).
	e.u32(p.VerdictFailStakeBps)
	e.u64(p.PlantRevealBlocks)
	e.u32(p.PlantForfeitBps)
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

		SupplyCap:          d.amount(),
		EpochBlocks:        d.u64(),
		EpochEmission:      d.amount(),
		HalvingEpochs:      d.u64(),
		ProviderRewardBps:  d.u32(),
		VerifierRewardBps:  d.u32(),
		ValidatorRewardBps: d.u32(),
		TreasuryRewardBps:  d.u32(),
		VestingBlocks:      d.u64(),
	}
	n := d.length(maxDigestModels, "allowed digests")
	for range n {
		m := ModelDigests{Model: d.str(maxModelName, "model")}
		k := d.length(maxModelDigests, "digests")
		for range k {
			m.Digests = append(m.Digests, d.str(maxModelName, "digest"))
		}
		p.AllowedDigests = append(p.AllowedDigests, m)
	}
	p.VerdictQuorum = d.u32()
	p.VerifierSlashBps = d.u32()
	p.VerdictDelayBlocks = d.u64()
	p.ConvictFailures = d.u32()
	p.ConvictWindowBlocks = d.u64()
	p.SlashStakeBps = d.u32()
	p.JailBlocks = d.u64()
	p.RewardMaxPaidBps = d.u32()
	p.ExistentialDeposit = d.amount()
	// Deposits (M3).
	p.DepositUnlockBlocks = d.u64()
	// Verification (C1/H1).
	p.VerdictFailStakeBps = d.u32()
	p.PlantRevealBlocks = d.u64()
	p.PlantForfeitBps = d.u32()
	return p, d.end()
}

// ReservesHalf reports whether, with supply minted so far, node rewards
// (providers' and verifiers' shares of emission) already paid plus their
// shares of what the cap still allows come to at least half the cap.
func (p *Params) ReservesHalf(s Supply) bool {
	room, err := p.SupplyCap.Sub(s.Minted)
	if err != nil {
		return false
	}
	future, _ := room.MulDiv(uint64(p.ProviderRewardBps)+uint64(p.VerifierRewardBps), 10_000) // ≤ room
	reserved, err := s.NodeRewards.Add(future)
	return err == nil && reserved >= p.SupplyCap-p.SupplyCap/2
}

// Limits on the model tables, so that they stay small.
const (
	maxModelName    = 256
	maxDigestModels = 256
	maxModelDigests = 64
)
