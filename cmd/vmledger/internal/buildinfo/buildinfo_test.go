package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestFrom(t *testing.T) {
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		ok   bool
		want Info
	}{
		{"not stamped", nil, false, Info{Module: "github.com/vmledger/vmledger", Version: "unknown", Revision: "unknown", GoVersion: "unknown"}},
		{"work tree", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/vmledger/vmledger", Version: "(devel)"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.time", Value: "2026-12-01T22:00:00Z"}, {Key: "vcs.modified", Value: "true"}}}, true,
			Info{Module: "github.com/vmledger/vmledger", Version: "(devel)", Revision: "abc123", Time: "2026-12-01T22:00:00Z", Modified: true, GoVersion: "go1.26.8"}},
		{"go install at a tag", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/vmledger/vmledger", Version: "v0.2.0"}}, true,
			Info{Module: "github.com/vmledger/vmledger", Version: "v0.2.0", Revision: "unknown", GoVersion: "go1.26.8"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := from(tc.bi, tc.ok); got != tc.want {
				t.Errorf("from = %+v, want %+v", got, tc.want)
			}
		})
	}
	s := Info{Version: "v0.2.0", Module: "m", Revision: "abc", Modified: true, GoVersion: "go1.26.8"}.String()
	if !strings.Contains(s, "v0.2.0") || !strings.Contains(s, "abc (modified)") {
		t.Errorf("String = %q", s)
	}
}
