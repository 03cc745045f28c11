package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/idlegrid/idlegrid/internal/receipt"
	"github.com/idlegrid/idlegrid/internal/store"
)

func newReceiptsCmd(a *app) *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "receipts",
		Short: "Inspect and verify signed receipts",
	}
	cmd.PersistentFlags().StringVar(&dataDir, "data-dir", defaultDataDir(), "gateway data directory (to look receipts up by request id)")
	verify := &cobra.Command{
		Use:   "verify FILE|REQUEST_ID",
		Short: "Check a receipt's fields and both signatures, offline",
		Long: `Verify a signed receipt without trusting any server: FILE is the JSON served
by GET /v1/receipts/{id}; REQUEST_ID looks the receipt up in the local gateway
database. Exits non-zero when anything does not verify.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, src, err := loadReceipt(cmd, dataDir, args[0])
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
// the local gateway store.
func loadReceipt(cmd *cobra.Command, dataDir, arg string) (receipt.Signed, string, error) {
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
	db := filepath.Join(dataDir, "gateway.db")
	if _, err := os.Stat(db); err != nil {
		return receipt.Signed{}, "", fmt.Errorf("%q is not a file, and there is no gateway database at %s to look it up", arg, db)
	}
	st, err := store.Open(cmd.Context(), db)
	if err != nil {
		return receipt.Signed{}, "", err
	}
	defer st.Close()
	s, err := st.Receipt(cmd.Context(), arg)
	if errors.Is(err, store.ErrNotFound) {
		return receipt.Signed{}, "", fmt.Errorf("no receipt %q in %s", arg, db)
	}
	return s, db, err
}
