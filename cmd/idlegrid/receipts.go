package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/idlegrid/idlegrid/internal/receipt"
	"github.com/idlegrid/idlegrid/internal/store"
)

// newReceiptsCmd is `idlegrid receipts`; its subcommands share the store
// flags.
func newReceiptsCmd(a *app) *cobra.Command {
	where := &gatewayStoreFlags{}
	cmd := &cobra.Command{
		Use:   "receipts",
		Short: "Inspect and verify signed receipts",
	}
	where.add(cmd, "gateway data directory (to look receipts up by request id)")
	cmd.AddCommand(newReceiptsVerifyCmd(a, where))
	return cmd
}

// newReceiptsVerifyCmd is `idlegrid receipts verify`: it takes only the
// group's flags.
func newReceiptsVerifyCmd(a *app, where *gatewayStoreFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "verify FILE|REQUEST_ID",
		Short: "Check a receipt's fields and both signatures, offline",
		Long: `Verify a signed receipt without trusting any server: FILE is the JSON served
by GET /v1/receipts/{id}; REQUEST_ID looks the receipt up in the gateway's store
(DATA-DIR/gateway.db, or the shared PostgreSQL database with --database-url). Exits non-zero when anything does not verify.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runReceiptsVerify(cmd.Context(), a, where, args[0])
		},
	}
}

func runReceiptsVerify(ctx context.Context, a *app, where *gatewayStoreFlags, arg string) error {
	s, src, err := loadReceipt(ctx, where, arg)
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
}

// loadReceipt reads arg as a receipt JSON file, or else as a request id in
// the gateway's store.
func loadReceipt(ctx context.Context, where *gatewayStoreFlags, arg string) (receipt.Signed, string, error) {
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
	st, db, err := where.open(ctx, true)
	if err != nil {
		return receipt.Signed{}, "", fmt.Errorf("%q is not a file, and %w", arg, err)
	}
	defer st.Close()
	s, err := st.Receipt(ctx, arg)
	if errors.Is(err, store.ErrNotFound) {
		return receipt.Signed{}, "", fmt.Errorf("no receipt %q in %s", arg, db)
	}
	return s, db, err
}
