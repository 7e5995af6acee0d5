package main

import (
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/spf13/pflag"
)

// registerProfileFlag adds the agent's hidden --cpuprofile: a CPU profile
// of the whole run, written when the agent stops (BenchmarkAgentLoad's
// -load.cpuprofile; docs/performance.md, "Load"). Hidden: it is for
// measuring, not for operating.
func registerProfileFlag(f *pflag.FlagSet, path *string) {
	f.StringVar(path, "cpuprofile", "", "write a CPU profile (go tool pprof) of the agent's run to this file")
	_ = f.MarkHidden("cpuprofile")
}

// withCPUProfile runs run under a CPU profile written to path; no path, no
// profile.
func withCPUProfile(path string, run func() error) error {
	if path == "" {
		return run()
	}
	f, err := os.Create(path)
	if err != nil {
		return usagef("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("--cpuprofile: %w", err)
	}
	err = run()
	pprof.StopCPUProfile()
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("--cpuprofile: %w", cerr)
	}
	return err
}
