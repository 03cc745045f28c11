package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// The reward commands of `idlegrid ledger`: epochs and payout proofs.

// newLedgerEpochCmd is `idlegrid ledger epoch`: it takes only the group's
// flags.
func newLedgerEpochCmd(a *app, group *ledgerArgs) *cobra.Command {
	return &cobra.Command{
		Use:   "epoch [N]",
		Short: "Show the running epoch, or what finished epoch N paid (pools, work, payees, Merkle root)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLedgerEpoch(cmd.Context(), a, group, args)
		},
	}
}

// runLedgerEpoch shows the running epoch, or the finished epoch args[0].
func runLedgerEpoch(ctx context.Context, a *app, group *ledgerArgs, args []string) error {
	l, ctx, cancel, err := group.ledger(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if len(args) == 0 {
		st, err := l.EpochState(ctx)
		if err != nil {
			return err
		}
		if group.json {
			return printJSON(a.stdout, st)
		}
		fmt.Fprintf(a.stdout, "epoch %d runs from height %d to %d (the ledger is at height %d)\n", st.Number, st.Start, st.EndHeight, st.Height)
		return nil
	}
	n, err := strconv.ParseUint(args[0], 10, 64)
	if err != nil {
		return fmt.Errorf("epoch %q: want a number", args[0])
	}
	rec, err := l.Epoch(ctx, n)
	if errors.Is(err, chainrpc.ErrNotFound) {
		return fmt.Errorf("epoch %d has not ended yet", n)
	}
	if err != nil {
		return err
	}
	if group.json {
		return printJSON(a.stdout, rec)
	}
	fmt.Fprintf(a.stdout, "epoch %d, heights %d to %d\n", rec.Number, rec.Start, rec.End)
	fmt.Fprintf(a.stdout, "scheduled  %s\nminted     %s\n", rec.Scheduled, rec.Minted)
	fmt.Fprintf(a.stdout, "providers  %s (work units: %s paid to them)\nverifiers  %s\nvalidators %s\ntreasury   %s\n", rec.Providers, money.Amount(rec.Work), rec.Verifiers, rec.Validators, rec.Treasury)
	fmt.Fprintf(a.stdout, "payees     %d\nroot       %s\n", rec.Payees, rec.Root)
	return nil
}

// ledgerPayoutArgs are the flags of `idlegrid ledger payout`.
type ledgerPayoutArgs struct {
	*ledgerArgs
	flags   *pflag.FlagSet // to tell --epoch 0 from no --epoch
	epoch   uint64
	account string
	out     string
}

func newLedgerPayoutCmd(a *app, group *ledgerArgs) *cobra.Command {
	opts := &ledgerPayoutArgs{ledgerArgs: group}
	cmd := &cobra.Command{
		Use:   "payout --epoch N [--account ADDRESS]",
		Short: "Print an account's reward in an epoch and its Merkle proof against the epoch's root",
		Long: `Fetch the payout of --account (default: the --key-file account) in epoch --epoch
and its Merkle inclusion proof, check the proof against the epoch's root, and
print both. --out FILE saves the proof as JSON for ` + "`idlegrid ledger verify-payout`" + `,
which anyone can run against the chain without trusting whoever gave them
the file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runLedgerPayout(cmd.Context(), a, opts)
		},
	}
	f := cmd.Flags()
	opts.flags = f
	f.Uint64Var(&opts.epoch, "epoch", 0, "epoch number")
	f.StringVar(&opts.account, "account", "", "account address (default: the --key-file account)")
	f.StringVar(&opts.out, "out", "", "also write the proof as JSON to this file")
	return cmd
}

func runLedgerPayout(ctx context.Context, a *app, opts *ledgerPayoutArgs) error {
	if !opts.flags.Changed("epoch") {
		return errors.New("--epoch is required")
	}
	addr, err := opts.accountOr(opts.account)
	if err != nil {
		return err
	}
	l, ctx, cancel, err := opts.ledger(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	pr, err := l.PayoutProof(ctx, opts.epoch, addr)
	if errors.Is(err, chainrpc.ErrNotFound) {
		return fmt.Errorf("no payout to %s in epoch %d: the epoch has not ended, or the account earned nothing in it", addr, opts.epoch)
	}
	if err != nil {
		return err
	}
	rec, err := l.Epoch(ctx, opts.epoch)
	if err != nil {
		return err
	}
	if err := pr.Verify(rec.Root); err != nil {
		return fmt.Errorf("the node's proof does not check out: %w", err)
	}
	if opts.out != "" {
		b, _ := json.MarshalIndent(pr, "", "  ")
		if err := os.WriteFile(opts.out, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	if opts.json {
		return printJSON(a.stdout, pr)
	}
	fmt.Fprintf(a.stdout, "epoch %d: %s earned %s (leaf %d of %d)\nroot %s\nproof:\n", pr.Payout.Epoch, pr.Payout.Account, pr.Payout.Amount, pr.Index, pr.Size, pr.Root)
	for _, h := range pr.Path {
		fmt.Fprintf(a.stdout, "  %s\n", h)
	}
	return nil
}

// ledgerVerifyPayoutArgs are the flags of `idlegrid ledger verify-payout`.
type ledgerVerifyPayoutArgs struct {
	*ledgerArgs
	root string
	also []string
}

func newLedgerVerifyPayoutCmd(a *app, group *ledgerArgs) *cobra.Command {
	opts := &ledgerVerifyPayoutArgs{ledgerArgs: group}
	cmd := &cobra.Command{
		Use:   "verify-payout FILE",
		Short: "Check a payout proof (from `ledger payout --out`) against the epoch root on the chain",
		Long: `Check that the payout in FILE ("-" reads stdin) is a leaf of its epoch's
Merkle tree: the proof's path must lead from the payout to the epoch's root.
The root is never taken from the file: it comes from the validator at --chain-rpc
(and every --also node, which must all agree), or from --root, e.g. the root
` + "`idlegrid audit`" + ` recomputed from the blocks itself.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLedgerVerifyPayout(cmd.Context(), a, opts, args[0])
		},
	}
	cmd.Flags().StringVar(&opts.root, "root", "", "the epoch's root in hex, instead of asking nodes")
	cmd.Flags().StringSliceVar(&opts.also, "also", nil, "more validator RPC URLs that must report the same root")
	return cmd
}

// runLedgerVerifyPayout checks the proof in file ("-": stdin).
func runLedgerVerifyPayout(ctx context.Context, a *app, opts *ledgerVerifyPayoutArgs, file string) error {
	var r io.Reader = os.Stdin
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	pr, err := ledger.ReadPayoutProof(r)
	if err != nil {
		return fmt.Errorf("%s: not a payout proof: %w", file, err)
	}
	var root receipt.Hash
	source := "--root"
	if opts.root != "" {
		if err := root.UnmarshalText([]byte(opts.root)); err != nil {
			return fmt.Errorf("--root: %w", err)
		}
	} else if root, source, err = opts.epochRoot(ctx, pr.Payout.Epoch, opts.also); err != nil {
		return err
	}
	if err := pr.Verify(root); err != nil {
		return fmt.Errorf("payout proof REJECTED: %w", err)
	}
	fmt.Fprintf(a.stdout, "ok: %s earned %s in epoch %d; the proof leads to root %s (from %s)\n", pr.Payout.Account, pr.Payout.Amount, pr.Payout.Epoch, root, source)
	return nil
}

// epochRoot asks --chain-rpc and every other node for the epoch's root and
// requires them to agree.
func (f *ledgerArgs) epochRoot(ctx context.Context, epoch uint64, also []string) (receipt.Hash, string, error) {
	var root receipt.Hash
	urls := append([]string{f.rpc}, also...)
	for i, u := range urls {
		c, err := chainrpc.NewHTTPClient(u)
		if err != nil {
			return root, "", err
		}
		ctx, cancel := context.WithTimeout(ctx, f.timeout)
		rec, err := chainrpc.StateReader{Client: c}.Epoch(ctx, epoch)
		cancel()
		if errors.Is(err, chainrpc.ErrNotFound) {
			return root, "", fmt.Errorf("%s: epoch %d has not ended", u, epoch)
		}
		if err != nil {
			return root, "", fmt.Errorf("%s: %w", u, err)
		}
		if i > 0 && rec.Root != root {
			return root, "", fmt.Errorf("the nodes disagree on epoch %d's root: %s says %s, %s says %s", epoch, urls[0], root, u, rec.Root)
		}
		root = rec.Root
	}
	return root, fmt.Sprintf("%d node(s)", len(urls)), nil
}
