package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/idlegrid/idlegrid/internal/chain"
)

func newAuditCmd(a *app) *cobra.Command {
	var rpc, home string
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Replay the ledger from genesis and check every block's app hash and the node's state",
		Long: `Re-execute every block from genesis with this program's own copy of the
ledger state machine, trusting nothing but the blocks: each block header's app
hash must equal the replay's, and at the end every account and the supply the
node holds must equal the replay's. Read from a node's RPC (--rpc) or from a
stopped node's home directory (--home, which also finds accounts the replay
does not have). Exits non-zero with the first mismatch.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var (
				blocks chain.BlockSource
				state  chain.StateSource
			)
			switch {
			case cmd.Flags().Changed("rpc") && home != "":
				return errors.New("give --rpc or --home, not both")
			case home != "":
				h, err := chain.OpenHomeAudit(home)
				if err != nil {
					return err
				}
				defer h.Close()
				blocks, state = h, h
			default:
				r, err := chain.NewRPCAudit(rpc)
				if err != nil {
					return err
				}
				blocks, state = r, r
			}
			rep, err := chain.Audit(cmd.Context(), blocks, state)
			if err != nil {
				return fmt.Errorf("audit: %w", err)
			}
			if rep.Mismatch != nil {
				fmt.Fprintf(a.stdout, "chain %s: MISMATCH after replaying %d blocks (%d transactions): %v\n", rep.ChainID, rep.Heights, rep.Txs, rep.Mismatch)
				return fmt.Errorf("audit failed: %w", rep.Mismatch)
			}
			fmt.Fprintf(a.stdout, "chain %s: %d blocks and %d transactions replayed from genesis; every app hash matches; %d accounts and the supply match the node; app hash %X\n",
				rep.ChainID, rep.Heights, rep.Txs, rep.Accounts, rep.AppHash)
			return nil
		},
	}
	cmd.Flags().StringVar(&rpc, "rpc", defaultRPC, "validator RPC URL")
	cmd.Flags().StringVar(&home, "home", "", "a stopped validator's home directory, instead of --rpc")
	return cmd
}
