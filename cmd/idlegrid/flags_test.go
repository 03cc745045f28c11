package main

import (
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// TestDeprecatedFlagAliases: the names commands used before the CLI's one
// vocabulary still set the same values, hidden from --help, for one
// release.
func TestDeprecatedFlagAliases(t *testing.T) {
	for _, tt := range []struct {
		cmd        []string
		old, value string
		name       string
	}{
		{[]string{"ledger", "balance"}, "rpc", "http://v:1", "chain-rpc"},
		{[]string{"ledger", "balance"}, "key", "/k.key", "key-file"},
		{[]string{"verify"}, "rpc", "http://v:2", "chain-rpc"},
		{[]string{"verify"}, "key", "/v.key", "key-file"},
		{[]string{"audit"}, "rpc", "http://v:3", "chain-rpc"},
		{[]string{"provide", "init"}, "rpc", "http://v:4", "chain-rpc"},
		{[]string{"provide", "status"}, "rpc", "http://v:5", "chain-rpc"},
		{[]string{"gateway"}, "plant-key", "/p.key", "plant-key-file"},
		{[]string{"gateway"}, "share-samples", "true", "sample-text"},
	} {
		root := newRootCmd(io.Discard, io.Discard)
		cmd, _, err := root.Find(tt.cmd)
		if err != nil {
			t.Fatal(err)
		}
		cmd.Flags().SetOutput(io.Discard) // the deprecation warning
		if err := cmd.ParseFlags([]string{"--" + tt.old + "=" + tt.value}); err != nil {
			t.Fatalf("%v --%s: %v", tt.cmd, tt.old, err)
		}
		if got := cmd.Flags().Lookup(tt.name).Value.String(); got != tt.value {
			t.Errorf("%v --%s=%s set --%s to %q", tt.cmd, tt.old, tt.value, tt.name, got)
		}
		if !strings.Contains(cmd.Flags().Lookup(tt.old).Deprecated, "--"+tt.name) || !cmd.Flags().Lookup(tt.old).Hidden {
			t.Errorf("%v --%s is not a hidden alias pointing to --%s", tt.cmd, tt.old, tt.name)
		}
	}
	if _, _, err := run(t, "audit", "--rpc", "http://127.0.0.1:1", "--home", t.TempDir()); err == nil || !strings.Contains(err.Error(), "--chain-rpc or --home") {
		t.Errorf("audit with the old --rpc and --home: %v", err)
	}
}

// TestFlagUsagesHaveNoBackquotes: pflag takes a back-quoted word in a
// usage string as the flag's value name, so `--help` would print
// "--home validator init" instead of "--home string".
func TestFlagUsagesHaveNoBackquotes(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if strings.Contains(f.Usage, "`") {
				t.Errorf("%s --%s: usage has a back-quote: %s", c.CommandPath(), f.Name, f.Usage)
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd(io.Discard, io.Discard))
}

// commands is every command under root, root included, parents first.
func commands(root *cobra.Command) []*cobra.Command {
	all := []*cobra.Command{root}
	for i := 0; i < len(all); i++ {
		all = append(all, all[i].Commands()...)
	}
	return all
}

// TestCommandTree pins what every command of the CLI shares: a short
// help, arguments checked, flags with a usage, one type per flag name
// (where two commands differ, the table says why), one default for the
// vocabulary's paths and URLs, deprecated aliases that are hidden and set
// the flag they name, and no local flag hiding an inherited one.
func TestCommandTree(t *testing.T) {
	// Flag names whose type differs between commands, and why.
	typeDiffers := map[string]string{
		"chain-rpc":  "gateway takes several validators; the others talk to one",
		"gateway":    "ledger balance --gateway is a gateway's ledger address, repeatable; elsewhere a gateway's URL",
		"validators": "bench ledger measures several network sizes; validator init writes one network",
	}
	// Flags with one default wherever they appear.
	sameDefault := []string{"data-dir", "ollama-url", "database-url"}

	types := map[string]string{}    // flag name → type
	typeFrom := map[string]string{} // flag name → the command that set types[name]
	defaults := map[string]string{} // flag name → default, for sameDefault
	root := newRootCmd(io.Discard, io.Discard)
	for _, c := range commands(root) {
		path := c.CommandPath()
		if c.Short == "" {
			t.Errorf("%s: no short help", path)
		}
		if c.Runnable() && c.Args == nil {
			t.Errorf("%s: runnable without an Args check, so stray arguments pass silently", path)
		}
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			name := path + " --" + f.Name
			for p := c.Parent(); p != nil; p = p.Parent() {
				if p.PersistentFlags().Lookup(f.Name) != nil {
					t.Errorf("%s hides the flag of the same name it inherits from %s", name, p.CommandPath())
				}
			}
			if strings.TrimSpace(f.Usage) == "" {
				t.Errorf("%s: no usage", name)
			}
			if f.Deprecated != "" {
				target, ok := strings.CutPrefix(f.Deprecated, "use --")
				to := c.Flags().Lookup(target)
				switch {
				case !ok || to == nil:
					t.Errorf("%s: deprecated as %q, which names no flag of the command", name, f.Deprecated)
				case !f.Hidden || to.Value != f.Value || to.DefValue != f.DefValue || to.Usage != f.Usage:
					t.Errorf("%s: not a hidden alias of --%s (hidden %v, same value %v, same default %v)", name, target, f.Hidden, to.Value == f.Value, to.DefValue == f.DefValue)
				}
				return // an alias is checked as the flag it names
			}
			typ := f.Value.Type()
			if prev, ok := types[f.Name]; !ok {
				types[f.Name], typeFrom[f.Name] = typ, path
			} else if prev != typ && typeDiffers[f.Name] == "" {
				t.Errorf("%s is a %s, but %s --%s is a %s: one name, one type (or say why in typeDiffers)", name, typ, typeFrom[f.Name], f.Name, prev)
			}
			if slices.Contains(sameDefault, f.Name) {
				if prev, ok := defaults[f.Name]; ok && prev != f.DefValue {
					t.Errorf("%s defaults to %q, elsewhere %q", name, f.DefValue, prev)
				}
				defaults[f.Name] = f.DefValue
			}
		})
	}
	for name, why := range typeDiffers {
		if _, ok := types[name]; !ok {
			t.Errorf("typeDiffers names --%s (%s), which no command has", name, why)
		}
	}
	for _, name := range sameDefault {
		if _, ok := defaults[name]; !ok {
			t.Errorf("sameDefault names --%s, which no command has", name)
		}
	}
}
