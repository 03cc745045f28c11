package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// `idlegrid ledger`: the group, its shared flags, the account, the
// transactions and the look-ups. The reward commands are in
// ledger_rewards.go, the parameter changes in ledger_params.go.

// ledgerArgs are the flags of `idlegrid ledger`, which every ledger
// subcommand inherits.
type ledgerArgs struct {
	rpc     string
	keyFile string
	json    bool
	timeout time.Duration
}

func (f *ledgerArgs) client() (chainrpc.Client, error) { return chainrpc.NewHTTPClient(f.rpc) }

func (f *ledgerArgs) key() (keys.PrivateKey, error) {
	k, err := keys.Load(f.keyFile)
	if err != nil {
		return keys.PrivateKey{}, fmt.Errorf("signing key: %w (choose one with --key-file)", err)
	}
	return k, nil
}

// ledger is the ledger at --chain-rpc and ctx limited to --timeout.
func (f *ledgerArgs) ledger(ctx context.Context) (chainrpc.StateReader, context.Context, context.CancelFunc, error) {
	c, err := f.client()
	if err != nil {
		return chainrpc.StateReader{}, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	return chainrpc.StateReader{Client: c}, ctx, cancel, nil
}

// accountOr is addr when given, else the --key-file account.
func (f *ledgerArgs) accountOr(addr string) (keys.Address, error) {
	if addr == "" {
		k, err := f.key()
		if err != nil {
			return "", err
		}
		return k.Public().Address(), nil
	}
	a := keys.Address(addr)
	return a, a.Validate()
}

// send signs tx with --key-file, submits it, waits for its block and prints the
// outcome.
func (f *ledgerArgs) send(ctx context.Context, a *app, tx ledger.Tx) error {
	k, err := f.key()
	if err != nil {
		return err
	}
	c, err := f.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	st, err := c.Status(ctx)
	if err != nil {
		return fmt.Errorf("ledger at %s: %w", f.rpc, err)
	}
	res, err := chainrpc.NewSigner(c, k, st.ChainID).Send(ctx, tx)
	if err != nil {
		return err
	}
	if f.json {
		if err := printJSON(a.stdout, res); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(a.stdout, "%s tx %X at height %d: ", tx.Kind, res.Hash, res.Height)
	}
	if err := res.Err(); err != nil {
		return err
	}
	if !f.json {
		fmt.Fprintln(a.stdout, "ok")
	}
	return nil
}

func newLedgerCmd(a *app) *cobra.Command {
	opts := &ledgerArgs{}
	cmd := &cobra.Command{
		Use:   "ledger",
		Short: "Read and change the ledger: balances, transfers, stakes, registrations, receipts, rewards",
		Long: `Talk to a validator over its RPC (--chain-rpc; ` + "`idlegrid up`" + ` serves one at
` + defaultRPC + `). Amounts are tokens with up to six decimals ("12.5").
Transactions are signed with --key-file (default: the dev account of ` + "`idlegrid up`" + `).`,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&opts.rpc, "chain-rpc", defaultRPC, "validator RPC URL")
	pf.StringVar(&opts.keyFile, "key-file", filepath.Join(defaultDataDir(), "dev-account.key"), "key file that signs transactions")
	deprecatedAlias(pf, "rpc", "chain-rpc")
	deprecatedAlias(pf, "key", "key-file")
	pf.BoolVar(&opts.json, "json", false, "print JSON")
	pf.DurationVar(&opts.timeout, "timeout", time.Minute, "how long to wait for the ledger")
	cmd.AddCommand(
		newLedgerBalanceCmd(a, opts),
		newLedgerTxCmd(a, opts, "send TO AMOUNT", "Transfer tokens to an address", 2, sendTx),
		newLedgerTxCmd(a, opts, "stake AMOUNT", "Bond tokens from the balance as stake", 1, amountTx(ledger.KindStake)),
		newLedgerTxCmd(a, opts, "unstake AMOUNT", "Start unbonding stake (withdraw it after the unbonding period)", 1, amountTx(ledger.KindUnstake)),
		newLedgerTxCmd(a, opts, "withdraw", "Move stake that has finished unbonding back to the balance", 0, kindTx(ledger.KindWithdrawUnbonded)),
		newLedgerTxCmd(a, opts, "register ROLE [INFO]", "Register as provider, gateway or verifier, with public info (e.g. a URL)", -1, registerTx),
		newLedgerTxCmd(a, opts, "approve GATEWAY AMOUNT", "Lock AMOUNT tokens of your balance in a deposit that only GATEWAY can charge (lowering it returns the difference after deposit_unlock_blocks, with your next approve)", 2, approveTx),
		newLedgerLookupCmd(a, opts, "tx HASH", "Show where a transaction ran and its result code", lookupTx),
		newLedgerLookupCmd(a, opts, "receipt GATEWAY/REQUEST_ID", "Show how a gateway's receipt was settled (request ids are unique per gateway)", lookupSettlement),
		newLedgerTxCmd(a, opts, "claim", "Move the vested part of your rewards to your balance", 0, kindTx(ledger.KindClaim)),
		newLedgerTxCmd(a, opts, "unjail", "Serve again after a conviction, once the jail time is over", 0, kindTx(ledger.KindUnjail)),
		newLedgerLookupCmd(a, opts, "provider ADDRESS", "Show a provider's verification record: audits, failures, convictions, reputation", lookupProvider),
		newLedgerEpochCmd(a, opts),
		newLedgerPayoutCmd(a, opts),
		newLedgerVerifyPayoutCmd(a, opts),
		newLedgerParamsCmd(a, opts),
	)
	return cmd
}

// ledgerBalanceArgs are the flags of `idlegrid ledger balance`.
type ledgerBalanceArgs struct {
	*ledgerArgs
	gateways []string
}

func newLedgerBalanceCmd(a *app, group *ledgerArgs) *cobra.Command {
	opts := &ledgerBalanceArgs{ledgerArgs: group}
	cmd := &cobra.Command{
		Use:   "balance [ADDRESS]",
		Short: "Show an account: balance, stake, unbonding, escrow, roles, and its deposits for --gateway (default: the --key-file account)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLedgerBalance(cmd.Context(), a, opts, args)
		},
	}
	cmd.Flags().StringArrayVar(&opts.gateways, "gateway", nil, "also show the account's deposit for this gateway (repeatable)")
	return cmd
}

// runLedgerBalance shows the account args[0], or the --key-file account.
func runLedgerBalance(ctx context.Context, a *app, opts *ledgerBalanceArgs, args []string) error {
	var addr keys.Address
	if len(args) == 1 {
		addr = keys.Address(args[0])
	} else {
		k, err := opts.key()
		if err != nil {
			return err
		}
		addr = k.Public().Address()
	}
	if err := addr.Validate(); err != nil {
		return err
	}
	l, ctx, cancel, err := opts.ledger(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	info, err := l.Account(ctx, addr)
	if errors.Is(err, chainrpc.ErrNotFound) {
		return fmt.Errorf("account %s does not exist on the ledger (it has never received anything)", addr)
	}
	if err != nil {
		return err
	}
	var deposits []chainrpc.DepositInfo
	for _, g := range opts.gateways {
		gw := keys.Address(g)
		if err := gw.Validate(); err != nil {
			return fmt.Errorf("--gateway: %w", err)
		}
		d, err := l.Deposit(ctx, addr, gw)
		if err != nil {
			return err
		}
		deposits = append(deposits, d)
	}
	if opts.json {
		return printJSON(a.stdout, struct {
			chainrpc.AccountInfo
			Deposits []chainrpc.DepositInfo `json:"deposits,omitempty"`
		}{info, deposits})
	}
	printAccount(a.stdout, info)
	for _, d := range deposits {
		fmt.Fprintf(a.stdout, "deposit   %s locked for %s\n", d.Locked, d.Gateway)
		for _, e := range d.Unlocking {
			fmt.Fprintf(a.stdout, "          %s unlocking, back to the balance with the next approve from height %d\n", e.Amount, e.Height)
		}
	}
	return nil
}

func printAccount(w io.Writer, a chainrpc.AccountInfo) {
	fmt.Fprintf(w, "account   %s\n", a.Address)
	fmt.Fprintf(w, "balance   %s\n", a.Balance)
	fmt.Fprintf(w, "stake     %s\n", a.Stake)
	for _, e := range a.Unbonding {
		fmt.Fprintf(w, "unbonding %s (withdrawable from height %d)\n", e.Amount, e.Height)
	}
	for _, e := range a.Escrow {
		fmt.Fprintf(w, "escrow    %s (released at height %d)\n", e.Amount, e.Height)
	}
	if len(a.Vesting) > 0 {
		fmt.Fprintf(w, "vesting   %s claimable now, %s still vesting\n", a.Claimable, a.Unvested)
		for _, v := range a.Vesting {
			fmt.Fprintf(w, "          %s from height %d to %d (%s paid out)\n", v.Amount, v.Start, v.End, v.Released)
		}
	}
	var roles []string
	for _, r := range []ledger.Role{ledger.RoleProvider, ledger.RoleGateway, ledger.RoleVerifier} {
		if a.Has(r) {
			roles = append(roles, r.String())
		}
	}
	if len(roles) > 0 {
		fmt.Fprintf(w, "roles     %s\n", strings.Join(roles, ", "))
	}
	if a.Jailed {
		fmt.Fprintf(w, "JAILED\n")
	}
	fmt.Fprintf(w, "nonce     %d\n", a.Nonce)
}

// newLedgerTxCmd builds a subcommand that signs and submits the one
// transaction build makes of its arguments; it takes only the group's
// flags. nargs < 0 leaves argument checks to build.
func newLedgerTxCmd(a *app, group *ledgerArgs, use, short string, nargs int, build func([]string) (ledger.Tx, error)) *cobra.Command {
	check := cobra.ExactArgs(max(nargs, 0))
	if nargs < 0 {
		check = cobra.ArbitraryArgs
	}
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  check,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLedgerTx(cmd.Context(), a, group, build, args)
		},
	}
}

func runLedgerTx(ctx context.Context, a *app, group *ledgerArgs, build func([]string) (ledger.Tx, error), args []string) error {
	tx, err := build(args)
	if err != nil {
		return err
	}
	return group.send(ctx, a, tx)
}

// sendTx is `ledger send TO AMOUNT`.
func sendTx(args []string) (ledger.Tx, error) {
	amt, err := money.Parse(args[1])
	return ledger.Tx{Kind: ledger.KindTransfer, To: keys.Address(args[0]), Amount: amt}, errors.Join(err, keys.Address(args[0]).Validate())
}

// amountTx is a transaction of kind whose one argument is its amount
// (`ledger stake`, `ledger unstake`).
func amountTx(kind ledger.Kind) func([]string) (ledger.Tx, error) {
	return func(args []string) (ledger.Tx, error) {
		amt, err := money.Parse(args[0])
		return ledger.Tx{Kind: kind, Amount: amt}, err
	}
}

// kindTx is a transaction of kind without arguments (`ledger withdraw`,
// `ledger claim`, `ledger unjail`).
func kindTx(kind ledger.Kind) func([]string) (ledger.Tx, error) {
	return func([]string) (ledger.Tx, error) {
		return ledger.Tx{Kind: kind}, nil
	}
}

// registerTx is `ledger register ROLE [INFO]`.
func registerTx(args []string) (ledger.Tx, error) {
	if len(args) < 1 || len(args) > 2 {
		return ledger.Tx{}, errors.New("want ROLE and optionally INFO")
	}
	r, err := ledger.ParseRole(args[0])
	tx := ledger.Tx{Kind: ledger.KindRegister, Role: r}
	if len(args) == 2 {
		tx.Info = args[1]
	}
	return tx, err
}

// approveTx is `ledger approve GATEWAY AMOUNT`.
func approveTx(args []string) (ledger.Tx, error) {
	amt, err := money.Parse(args[1])
	return ledger.Tx{Kind: ledger.KindApprove, Gateway: keys.Address(args[0]), Amount: amt}, errors.Join(err, keys.Address(args[0]).Validate())
}

// newLedgerLookupCmd builds a subcommand that prints as JSON what look
// finds on the ledger for its one argument; it takes only the group's
// flags.
func newLedgerLookupCmd(a *app, group *ledgerArgs, use, short string, look func(context.Context, chainrpc.StateReader, string) (any, error)) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLedgerLookup(cmd.Context(), a, group, look, args[0])
		},
	}
}

func runLedgerLookup(ctx context.Context, a *app, group *ledgerArgs, look func(context.Context, chainrpc.StateReader, string) (any, error), arg string) error {
	l, ctx, cancel, err := group.ledger(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	v, err := look(ctx, l, arg)
	if err != nil {
		return err
	}
	return printJSON(a.stdout, v)
}

// lookupTx is `ledger tx HASH`.
func lookupTx(ctx context.Context, l chainrpc.StateReader, arg string) (any, error) {
	var h receipt.Hash
	if err := h.UnmarshalText([]byte(strings.ToLower(arg))); err != nil {
		return nil, err
	}
	return l.Tx(ctx, h)
}

// lookupSettlement is `ledger receipt GATEWAY/REQUEST_ID`.
func lookupSettlement(ctx context.Context, l chainrpc.StateReader, arg string) (any, error) {
	gateway, id, err := chainrpc.ParseReceiptRef(arg)
	if err != nil {
		return nil, err
	}
	return l.Settlement(ctx, gateway, id)
}

// lookupProvider is `ledger provider ADDRESS`.
func lookupProvider(ctx context.Context, l chainrpc.StateReader, arg string) (any, error) {
	return l.Provider(ctx, keys.Address(arg))
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
