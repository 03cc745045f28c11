package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/idlegrid/idlegrid/internal/chain/audit"
	"github.com/idlegrid/idlegrid/internal/chain/chainrpc"
)

func newAuditCmd(a *app) *cobra.Command {
	var rpc, home string
	var epoch uint64
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
			var (
				blocks audit.BlockSource
				state  audit.StateSource
			)
			switch {
			case changedFlag(cmd.Flags(), "chain-rpc", "rpc") && home != "":
				return errors.New("give --chain-rpc or --home, not both")
			case home != "":
				h, err := audit.OpenHome(home)
				if err != nil {
					return err
				}
				defer h.Close()
				blocks, state = h, h
			default:
				r, err := chainrpc.NewBlockReader(rpc)
				if err != nil {
					return err
				}
				blocks, state = r, r
			}
			rep, err := audit.Run(cmd.Context(), blocks, state)
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
			if epoch > 0 {
				if epoch > uint64(len(rep.Roots)) {
					return fmt.Errorf("--epoch %d: only %d epochs have finished", epoch, len(rep.Roots))
				}
				fmt.Fprintf(a.stdout, "epoch %d payout root, recomputed from the blocks: %s\n", epoch, rep.Roots[epoch-1])
			}
			if e := rep.LastEpoch; e != nil {
				fmt.Fprintf(a.stdout, "last finished epoch %d (heights %d-%d): minted %s to %d payees, payout root %s\n", e.Number, e.Start, e.End, e.Minted, e.Payees, e.Root)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&rpc, "chain-rpc", defaultRPC, "validator RPC URL")
	deprecatedAlias(cmd.Flags(), "rpc", "chain-rpc")
	cmd.Flags().StringVar(&home, "home", "", "a stopped validator's home directory, instead of --chain-rpc")
	cmd.Flags().Uint64Var(&epoch, "epoch", 0, "also print this epoch's payout root as the replay computed it")
	return cmd
}
