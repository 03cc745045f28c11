package main

import (
	"fmt"
	"os"
	"runtime/pprof"
	"runtime/trace"

	"github.com/spf13/cobra"
)

// `idlegrid bench`: the group and its profiling flags. Each harness is
// one file, bench_NAME.go, a front end of its package.

// benchArgs are the flags of `idlegrid bench`, which every harness
// inherits: the profiles of the run.
type benchArgs struct {
	cpuProfile string
	memProfile string
	traceFile  string
}

func newBenchCmd(a *app) *cobra.Command {
	opts := &benchArgs{}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Performance harness: measure idlegrid against a baseline in the same run",
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&opts.cpuProfile, "cpuprofile", "", "write a CPU profile of the run to this file")
	pf.StringVar(&opts.memProfile, "memprofile", "", "write an allocation profile of the run to this file (go tool pprof -sample_index=alloc_space)")
	pf.StringVar(&opts.traceFile, "trace", "", "write an execution trace of the run to this file (go tool trace)")
	// The root's PersistentPreRunE is not run for a command that has its
	// own, so this one configures the app first.
	cmd.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if err := a.configure(cmd); err != nil {
			return err
		}
		return opts.start()
	}
	cmd.PersistentPostRun = func(*cobra.Command, []string) { opts.stop() }
	cmd.AddCommand(newBenchOverheadCmd(a), newBenchLedgerCmd(a), newBenchRoutingCmd(a), newBenchEconCmd(a), newBenchChaosCmd(a), newBenchVerifyCmd(a), newBenchScaleCmd(a))
	return cmd
}

// start starts the trace and the CPU profile asked for.
func (b *benchArgs) start() error {
	if b.traceFile != "" {
		f, err := os.Create(b.traceFile)
		if err != nil {
			return err
		}
		if err := trace.Start(f); err != nil {
			return err
		}
	}
	if b.cpuProfile == "" {
		return nil
	}
	f, err := os.Create(b.cpuProfile)
	if err != nil {
		return err
	}
	return pprof.StartCPUProfile(f)
}

// stop ends the profiles and writes the allocation profile.
func (b *benchArgs) stop() {
	if b.cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	if b.memProfile != "" {
		if err := writeHeapProfile(b.memProfile); err != nil {
			fmt.Fprintln(os.Stderr, "memprofile:", err)
		}
	}
	if b.traceFile != "" {
		trace.Stop()
	}
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
