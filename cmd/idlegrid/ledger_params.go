package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
	"github.com/idlegrid/idlegrid/internal/ledger"
)

// The parameter commands of `idlegrid ledger`: show, approve and submit a
// change.

// newLedgerParamsCmd is `idlegrid ledger params`: it takes only the
// group's flags.
func newLedgerParamsCmd(a *app, group *ledgerArgs) *cobra.Command {
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
			return runLedgerParams(cmd.Context(), a, group)
		},
	}
	cmd.AddCommand(newLedgerParamsApproveCmd(a, group), newLedgerParamsSubmitCmd(a, group))
	return cmd
}

func runLedgerParams(ctx context.Context, a *app, group *ledgerArgs) error {
	l, ctx, cancel, err := group.ledger(ctx)
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
}

// newLedgerParamsApproveCmd is `idlegrid ledger params approve`: it takes
// only the group's flags.
func newLedgerParamsApproveCmd(a *app, group *ledgerArgs) *cobra.Command {
	return &cobra.Command{
		Use:   "approve FILE",
		Short: "Sign the parameters in FILE for the chain's next version with --key-file; prints the approval",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLedgerParamsApprove(cmd.Context(), a, group, args[0])
		},
	}
}

func runLedgerParamsApprove(ctx context.Context, a *app, group *ledgerArgs, file string) error {
	k, err := group.key()
	if err != nil {
		return err
	}
	l, ctx, cancel, err := group.ledger(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	p, err := readParams(ctx, l, file)
	if err != nil {
		return err
	}
	g, err := l.Governance(ctx)
	if err != nil {
		return err
	}
	return printJSON(a.stdout, ledger.ApproveParams(k, g.ChainID, g.ParamsVersion, &p))
}

// ledgerParamsSubmitArgs are the flags of `idlegrid ledger params submit`.
type ledgerParamsSubmitArgs struct {
	*ledgerArgs
	approvals []string
}

func newLedgerParamsSubmitCmd(a *app, group *ledgerArgs) *cobra.Command {
	opts := &ledgerParamsSubmitArgs{ledgerArgs: group}
	cmd := &cobra.Command{
		Use:   "submit FILE --approval APPROVAL.json ...",
		Short: "Send the parameter change in FILE with the validators' approvals",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLedgerParamsSubmit(cmd.Context(), a, opts, args[0])
		},
	}
	cmd.Flags().StringArrayVar(&opts.approvals, "approval", nil, "approval file from params approve (repeat)")
	return cmd
}

func runLedgerParamsSubmit(ctx context.Context, a *app, opts *ledgerParamsSubmitArgs, file string) error {
	l, lctx, cancel, err := opts.ledger(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	p, err := readParams(lctx, l, file)
	if err != nil {
		return err
	}
	tx := ledger.Tx{Kind: ledger.KindParams, Params: p}
	for _, name := range opts.approvals {
		b, err := os.ReadFile(name)
		if err != nil {
			return err
		}
		var ap ledger.Approval
		if err := json.Unmarshal(b, &ap); err != nil {
			return fmt.Errorf("%s: not an approval: %w", name, err)
		}
		tx.Approvals = append(tx.Approvals, ap)
	}
	return opts.send(ctx, a, tx)
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
