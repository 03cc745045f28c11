package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/idlegrid/idlegrid/internal/gateway/api/openai"
	"github.com/idlegrid/idlegrid/internal/keys"
	"github.com/idlegrid/idlegrid/internal/store"
)

// newKeysCmd is `idlegrid keys`; its subcommands share the store flags.
func newKeysCmd(a *app) *cobra.Command {
	where := &gatewayStoreFlags{}
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Manage the gateway's consumer API keys",
		Long: `Manage consumer API keys in the gateway's store: DATA-DIR/gateway.db, or the
PostgreSQL database gateways share (--database-url or IDLEGRID_DATABASE_URL),
the same store selection as ` + "`idlegrid gateway`" + `.`,
	}
	where.add(cmd, "gateway data directory")
	cmd.AddCommand(newKeysCreateCmd(a, where), newKeysListCmd(a, where), newKeysRevokeCmd(a, where), newKeysPrefsCmd(a, where))
	return cmd
}

// keysCreateArgs are the flags of `idlegrid keys create`.
type keysCreateArgs struct {
	where   *gatewayStoreFlags
	name    string
	account string
	prefs   string
}

func newKeysCreateCmd(a *app, where *gatewayStoreFlags) *cobra.Command {
	opts := &keysCreateArgs{where: where}
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create an API key (printed once; only its hash is stored)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runKeysCreate(cmd.Context(), a, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.name, "name", "default", "a label for the key")
	f.StringVar(&opts.account, "account", "", "ledger account the key bills (default: the dev account)")
	f.StringVar(&opts.prefs, "prefs", "", `default routing preferences, a "provider" object, e.g. '{"sort":"price","max_price":{"prompt":0.3}}'`)
	return cmd
}

func runKeysCreate(ctx context.Context, a *app, opts *keysCreateArgs) error {
	acct := keys.Address(opts.account)
	if opts.account == "" {
		dev, _, err := keys.LoadOrCreate(filepath.Join(opts.where.dataDir, "dev-account.key"))
		if err != nil {
			return err
		}
		acct = dev.Public().Address()
	}
	if err := acct.Validate(); err != nil {
		return fmt.Errorf("--account: %w", err)
	}
	if err := checkPrefs(opts.prefs); err != nil {
		return fmt.Errorf("--prefs: %w", err)
	}
	st, _, err := opts.where.open(ctx, false)
	if err != nil {
		return err
	}
	defer st.Close()
	secret, k, err := st.CreateAPIKey(ctx, opts.name, acct)
	if err != nil {
		return err
	}
	if opts.prefs != "" {
		if err := st.SetAPIKeyPreferences(ctx, k.ID, opts.prefs); err != nil {
			st.RevokeAPIKey(ctx, k.ID) // not handed out: never usable without its preferences
			return err
		}
	}
	fmt.Fprintf(a.stdout, "%s\n", secret)
	fmt.Fprintf(a.stderr, "created key %s (%s) for account %s; it is shown only now\n", k.ID, k.Name, k.Account)
	return nil
}

// newKeysListCmd is `idlegrid keys list`: it takes only the group's flags.
func newKeysListCmd(a *app, where *gatewayStoreFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List API keys (ids and prefixes, never secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runKeysList(cmd.Context(), a, where)
		},
	}
}

func runKeysList(ctx context.Context, a *app, where *gatewayStoreFlags) error {
	st, _, err := where.open(ctx, false)
	if err != nil {
		return err
	}
	defer st.Close()
	ks, err := st.ListAPIKeys(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tPREFIX\tACCOUNT\tCREATED\tSTATUS\tPREFS")
	for _, k := range ks {
		status := "active"
		if !k.RevokedAt.IsZero() {
			status = "revoked " + k.RevokedAt.Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s…\t%s\t%s\t%s\t%s\n", k.ID, k.Name, k.Prefix, k.Account, k.CreatedAt.Format(time.DateTime), status, cmp.Or(k.Preferences, "-"))
	}
	return tw.Flush()
}

// newKeysRevokeCmd is `idlegrid keys revoke`: it takes only the group's
// flags.
func newKeysRevokeCmd(a *app, where *gatewayStoreFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke an API key; requests with it get 401 from now on",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runKeysRevoke(cmd.Context(), a, where, args[0])
		},
	}
}

func runKeysRevoke(ctx context.Context, a *app, where *gatewayStoreFlags, id string) error {
	st, _, err := where.open(ctx, false)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.RevokeAPIKey(ctx, id); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "revoked %s\n", id)
	return nil
}

// keysPrefsArgs are the flags of `idlegrid keys prefs`.
type keysPrefsArgs struct {
	where *gatewayStoreFlags
	clear bool
}

func newKeysPrefsCmd(a *app, where *gatewayStoreFlags) *cobra.Command {
	opts := &keysPrefsArgs{where: where}
	cmd := &cobra.Command{
		Use:   "prefs ID [JSON]",
		Short: "Show, set or clear (--clear) an API key's default routing preferences",
		Long: `An API key's default routing preferences are a "provider" object, as a
request body may carry one (docs/routing.md). They apply to every request
made with the key; a request's own "provider" members replace the
default's members of the same name, one by one.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runKeysPrefs(cmd.Context(), a, opts, args)
		},
	}
	cmd.Flags().BoolVar(&opts.clear, "clear", false, "remove the key's default preferences")
	return cmd
}

// runKeysPrefs shows the preferences of the key args[0], sets them to
// args[1], or clears them.
func runKeysPrefs(ctx context.Context, a *app, opts *keysPrefsArgs, args []string) error {
	if opts.clear && len(args) == 2 {
		return errors.New("give preferences or --clear, not both")
	}
	if len(args) == 2 {
		if err := checkPrefs(args[1]); err != nil {
			return err
		}
	}
	st, _, err := opts.where.open(ctx, false)
	if err != nil {
		return err
	}
	defer st.Close()
	if len(args) == 1 && !opts.clear {
		ks, err := st.ListAPIKeys(ctx)
		if err != nil {
			return err
		}
		for _, k := range ks {
			if k.ID == args[0] {
				fmt.Fprintln(a.stdout, cmp.Or(k.Preferences, "{}"))
				return nil
			}
		}
		return fmt.Errorf("api key %s: %w", args[0], store.ErrNotFound)
	}
	value := ""
	if !opts.clear {
		value = strings.TrimSpace(args[1])
	}
	if err := st.SetAPIKeyPreferences(ctx, args[0], value); err != nil {
		return err
	}
	if opts.clear {
		fmt.Fprintf(a.stdout, "cleared the default preferences of %s\n", args[0])
	} else {
		fmt.Fprintf(a.stdout, "set the default preferences of %s\n", args[0])
	}
	return nil
}

// checkPrefs refuses default preferences a request could not carry, with
// the gateway's own 400 message for them.
func checkPrefs(text string) error {
	if strings.TrimSpace(text) == "" {
		return nil
	}
	if _, e := openai.ParseDefaults(text); e != nil {
		return errors.New(e.Message)
	}
	return nil
}
