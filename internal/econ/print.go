package econ

import (
	"fmt"
	"io"
	"math"
	"math/big"
	"strings"
	"text/tabwriter"

	"github.com/idlegrid/idlegrid/internal/money"
)

// Print writes the report's tables.
func (r *Report) Print(w io.Writer) error {
	c := &r.Config
	p := &c.Params
	var b strings.Builder
	fmt.Fprintf(&b, "econ: %d epochs of %d blocks (%d s each), %d providers, 1 gateway, %d verifiers, %d validators, seed %d\n",
		c.Epochs, p.EpochBlocks, c.epochMillis()/1_000, c.Providers(), c.Verifiers, c.Validators, c.Seed)
	fmt.Fprintf(&b, "assumed: 1 USD = %d tokens, fixed for the whole run; prices and energy are set in USD and converted at that rate\n", c.TokensPerUSD)
	fmt.Fprintf(&b, "params: emission %s tokens/epoch (%s) halving every %d epochs, cap %s; split providers %s verifiers %s validators %s treasury %s;\n",
		tok(p.EpochEmission), dollars(net(p.EpochEmission).MicroUSD(c.TokensPerUSD)), p.HalvingEpochs, tok(p.SupplyCap),
		bps(uint64(p.ProviderRewardBps)), bps(uint64(p.VerifierRewardBps)), bps(uint64(p.ValidatorRewardBps)), bps(uint64(p.TreasuryRewardBps)))
	fmt.Fprintf(&b, "        vesting %d blocks, escrow %d blocks, fees gateway %s protocol %s, provider reward at most %s of what it was paid\n\n",
		p.VestingBlocks, p.EscrowBlocks, bps(uint64(p.GatewayFeeBps)), bps(uint64(p.ProtocolFeeBps)), bps(uint64(p.RewardMaxPaidBps)))
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	for _, section := range []func(io.Writer) error{r.printPopulation, r.printSupply, r.printIncome, r.printClasses, r.printCheats, r.printWash, r.printConviction} {
		if err := section(w); err != nil {
			return err
		}
	}
	return nil
}

func (r *Report) printPopulation(w io.Writer) error {
	c := &r.Config
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "class\tmodel\tspeed\tprice\tenergy\tuptime\tproviders")
	for _, cl := range c.Classes {
		var who []string
		for _, g := range c.Population {
			if g.Class == cl.Name && g.Count > 0 {
				who = append(who, fmt.Sprintf("%d %s", g.Count, g.Strategy))
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%d tok/s\t%s/Mtok\t%s/Mtok\t%s\t%s\n", cl.Name, cl.Model, cl.TokensPerSecond,
			dollars(int64(min(cl.PriceMicroUSD, math.MaxInt64))), dollars(int64(min(cl.EnergyMicroUSD, math.MaxInt64))), bps(uint64(cl.UptimeBps)), strings.Join(who, ", "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w)
	fmt.Fprintln(tw, "market\tepoch 1 demand\tgrowth/epoch\tall pay up to\tnone pays from\tprompt/completion")
	for _, m := range c.Markets {
		growth := bps(uint64(max(m.GrowthBps, -m.GrowthBps)))
		if m.GrowthBps < 0 {
			growth = "-" + growth
		}
		fmt.Fprintf(tw, "%s\t%d tokens\t%s\t%s/Mtok\t%s/Mtok\t%d.%03d\n", m.Model, m.TokensPerEpoch, growth,
			dollars(int64(min(m.AllPayMicroUSD, math.MaxInt64))), dollars(int64(min(m.NonePayMicroUSD, math.MaxInt64))), m.PromptMilli/1_000, m.PromptMilli%1_000)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w)
	return err
}

// samples picks about k evenly spaced indices of n, first and last included.
func samples(n, k int) []int {
	if n <= k {
		out := make([]int, n)
		for i := range out {
			out[i] = i
		}
		return out
	}
	var out []int
	for i := range k {
		out = append(out, i*(n-1)/(k-1))
	}
	return out
}

func (r *Report) printSupply(w io.Writer) error {
	cap := r.Config.Params.SupplyCap
	fmt.Fprintf(w, "supply, read from the ledger (genesis allocation %s: stakes and consumers' funds)\n", tok(r.Genesis))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "epoch\tscheduled\tminted\tcumulative\tof cap\t")
	for _, i := range samples(len(r.Epochs), 11) {
		e := &r.Epochs[i]
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t\n", e.Epoch, tok(e.Scheduled), tok(e.Minted), tok(e.Cumulative), bps(share(uint64(e.Cumulative), uint64(cap))))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "after %d epochs the ledger's supply is %s minted (%s by emission) of the cap %s, %s\n\n",
		len(r.Epochs), tok(r.Supply.Minted), tok(r.Supply.Minted-min(r.Supply.Minted, r.Genesis)), tok(cap), bps(share(uint64(r.Supply.Minted), uint64(cap))))
	return err
}

// buckets splits the epochs into k runs of about equal length.
func (r *Report) buckets(k int) [][]EpochPoint {
	n := len(r.Epochs)
	k = min(k, n)
	var out [][]EpochPoint
	for i := range k {
		out = append(out, r.Epochs[i*n/k:(i+1)*n/k])
	}
	return out
}

func (r *Report) printIncome(w io.Writer) error {
	fmt.Fprintln(w, "provider income (all providers), fees vs emission, per epoch")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "epochs\tdemand\tserved\tonline\tfees\temission\tfee share\t")
	for _, bk := range r.buckets(10) {
		var fees, emission money.Amount
		var demand, served, online uint64
		for _, e := range bk {
			fees, emission = addAmount(fees, e.Fees), addAmount(emission, e.Emission)
			demand, served, online = demand+e.Demanded, served+e.Served, online+uint64(e.Online)
		}
		n := uint64(len(bk))
		fmt.Fprintf(tw, "%d-%d\t%d\t%d\t%d\t%s\t%s\t%s\t\n", bk[0].Epoch, bk[len(bk)-1].Epoch, demand/n, served/n, online/n,
			tok(fees/money.Amount(n)), tok(emission/money.Amount(n)), bps(share(uint64(fees), uint64(fees)+uint64(emission))))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w)
	return err
}

func (r *Report) printClasses(w io.Writer) error {
	c := &r.Config
	fmt.Fprintln(w, "honest providers' earnings per provider and epoch (tokens; net also in USD/h at the assumed rate)")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "class\tmodel\tn\tonline\tserved\tfees\temission\tenergy\tnet\tnet/h\tfee share\tat risk\t")
	for _, ce := range r.Classes {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", ce.Class, ce.Model, ce.Providers,
			bps(share(ce.OnlineEpochs, ce.ProviderEpochs)), ce.Served, ce.Fees.Short(), ce.Emission.Short(), ce.Energy.Short(), ce.Net.Short(),
			dollars(ce.Net.USDPerHour(c.TokensPerUSD, c.epochMillis())), bps(ce.FeeShareBps()), tok(ce.AtRisk))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, "(at risk: escrow + unvested rewards at an epoch's end, what a verdict would take besides stake)")
	fmt.Fprintln(w)
	return err
}

// tok formats money as tokens with two decimals.
func tok(a money.Amount) string { return net(a).Short() }

// chance formats a probability in 10⁻⁸ as a percentage.
func chance(e8 uint64) string {
	return fmt.Sprintf("%d.%04d%%", e8/1_000_000, e8%1_000_000/100)
}

func (r *Report) printCheats(w io.Writer) error {
	sl := &r.Config.Slashing
	fmt.Fprintf(w, "cheating, MODELLED (no verifier runs in this simulation): a provider meets a canary in %s of the epochs it serves;\n", bps(uint64(sl.CanaryBps)))
	fmt.Fprintf(w, "a catch costs %s of its stake + its escrow + its unvested rewards (read from the ledger) and %d epochs in jail.\n", bps(uint64(sl.SlashBps)), sl.JailEpochs)
	fmt.Fprintf(w, "Detection per canary: quantize %s, fabricate %s, inflate-unmetered %s (inflating by %s); energy: quantize %s, fabricate %s of honest.\n",
		bps(uint64(sl.QuantizeDetectBps)), bps(uint64(sl.FabricateDetectBps)), bps(uint64(sl.InflateDetectBps)), bps(uint64(sl.InflateBps)),
		bps(uint64(sl.QuantizeCostBps)), bps(uint64(sl.FabricateCostBps)))
	fmt.Fprintln(w, "inflate assumes a gateway that meters the tokens it relays and will not countersign a larger count: no receipt, no pay.")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "strategy\tclass\tcaught/epoch\thonest\tgain\tpenalty\texpected\tvs honest\tpays below\tlive net\tlive caught\t")
	for _, row := range r.Cheats {
		live, caught := "-", "-"
		if row.Live != nil {
			live = row.Live.Net.Short()
			caught = fmt.Sprintf("%d in %d", row.Live.Caught, row.Live.ProviderEpochs-row.Live.Jailed)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", row.Strategy, row.Class, chance(row.DetectE8), row.Honest.Short(), row.Gain.Short(),
			tok(row.Penalty), row.Expected.Short(), relative(row.Expected, row.Honest), breakEvenText(row.BreakEvenE8), live, caught)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, "(per provider-epoch; pays below: the detection chance per epoch under which it beats honesty)")
	fmt.Fprintln(w)
	return err
}

// relative is how a compares with base, as a signed percentage.
func relative(a, base Net) string {
	if base <= 0 {
		return "n/a"
	}
	d := new(big.Int).Mul(big.NewInt(int64(a)-int64(base)), big.NewInt(10_000))
	v := clampBig(d.Quo(d, big.NewInt(int64(base))))
	if v < 0 {
		return "-" + bps(uint64(-v))
	}
	return "+" + bps(uint64(v))
}

func breakEvenText(e8 uint64) string {
	switch e8 {
	case 0:
		return "never"
	case certain:
		return "always"
	}
	return chance(e8)
}

func (r *Report) printWash(w io.Writer) error {
	x := &r.Wash
	fmt.Fprintf(w, "self-dealing, on the real ledger: a %s provider (%s) that is its own consumer and owns its gateway settles %d tokens/epoch at %s/Mtok;\n",
		x.Class, x.Model, x.TokensPerEpoch, dollars(int64(min(x.PriceMicroUSD, math.MaxInt64))))
	fmt.Fprintf(w, "wash trading serves them (paying the energy), fabricated receipts do no work; %d epochs per honest demand level (flat demand)\n", x.Epochs)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "demand\thonest served\thonest work\twash work\tpool\trewards\tpaid\tback\tprotocol fee\tenergy\twash net/epoch\tfabricated net/epoch\t")
	for _, l := range x.Levels {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", bps(uint64(l.LevelBps)), l.HonestServed, l.HonestWork, l.WashWork,
			tok(l.Pool), tok(l.Rewards), tok(l.FeesPaid), tok(l.FeesBack), tok(l.ProtocolFees), tok(l.Energy), l.WashNet.Short(), l.FabricatedNet.Short())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	p := &r.Config.Params
	_, err := fmt.Fprintf(w, "(demand in %% of the markets' first-epoch demand; work units are base units paid; a provider's reward is at most %s of what it was paid,\n"+
		"below the protocol fee of %s, so rewards − protocol fee < 0 at any volume; a receipt that pays no protocol fee earns nothing, so fabricated\n"+
		"receipts at a price that rounds to zero net exactly 0)\n%s\n\n", bps(uint64(p.RewardMaxPaidBps)), bps(uint64(p.ProtocolFeeBps)), x.verdict())
	return err
}

// verdict says whether self-dealing paid anywhere.
func (x *WashReport) verdict() string {
	if x.Pays {
		return fmt.Sprintf("self-dealing made money at %s of demand", bps(uint64(x.PaysAtBps)))
	}
	return fmt.Sprintf("wash trading and fabricated receipts lost money at every level tried, from %s of demand", bps(uint64(x.Levels[0].LevelBps)))
}

func (r *Report) printConviction(w io.Writer) error {
	c := &r.Conviction
	rule := fmt.Sprintf("verdict_fail_stake_bps = %s", bps(uint64(c.FailStakeBps)))
	if c.Impossible {
		_, err := fmt.Fprintf(w, "convicting an honest provider: %s; no stake reaches it against %s tokens of honest verifiers\n\n", rule, tok(c.HonestStake))
		return err
	}
	_, err := fmt.Fprintf(w, "convicting an honest provider: %s;\nagainst the genesis's %s tokens of honest verifier stake an attacker must hold %s tokens of verifier stake (s·T/(1−s))\n\n",
		rule, tok(c.HonestStake), tok(c.AttackerStake))
	return err
}

// Summary is the one-line result.
func (r *Report) Summary() string {
	var parts []string
	if n := len(r.Epochs); n > 0 {
		bk := r.buckets(10)
		parts = append(parts, fmt.Sprintf("%d epochs on the ledger: supply %s of the cap", n, bps(share(uint64(r.Supply.Minted), uint64(r.Config.Params.SupplyCap)))),
			fmt.Sprintf("fee share of provider income %s → %s", bps(feeShare(bk[0])), bps(feeShare(bk[len(bk)-1]))))
	}
	var nets []string
	for _, ce := range r.Classes {
		nets = append(nets, fmt.Sprintf("%s %s", ce.Class, dollars(ce.Net.USDPerHour(r.Config.TokensPerUSD, r.Config.epochMillis()))))
	}
	if len(nets) > 0 {
		parts = append(parts, "honest net/h "+strings.Join(nets, ", "))
	}
	var paying []string
	for _, row := range r.Cheats {
		if row.Expected > row.Honest {
			paying = append(paying, fmt.Sprintf("%s on %s %s", row.Strategy, row.Class, relative(row.Expected, row.Honest)))
		}
	}
	if len(paying) == 0 {
		parts = append(parts, fmt.Sprintf("cheating pays in none of %d cases (modelled slashing)", len(r.Cheats)))
	} else {
		parts = append(parts, fmt.Sprintf("cheating pays in %d of %d cases (modelled slashing): %s", len(paying), len(r.Cheats), strings.Join(paying, ", ")))
	}
	if x := &r.Wash; len(x.Levels) > 0 {
		worstWash, worstFab := x.Levels[0].WashNet, x.Levels[0].FabricatedNet
		for _, l := range x.Levels {
			worstWash, worstFab = max(worstWash, l.WashNet), max(worstFab, l.FabricatedNet)
		}
		parts = append(parts, fmt.Sprintf("best self-dealing net/epoch: wash trading %s, fabricated receipts %s", worstWash.Short(), worstFab.Short()))
	}
	if c := &r.Conviction; !c.Impossible {
		parts = append(parts, fmt.Sprintf("convicting the honest takes %s tokens of verifier stake", tok(c.AttackerStake)))
	}
	return "bench econ: " + strings.Join(parts, "; ")
}

func feeShare(es []EpochPoint) uint64 {
	var fees, emission uint64
	for _, e := range es {
		fees, emission = satAdd(fees, uint64(e.Fees)), satAdd(emission, uint64(e.Emission))
	}
	return share(fees, satAdd(fees, emission))
}
