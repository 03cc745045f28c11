package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/env"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "0.1.0-dev"

// app is what every subcommand shares: configuration and the logger.
type app struct {
	configFile string
	logLevel   string
	logFormat  string
	log        *slog.Logger
	stdout     io.Writer
	stderr     io.Writer
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	a := &app{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "idlegrid",
		Short:         "idlegrid: a decentralized inference network of idle machines",
		Long:          "idlegrid sells idle GPU time as an OpenAI- and Ollama-compatible API, with signed receipts for every request.\n\nStart everything locally with `idlegrid up`.",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return a.configure(cmd)
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.configFile, "config", "", "YAML config file; its keys are flag names (e.g. data-dir: /srv/idlegrid)")
	pf.StringVar(&a.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	pf.StringVar(&a.logFormat, "log-format", "text", "log format: text or json")
	root.AddCommand(newUpCmd(a), newGatewayCmd(a), newProvideCmd(a), newSimCmd(a), newKeysCmd(a), newReceiptsCmd(a), newBenchCmd(a), newLedgerCmd(a), newAuditCmd(a), newValidatorCmd(a), newVerifyCmd(a))
	return root
}

// configure fills every flag the user did not set from the config file, then
// from IDLEGRID_* environment variables (IDLEGRID_DATA_DIR → data-dir), so
// precedence is flag > env > file > default; then it builds the logger.
func (a *app) configure(cmd *cobra.Command) error {
	k := koanf.New("\x00") // flat keys: flag names contain dots nowhere, dashes everywhere
	if a.configFile != "" {
		if err := k.Load(file.Provider(a.configFile), yaml.Parser()); err != nil {
			return fmt.Errorf("config file %s: %w", a.configFile, err)
		}
	}
	envKeys := koanf.New("\x00")
	if err := envKeys.Load(env.Provider("IDLEGRID_", "\x00", func(s string) string {
		return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(s, "IDLEGRID_")), "_", "-")
	}), nil); err != nil {
		return err
	}
	if err := k.Merge(envKeys); err != nil {
		return err
	}
	var ferr error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if ferr != nil || f.Changed || !k.Exists(f.Name) {
			return
		}
		v := k.Get(f.Name)
		var s string
		switch v := v.(type) {
		case []any:
			parts := make([]string, len(v))
			for i, p := range v {
				parts[i] = fmt.Sprint(p)
			}
			s = strings.Join(parts, ",")
		default:
			s = fmt.Sprint(v)
		}
		// Set through the flag set, so that a value from the environment
		// or the file counts as given (Changed), as on the command line.
		if err := cmd.Flags().Set(f.Name, s); err != nil {
			ferr = fmt.Errorf("config %s=%q: %w", f.Name, s, err)
		}
	})
	if ferr != nil {
		return ferr
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(a.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch a.logFormat {
	case "text":
		a.log = slog.New(slog.NewTextHandler(a.stderr, opts))
	case "json":
		a.log = slog.New(slog.NewJSONHandler(a.stderr, opts))
	default:
		return fmt.Errorf("--log-format %q: want text or json", a.logFormat)
	}
	return nil
}
