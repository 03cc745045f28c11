package main

import (
	"fmt"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/store"
)

func newKeysCmd(a *app) *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Manage the gateway's consumer API keys",
	}
	cmd.PersistentFlags().StringVar(&dataDir, "data-dir", defaultDataDir(), "gateway data directory")
	open := func(cmd *cobra.Command) (*store.Store, error) {
		return store.Open(cmd.Context(), filepath.Join(dataDir, "gateway.db"))
	}

	var name, account string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create an API key (printed once; only its hash is stored)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			acct := keys.Address(account)
			if account == "" {
				dev, _, err := keys.LoadOrCreate(filepath.Join(dataDir, "dev-account.key"))
				if err != nil {
					return err
				}
				acct = dev.Public().Address()
			}
			if err := acct.Validate(); err != nil {
				return fmt.Errorf("--account: %w", err)
			}
			st, err := open(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			secret, k, err := st.CreateAPIKey(cmd.Context(), name, acct)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "%s\n", secret)
			fmt.Fprintf(a.stderr, "created key %s (%s) for account %s; it is shown only now\n", k.ID, k.Name, k.Account)
			return nil
		},
	}
	create.Flags().StringVar(&name, "name", "default", "a label for the key")
	create.Flags().StringVar(&account, "account", "", "ledger account the key bills (default: the dev account)")

	list := &cobra.Command{
		Use:   "list",
		Short: "List API keys (ids and prefixes, never secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := open(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			ks, err := st.ListAPIKeys(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tPREFIX\tACCOUNT\tCREATED\tSTATUS")
			for _, k := range ks {
				status := "active"
				if !k.RevokedAt.IsZero() {
					status = "revoked " + k.RevokedAt.Format(time.DateTime)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s…\t%s\t%s\t%s\n", k.ID, k.Name, k.Prefix, k.Account, k.CreatedAt.Format(time.DateTime), status)
			}
			return tw.Flush()
		},
	}

	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke an API key; requests with it get 401 from now on",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := open(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			if err := st.RevokeAPIKey(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "revoked %s\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}
