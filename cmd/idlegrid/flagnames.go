package main

import "github.com/spf13/pflag"

// The CLI's names for the same things, everywhere:
//
//	--chain-rpc URL     a validator RPC this command talks to
//	--X-addr HOST:PORT  an address this process listens on (--addr,
//	                    --chain-rpc-addr, --control-addr, --metrics-addr)
//	--key-file FILE     the key file this command signs with
//	--sample-*          the gateway's sample feed (--sample-share,
//	                    --sample-text)
//
// Names a command used before them stay for one release as hidden,
// deprecated aliases (deprecatedAlias).

// deprecatedAlias keeps old as a hidden name of the flag called name: it
// sets the same value and warns that it is deprecated when used.
func deprecatedAlias(fs *pflag.FlagSet, old, name string) {
	f := fs.Lookup(name)
	if f == nil {
		panic("deprecatedAlias: no flag --" + name)
	}
	fs.AddFlag(&pflag.Flag{Name: old, Usage: f.Usage, Value: f.Value, DefValue: f.DefValue, NoOptDefVal: f.NoOptDefVal,
		Hidden: true, Deprecated: "use --" + name})
}

// changedFlag reports whether the user set the flag called name or any of
// its aliases.
func changedFlag(fs *pflag.FlagSet, names ...string) bool {
	for _, n := range names {
		if fs.Changed(n) {
			return true
		}
	}
	return false
}
