package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/idlegrid/idlegrid/internal/chain/audit"
	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
)

// auditArgs are the flags of `idlegrid audit`.
type auditArgs struct {
	flags *pflag.FlagSet // to tell --chain-rpc given from its default
	rpc   string
	home  string
	epoch uint64
}

func newAuditCmd(a *app) *cobra.Command {
	opts := &auditArgs{}
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Replay the ledger from genesis and check every block's app hash and the node's state",
		Long: `Re-execute every block from genesis with this program's own copy of the
ledger state machine, trusting nothing but the blocks: each block header's app
hash must equal the replay's, and at the end every account (balances, stakes,
unbonding, escrow, vesting), the supply and every finished epoch's record and
payouts (hence its payout Merkle root) the node holds must equal the replay's.
The recomputed root of the last epoch (or of --epoch N) is printed:
` + "`idlegrid ledger verify-payout --root`" + ` takes it. Read from a node's RPC (--chain-rpc) or from a
stopped node's home directory (--home, which also finds accounts the replay
does not have). Exits non-zero with the first mismatch.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAudit(cmd.Context(), a, opts)
		},
	}
	f := cmd.Flags()
	opts.flags = f
	f.StringVar(&opts.rpc, "chain-rpc", defaultRPC, "validator RPC URL")
	deprecatedAlias(f, "rpc", "chain-rpc")
	f.StringVar(&opts.home, "home", "", "a stopped validator's home directory, instead of --chain-rpc")
	f.Uint64Var(&opts.epoch, "epoch", 0, "also print this epoch's payout root as the replay computed it")
	return cmd
}

// runAudit replays the ledger from --chain-rpc or --home and prints what
// it checked.
func runAudit(ctx context.Context, a *app, opts *auditArgs) error {
	var (
		blocks audit.BlockSource
		state  audit.StateSource
	)
	switch {
	case changedFlag(opts.flags, "chain-rpc", "rpc") && opts.home != "":
		return errors.New("give --chain-rpc or --home, not both")
	case opts.home != "":
		h, err := audit.OpenHome(opts.home)
		if err != nil {
			return err
		}
		defer h.Close()
		blocks, state = h, h
	default:
		r, err := chainrpc.NewBlockReader(opts.rpc)
		if err != nil {
			return err
		}
		blocks, state = r, r
	}
	rep, err := audit.Run(ctx, blocks, state)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if rep.Mismatch != nil {
		fmt.Fprintf(a.stdout, "chain %s: MISMATCH after replaying %d blocks (%d transactions): %v\n", rep.ChainID, rep.Heights, rep.Txs, rep.Mismatch)
		return fmt.Errorf("audit failed: %w", rep.Mismatch)
	}
	fmt.Fprintf(a.stdout, "chain %s: %d blocks and %d transactions replayed from genesis; every app hash matches; %d accounts, the supply and %d finished epochs (records and payouts) match the node; app hash %X\n",
		rep.ChainID, rep.Heights, rep.Txs, rep.Accounts, rep.Epochs, rep.AppHash)
	fmt.Fprintf(a.stdout, "supply %s (minted %s, burned %s, node rewards %s)\n", rep.Supply.Total, rep.Supply.Minted, rep.Supply.Burned, rep.Supply.NodeRewards)
	if opts.epoch > 0 {
		if opts.epoch > uint64(len(rep.Roots)) {
			return fmt.Errorf("--epoch %d: only %d epochs have finished", opts.epoch, len(rep.Roots))
		}
		fmt.Fprintf(a.stdout, "epoch %d payout root, recomputed from the blocks: %s\n", opts.epoch, rep.Roots[opts.epoch-1])
	}
	if e := rep.LastEpoch; e != nil {
		fmt.Fprintf(a.stdout, "last finished epoch %d (heights %d-%d): minted %s to %d payees, payout root %s\n", e.Number, e.Start, e.End, e.Minted, e.Payees, e.Root)
	}
	return nil
}
