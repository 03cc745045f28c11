package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/ledger"
	"github.com/idlegrid/idlegrid/internal/money"
	"github.com/idlegrid/idlegrid/internal/receipt"
)

// The reward commands: epochs, payout proofs and parameter changes.

func (f *ledgerFlags) ledger(cmd *cobra.Command) (chainrpc.StateReader, context.Context, context.CancelFunc, error) {
	c, err := f.client()
	if err != nil {
		return chainrpc.StateReader{}, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
	return chainrpc.StateReader{Client: c}, ctx, cancel, nil
}

func ledgerEpochCmd(a *app, f *ledgerFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "epoch [N]",
		Short: "Show the running epoch, or what finished epoch N paid (pools, work, payees, Merkle root)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, ctx, cancel, err := f.ledger(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			if len(args) == 0 {
				st, err := l.EpochState(ctx)
				if err != nil {
					return err
				}
				if f.json {
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
			if f.json {
				return printJSON(a.stdout, rec)
			}
			fmt.Fprintf(a.stdout, "epoch %d, heights %d to %d\n", rec.Number, rec.Start, rec.End)
			fmt.Fprintf(a.stdout, "scheduled  %s\nminted     %s\n", rec.Scheduled, rec.Minted)
			fmt.Fprintf(a.stdout, "providers  %s (work units: %s paid to them)\nverifiers  %s\nvalidators %s\ntreasury   %s\n", rec.Providers, money.Amount(rec.Work), rec.Verifiers, rec.Validators, rec.Treasury)
			fmt.Fprintf(a.stdout, "payees     %d\nroot       %s\n", rec.Payees, rec.Root)
			return nil
		},
	}
}

func ledgerPayoutCmd(a *app, f *ledgerFlags) *cobra.Command {
	var (
		epoch   uint64
		account string
		out     string
	)
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
			if !cmd.Flags().Changed("epoch") {
				return errors.New("--epoch is required")
			}
			addr, err := f.accountOr(account)
			if err != nil {
				return err
			}
			l, ctx, cancel, err := f.ledger(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			pr, err := l.PayoutProof(ctx, epoch, addr)
			if errors.Is(err, chainrpc.ErrNotFound) {
				return fmt.Errorf("no payout to %s in epoch %d: the epoch has not ended, or the account earned nothing in it", addr, epoch)
			}
			if err != nil {
				return err
			}
			rec, err := l.Epoch(ctx, epoch)
			if err != nil {
				return err
			}
			if err := pr.Verify(rec.Root); err != nil {
				return fmt.Errorf("the node's proof does not check out: %w", err)
			}
			if out != "" {
				b, _ := json.MarshalIndent(pr, "", "  ")
				if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
					return err
				}
			}
			if f.json {
				return printJSON(a.stdout, pr)
			}
			fmt.Fprintf(a.stdout, "epoch %d: %s earned %s (leaf %d of %d)\nroot %s\nproof:\n", pr.Payout.Epoch, pr.Payout.Account, pr.Payout.Amount, pr.Index, pr.Size, pr.Root)
			for _, h := range pr.Path {
				fmt.Fprintf(a.stdout, "  %s\n", h)
			}
			return nil
		},
	}
	cmd.Flags().Uint64Var(&epoch, "epoch", 0, "epoch number")
	cmd.Flags().StringVar(&account, "account", "", "account address (default: the --key-file account)")
	cmd.Flags().StringVar(&out, "out", "", "also write the proof as JSON to this file")
	return cmd
}

// accountOr is addr when given, else the --key-file account.
func (f *ledgerFlags) accountOr(addr string) (keys.Address, error) {
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

func ledgerVerifyPayoutCmd(a *app, f *ledgerFlags) *cobra.Command {
	var (
		rootHex string
		also    []string
	)
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
			var r io.Reader = os.Stdin
			if args[0] != "-" {
				file, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer file.Close()
				r = file
			}
			pr, err := ledger.ReadPayoutProof(r)
			if err != nil {
				return fmt.Errorf("%s: not a payout proof: %w", args[0], err)
			}
			var root receipt.Hash
			source := "--root"
			if rootHex != "" {
				if err := root.UnmarshalText([]byte(rootHex)); err != nil {
					return fmt.Errorf("--root: %w", err)
				}
			} else {
				var err error
				if root, source, err = f.epochRoot(cmd, pr.Payout.Epoch, also); err != nil {
					return err
				}
			}
			if err := pr.Verify(root); err != nil {
				return fmt.Errorf("payout proof REJECTED: %w", err)
			}
			fmt.Fprintf(a.stdout, "ok: %s earned %s in epoch %d; the proof leads to root %s (from %s)\n", pr.Payout.Account, pr.Payout.Amount, pr.Payout.Epoch, root, source)
			return nil
		},
	}
	cmd.Flags().StringVar(&rootHex, "root", "", "the epoch's root in hex, instead of asking nodes")
	cmd.Flags().StringSliceVar(&also, "also", nil, "more validator RPC URLs that must report the same root")
	return cmd
}

// epochRoot asks --chain-rpc and every other node for the epoch's root and
// requires them to agree.
func (f *ledgerFlags) epochRoot(cmd *cobra.Command, epoch uint64, also []string) (receipt.Hash, string, error) {
	var root receipt.Hash
	urls := append([]string{f.rpc}, also...)
	for i, u := range urls {
		c, err := chainrpc.NewHTTPClient(u)
		if err != nil {
			return root, "", err
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
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

func ledgerParamsCmd(a *app, f *ledgerFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "params",
		Short: "Show the chain's parameters, or approve and submit a change (validators only)",
		Long: `Without a subcommand: print the parameters, their version and the validators
whose accounts approve changes. A change takes the new parameters as a JSON
file (the output of this command's "params" field, edited), approvals from more
than two thirds of the validators' reward accounts (` + "`params approve`" + `, each
with its own --key-file), and one ` + "`params submit`" + ` that sends them together. The supply
cap cannot change.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, ctx, cancel, err := f.ledger(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			p, err := l.Params(ctx)
			if err != nil {
				return err
			}
			g, err := l.Governance(ctx)
			if err != nil {
				return err
			}
			return printJSON(a.stdout, struct {
				Params ledger.Params `json:"params"`
				chainrpc.GovernanceInfo
			}{p, g})
		},
	}
	approve := &cobra.Command{
		Use:   "approve FILE",
		Short: "Sign the parameters in FILE for the chain's next version with --key-file; prints the approval",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := f.key()
			if err != nil {
				return err
			}
			l, ctx, cancel, err := f.ledger(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			p, err := readParams(ctx, l, args[0])
			if err != nil {
				return err
			}
			g, err := l.Governance(ctx)
			if err != nil {
				return err
			}
			return printJSON(a.stdout, ledger.ApproveParams(k, g.ChainID, g.ParamsVersion, &p))
		},
	}
	var approvals []string
	submit := &cobra.Command{
		Use:   "submit FILE --approval APPROVAL.json ...",
		Short: "Send the parameter change in FILE with the validators' approvals",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, ctx, cancel, err := f.ledger(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			p, err := readParams(ctx, l, args[0])
			if err != nil {
				return err
			}
			tx := ledger.Tx{Kind: ledger.KindParams, Params: p}
			for _, file := range approvals {
				b, err := os.ReadFile(file)
				if err != nil {
					return err
				}
				var ap ledger.Approval
				if err := json.Unmarshal(b, &ap); err != nil {
					return fmt.Errorf("%s: not an approval: %w", file, err)
				}
				tx.Approvals = append(tx.Approvals, ap)
			}
			return f.send(cmd, a, tx)
		},
	}
	submit.Flags().StringArrayVar(&approvals, "approval", nil, "approval file from params approve (repeat)")
	cmd.AddCommand(approve, submit)
	return cmd
}

// readParams reads a parameter change: the chain's current parameters with
// the fields the file sets replaced. Unknown fields are errors, so a typo
// cannot silently keep the old value.
func readParams(ctx context.Context, l chainrpc.StateReader, file string) (ledger.Params, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return ledger.Params{}, err
	}
	p, err := l.Params(ctx)
	if err != nil {
		return ledger.Params{}, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return ledger.Params{}, fmt.Errorf("%s: %w", file, err)
	}
	if err := p.Validate(); err != nil {
		return ledger.Params{}, fmt.Errorf("%s: %w", file, err)
	}
	return p, nil
}
