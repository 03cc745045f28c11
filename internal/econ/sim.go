package econ

import (
	"fmt"
	"math/rand/v2"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
)

// provider is one simulated provider and what it earned so far.
type provider struct {
	key      keys.PrivateKey
	addr     keys.Address
	class    int
	strategy Strategy
	// jailedUntil is the first epoch a caught provider serves again;
	// forfeitedTo the height up to which its escrow and rewards were
	// already forfeited (a second catch cannot take them twice).
	jailedUntil uint64
	forfeitedTo uint64
	// This epoch: its ledger total at the start, the true completion
	// tokens it served, the provider share of its receipts, and what it
	// paid as a consumer (the wash trader only).
	startTotal money.Amount
	served     uint64
	work       uint64 // work units of its receipts, by the ledger's rule
	share      money.Amount
	paid       money.Amount
	tally      tally
}

// tally adds up one provider's epochs.
type tally struct {
	epochs, online, jailed, caught uint64
	served, work                   uint64
	fees, emission, energy         money.Amount
	// paid is what it paid as a consumer (the wash trader only).
	paid money.Amount
	// atRisk adds up escrow + unvested rewards at each epoch end.
	atRisk money.Amount
	// Penalties when caught.
	slashed, escrowLost, unvestedLost money.Amount
}

func (t *tally) add(o *tally) {
	t.epochs += o.epochs
	t.online += o.online
	t.jailed += o.jailed
	t.caught += o.caught
	t.served = satAdd(t.served, o.served)
	t.work = satAdd(t.work, o.work)
	t.fees = addAmount(t.fees, o.fees)
	t.emission = addAmount(t.emission, o.emission)
	t.energy = addAmount(t.energy, o.energy)
	t.paid = addAmount(t.paid, o.paid)
	t.atRisk = addAmount(t.atRisk, o.atRisk)
	t.slashed = addAmount(t.slashed, o.slashed)
	t.escrowLost = addAmount(t.escrowLost, o.escrowLost)
	t.unvestedLost = addAmount(t.unvestedLost, o.unvestedLost)
}

// net is income less what it paid, energy and penalties.
func (t *tally) net() Net {
	return net(t.fees) + net(t.emission) - net(t.paid) - net(t.energy) - net(t.slashed) - net(t.escrowLost) - net(t.unvestedLost)
}

// classPrices are a class's prices and energy cost in base units per
// million tokens.
type classPrices struct {
	completion, prompt, energy money.Amount
}

// sim is one simulated network on its own chain.
type sim struct {
	cfg       *Config
	params    ledger.Params
	chain     *chain
	gw        keys.PrivateKey
	gwNonce   uint64
	providers []*provider
	// wash is the self-dealing provider, nil when there is none; it is
	// not in providers and is routed no honest demand.
	wash       *provider
	washTokens uint64
	// washProtocol and washGateway are the protocol and gateway fees of
	// the wash trader's receipts: the gateway fee comes back to a trader
	// that owns its gateway, the protocol fee goes to the treasury.
	washProtocol, washGateway money.Amount
	consumers                 []keys.Address // per market
	demand                    []uint64       // this epoch's completion tokens per market
	growth                    bool
	prices                    []classPrices
	uptime                    *rand.Rand
	detect                    *rand.Rand
	nextID                    uint64
	genesis                   money.Amount // the genesis allocation
}

// world describes one simulated network.
type world struct {
	population []Group
	// levelBps scales the markets' first-epoch demand; growth applies the
	// markets' growth each epoch.
	levelBps uint32
	growth   bool
	epochs   int
	wash     bool
}

func newSim(cfg *Config, w world) (*sim, error) {
	s := &sim{cfg: cfg, params: cfg.Params, growth: w.growth,
		uptime: rand.New(rand.NewPCG(cfg.Seed, 0x7570_7469_6d65)),
		detect: rand.New(rand.NewPCG(cfg.Seed, 0x6465_7465_6374))}
	for _, cl := range cfg.Classes {
		completion := cfg.baseUnits(cl.PriceMicroUSD)
		s.prices = append(s.prices, classPrices{completion: completion,
			prompt: mulDivAmount(completion, uint64(cfg.PromptPriceBps), 10_000), energy: cfg.baseUnits(cl.EnergyMicroUSD)})
	}
	var err error
	if s.gw, err = simKey("gateway"); err != nil {
		return nil, err
	}
	g := ledger.Genesis{Params: cfg.Params, Accounts: []ledger.GenesisAccount{
		{Address: s.gw.Public().Address(), PubKey: s.gw.Public(), Stake: cfg.Params.MinGatewayStake, Roles: []string{"gateway"}},
	}}
	approve := func(balance money.Amount) []ledger.GenesisApproval {
		return []ledger.GenesisApproval{{Gateway: s.gw.Public().Address(), Deposit: balance}}
	}
	for _, grp := range w.population {
		ci, _ := cfg.class(grp.Class)
		for range grp.Count {
			k, err := simKey(fmt.Sprint("provider-", len(s.providers)))
			if err != nil {
				return nil, err
			}
			p := &provider{key: k, addr: k.Public().Address(), class: ci, strategy: grp.Strategy}
			s.providers = append(s.providers, p)
			g.Accounts = append(g.Accounts, ledger.GenesisAccount{Address: p.addr, PubKey: k.Public(), Stake: cfg.Params.MinProviderStake, Roles: []string{"provider"}})
		}
	}
	for mi := range cfg.Markets {
		m := &cfg.Markets[mi]
		d := mulDiv(m.TokensPerEpoch, uint64(w.levelBps), 10_000)
		s.demand = append(s.demand, d)
		k, err := simKey(fmt.Sprint("consumer-", mi))
		if err != nil {
			return nil, err
		}
		s.consumers = append(s.consumers, k.Public().Address())
		funds := s.funding(m, d, w.epochs)
		g.Accounts = append(g.Accounts, ledger.GenesisAccount{Address: s.consumers[mi], Balance: funds, Approvals: approve(funds)})
	}
	if w.wash {
		ci, _ := cfg.class(cfg.Wash.Class)
		k, err := simKey("wash-trader")
		if err != nil {
			return nil, err
		}
		// It serves the requests it buys (wash trading); its report also
		// gives the net of not serving them (fabricated receipts).
		s.wash = &provider{key: k, addr: k.Public().Address(), class: ci, strategy: Honest}
		s.washTokens = cfg.Wash.TokensPerEpoch
		if s.washTokens == 0 {
			s.washTokens = cfg.capacity(&cfg.Classes[ci])
		}
		funds := s.funding(&cfg.Markets[s.market(ci)], s.washTokens, w.epochs)
		g.Accounts = append(g.Accounts, ledger.GenesisAccount{Address: s.wash.addr, PubKey: k.Public(), Balance: funds,
			Stake: cfg.Params.MinProviderStake, Roles: []string{"provider"}, Approvals: approve(funds)})
	}
	for i := range cfg.Verifiers {
		k, err := simKey(fmt.Sprint("verifier-", i))
		if err != nil {
			return nil, err
		}
		stake := mulDivAmount(max(cfg.Params.MinVerifierStake, money.Unit), uint64(i+1), 1)
		g.Accounts = append(g.Accounts, ledger.GenesisAccount{Address: k.Public().Address(), PubKey: k.Public(), Stake: stake, Roles: []string{"verifier"}})
	}
	for i := range cfg.Validators {
		cons, err := simKey(fmt.Sprint("validator-consensus-", i))
		if err != nil {
			return nil, err
		}
		acct, err := simKey(fmt.Sprint("validator-", i))
		if err != nil {
			return nil, err
		}
		g.Validators = append(g.Validators, ledger.Validator{ConsensusKey: cons.Public(), Account: acct.Public().Address()})
	}
	if s.chain, err = newChain(g); err != nil {
		return nil, err
	}
	supply, err := s.chain.view().Supply()
	if err != nil {
		return nil, fmt.Errorf("econ: supply: %w", err)
	}
	s.genesis = supply.Minted
	return s, nil
}

// market is the index of the market class ci serves (validated to exist).
func (s *sim) market(ci int) int {
	for i := range s.cfg.Markets {
		if s.cfg.Markets[i].Model == s.cfg.Classes[ci].Model {
			return i
		}
	}
	return 0
}

// funding is what a consumer could spend on demand starting at d tokens
// an epoch over epochs epochs at the highest price anyone pays, plus what
// unmetered inflation adds, so consumers never run dry.
func (s *sim) funding(m *Market, d uint64, epochs int) money.Amount {
	completion := s.cfg.baseUnits(m.NonePayMicroUSD)
	prompt := mulDivAmount(completion, uint64(s.cfg.PromptPriceBps), 10_000)
	var sum money.Amount
	for range epochs {
		sum = addAmount(sum, addAmount(cost(d, completion), cost(mulDiv(d, m.PromptMilli, 1_000), prompt)))
		d = s.grow(m, d)
	}
	sum = mulDivAmount(sum, 10_000+uint64(s.cfg.Slashing.InflateBps), 10_000)
	return addAmount(sum, money.Unit) // a margin
}

// maxDemand bounds a market's demand per epoch, so that growth compounded
// over a long run cannot overflow the sums of tokens.
const maxDemand = 1e15

// grow is next epoch's demand after d.
func (s *sim) grow(m *Market, d uint64) uint64 {
	if !s.growth {
		return d
	}
	return min(mulDiv(d, uint64(10_000+int64(m.GrowthBps)), 10_000), maxDemand)
}

// epochResult is what one epoch did, network-wide.
type epochResult struct {
	record   ledger.EpochRecord
	supply   ledger.Supply
	demanded uint64
	served   uint64
	online   int
	fees     money.Amount // provider shares of the epoch's receipts
}

// runEpoch runs epoch e (from 1): who is online, routing, every block of
// the epoch with its settlement batches, then the accounting.
func (s *sim) runEpoch(e uint64) (epochResult, error) {
	var res epochResult
	eb := s.params.EpochBlocks
	if start := (e-1)*eb + 1; s.chain.height+1 != start {
		return res, fmt.Errorf("econ: epoch %d should start at height %d, the chain is at %d", e, start, s.chain.height)
	}
	offers := make([][]offer, len(s.cfg.Markets))
	for i, p := range s.providers {
		p.served, p.share, p.paid, p.work = 0, 0, 0, 0
		roll := s.uptime.IntN(10_000) // drawn for everyone, so jail does not shift the others' draws
		cl := &s.cfg.Classes[p.class]
		p.tally.epochs++
		if e < p.jailedUntil {
			p.tally.jailed++
			continue
		}
		if uint32(roll) >= cl.UptimeBps {
			continue
		}
		p.tally.online++
		res.online++
		mi := s.market(p.class)
		offers[mi] = append(offers[mi], offer{provider: i, price: cl.PriceMicroUSD, capacity: s.cfg.capacity(cl)})
	}
	for mi := range s.cfg.Markets {
		res.demanded = satAdd(res.demanded, s.demand[mi])
		alloc := route(&s.cfg.Markets[mi], s.demand[mi], offers[mi])
		for j, o := range offers[mi] {
			s.providers[o.provider].served = alloc[j]
			res.served = satAdd(res.served, alloc[j])
		}
	}
	if s.wash != nil {
		s.wash.served, s.wash.share, s.wash.paid, s.wash.work = s.washTokens, 0, 0, 0
		s.wash.tally.epochs++
		s.wash.tally.online++
	}
	for _, p := range s.all() {
		t, err := s.owned(p.addr)
		if err != nil {
			return res, err
		}
		p.startTotal = t
	}
	rounds := s.cfg.rounds()
	spacing := eb / rounds
	var round uint64
	for i := range eb {
		var txs [][]byte
		if round < rounds && i%spacing == 0 {
			var err error
			if txs, err = s.batch(round, rounds); err != nil {
				return res, err
			}
			round++
		}
		if _, err := s.chain.block(txs); err != nil {
			return res, err
		}
	}
	if err := s.closeEpoch(e, &res); err != nil {
		return res, err
	}
	for mi := range s.cfg.Markets {
		s.demand[mi] = s.grow(&s.cfg.Markets[mi], s.demand[mi])
	}
	return res, nil
}

// all is every provider, the wash trader last.
// owned is everything a owns on the ledger: its account and its deposit
// for the simulation's gateway (the wash trader pays from one).
func (s *sim) owned(a keys.Address) (money.Amount, error) {
	t, err := s.chain.total(a)
	if err != nil {
		return 0, err
	}
	d, err := s.chain.view().Deposit(a, s.gw.Public().Address())
	if err != nil {
		return 0, fmt.Errorf("econ: deposit of %s: %w", a, err)
	}
	return t + d.Total(), nil
}

func (s *sim) all() []*provider {
	if s.wash == nil {
		return s.providers
	}
	return append(s.providers[:len(s.providers):len(s.providers)], s.wash)
}

// part is round r's part of an epoch's tokens: an even share, the
// remainder in the first round.
func part(tokens, r, rounds uint64) uint64 {
	if r == 0 {
		return tokens/rounds + tokens%rounds
	}
	return tokens / rounds
}

// batch is the settle-batch transactions of settlement round r: one
// aggregated receipt per provider that served in the epoch.
func (s *sim) batch(r, rounds uint64) ([][]byte, error) {
	height := s.chain.height + 1
	var rs []ledger.BatchReceipt
	add := func(p *provider, consumer keys.Address, completion uint64) error {
		if completion == 0 {
			return nil
		}
		m := &s.cfg.Markets[s.market(p.class)]
		pr := s.prices[p.class]
		j := job{provider: p.key, consumer: consumer, model: m.Model, completion: completion,
			prompt: mulDiv(completion, m.PromptMilli, 1_000), pricePrompt: pr.prompt, priceCompletion: pr.completion}
		if p.strategy == InflateUnmetered {
			j.completion = mulDiv(j.completion, 10_000+uint64(s.cfg.Slashing.InflateBps), 10_000)
			j.prompt = mulDiv(j.prompt, 10_000+uint64(s.cfg.Slashing.InflateBps), 10_000)
		}
		s.nextID++
		br, rec, err := signReceipt(s.gw, &j, fmt.Sprint("req-", s.nextID), height, s.cfg.BlockMillis)
		if err != nil {
			return err
		}
		rs = append(rs, br)
		amount := rec.Amount
		// The ledger's split: fees rounded down, the provider gets the rest.
		protocol, _ := amount.MulDiv(uint64(s.params.ProtocolFeeBps), 10_000)
		if protocol > 0 { // the ledger's work units: what was paid
			p.work = satAdd(p.work, uint64(amount))
		}
		gateway, _ := amount.MulDiv(uint64(s.params.GatewayFeeBps), 10_000)
		p.share = addAmount(p.share, amount-protocol-gateway)
		if consumer == p.addr {
			p.paid = addAmount(p.paid, amount)
		}
		if p == s.wash {
			s.washProtocol = addAmount(s.washProtocol, protocol)
			s.washGateway = addAmount(s.washGateway, gateway)
		}
		return nil
	}
	for mi := range s.cfg.Markets {
		for _, p := range s.providers {
			// An inflater facing a metering gateway gets no countersignature:
			// its receipts never reach the ledger.
			if s.market(p.class) == mi && p.strategy != Inflate {
				if err := add(p, s.consumers[mi], part(p.served, r, rounds)); err != nil {
					return nil, err
				}
			}
		}
	}
	if s.wash != nil {
		if err := add(s.wash, s.wash.addr, part(s.washTokens, r, rounds)); err != nil {
			return nil, err
		}
	}
	if len(rs) == 0 {
		return nil, nil
	}
	txs := settleTxs(s.gw, s.gwNonce, rs, s.params.MaxBatchReceipts)
	s.gwNonce += uint64(len(txs))
	return txs, nil
}
