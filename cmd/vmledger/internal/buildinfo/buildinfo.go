// Package buildinfo says which build of vmledger is running: the module
// version and VCS revision the Go toolchain stamped into the binary
// (runtime/debug.ReadBuildInfo), for `vmledger version`, --version and
// the agent's vmledger_build_info metric.
package buildinfo

import (
	"fmt"
	"runtime/debug"
)

// Info is what the binary knows about its own build.
type Info struct {
	Module    string `json:"module"`
	Version   string `json:"version"`  // "(devel)" for a build from a work tree
	Revision  string `json:"revision"` // VCS commit; "unknown" when not stamped (go run, -buildvcs=false)
	Time      string `json:"vcs_time,omitempty"`
	Modified  bool   `json:"modified"` // the work tree had uncommitted changes
	GoVersion string `json:"go_version"`
}

// Read returns the running binary's build information. A binary built
// without module support (never the case for vmledger) reports "unknown".
func Read() Info {
	return from(debug.ReadBuildInfo())
}

func from(bi *debug.BuildInfo, ok bool) Info {
	in := Info{Module: "github.com/vmledger/vmledger", Version: "unknown", Revision: "unknown", GoVersion: "unknown"}
	if !ok || bi == nil {
		return in
	}
	in.GoVersion = bi.GoVersion
	if bi.Main.Path != "" {
		in.Module = bi.Main.Path
	}
	if bi.Main.Version != "" {
		in.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			in.Revision = s.Value
		case "vcs.time":
			in.Time = s.Value
		case "vcs.modified":
			in.Modified = s.Value == "true"
		}
	}
	return in
}

// String is the one line `vmledger --version` prints.
func (in Info) String() string {
	rev := in.Revision
	if in.Modified {
		rev += " (modified)"
	}
	return fmt.Sprintf("vmledger %s (module %s, revision %s, %s)", in.Version, in.Module, rev, in.GoVersion)
}
