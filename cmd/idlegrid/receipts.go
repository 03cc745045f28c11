package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/idlegrid/idlegrid/internal/receipt"
	"github.com/idlegrid/idlegrid/internal/store"
)

func newReceiptsCmd(a *app) *cobra.Command {
	var where gatewayStoreFlags
	cmd := &cobra.Command{
		Use:   "receipts",
		Short: "Inspect and verify signed receipts",
	}
	where.add(cmd, "gateway data directory (to look receipts up by request id)")
	verify := &cobra.Command{
		Use:   "verify FILE|REQUEST_ID",
		Short: "Check a receipt's fields and both signatures, offline",
		Long: `Verify a signed receipt without trusting any server: FILE is the JSON served
by GET /v1/receipts/{id}; REQUEST_ID looks the receipt up in the gateway's store
(DATA-DIR/gateway.db, or the shared PostgreSQL database with --database-url). Exits non-zero when anything does not verify.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, src, err := loadReceipt(cmd, &where, args[0])
			if err != nil {
				return err
			}
			if err := s.Verify(); err != nil {
				return fmt.Errorf("receipt %s from %s does NOT verify: %w", s.Receipt.RequestID, src, err)
			}
			r := s.Receipt
			fmt.Fprintf(a.stdout, "receipt %s verifies (%s)\n", r.RequestID, src)
			fmt.Fprintf(a.stdout, "  hash          %s\n  chain         %s\n  provider      %s\n  gateway       %s\n  consumer      %s\n",
				r.Hash(), r.ChainID, r.Provider, r.Gateway, r.Consumer)
			fmt.Fprintf(a.stdout, "  model         %s (digest %s)\n  tokens        %d prompt + %d completion\n  amount        %s tokens\n",
				r.Model, r.ModelDigest, r.PromptTokens, r.CompletionTokens, r.Amount)
			return nil
		},
	}
	cmd.AddCommand(verify)
	return cmd
}

// loadReceipt reads arg as a receipt JSON file, or else as a request id in
// the gateway's store.
func loadReceipt(cmd *cobra.Command, where *gatewayStoreFlags, arg string) (receipt.Signed, string, error) {
	b, err := os.ReadFile(arg)
	if err == nil {
		s, err := receipt.ParseSigned(b)
		if err != nil {
			return receipt.Signed{}, "", fmt.Errorf("%s: %w", arg, err)
		}
		return s, arg, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return receipt.Signed{}, "", err
	}
	st, db, err := where.open(cmd.Context(), true)
	if err != nil {
		return receipt.Signed{}, "", fmt.Errorf("%q is not a file, and %w", arg, err)
	}
	defer st.Close()
	s, err := st.Receipt(cmd.Context(), arg)
	if errors.Is(err, store.ErrNotFound) {
		return receipt.Signed{}, "", fmt.Errorf("no receipt %q in %s", arg, db)
	}
	return s, db, err
}
