package main

import (
	"io"
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
