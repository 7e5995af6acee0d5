package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmledger/vmledger/cmd/vmledger/internal/agent"
	"github.com/vmledger/vmledger/store/storetest"
)

// Issue 7, defect 7: a damaged log file (cut short as by head -c 8192,
// emptied, or with a broken freelist page) makes the agent and the log
// verbs end with a clear message and exit code 6, never a SIGBUS or a Go
// panic; the file is left as it was. The log verbs that only read events
// still work where the events are readable (a broken freelist): export
// exits 0 (the way to salvage the log), inspect prints and then exits 6.
func TestDamagedLogFile(t *testing.T) {
	for _, tc := range []struct {
		name    string
		damage  func(path string) error
		want    string // on stderr of every refusal
		readsOK bool   // inspect prints the domains, export succeeds
	}{
		{"head -c 8192", func(p string) error { return storetest.Truncate(p, 8192) }, "truncated", false},
		{"empty", func(p string) error { return storetest.Truncate(p, 0) }, "empty (0 bytes)", false},
		{"freelist of the wrong type", func(p string) error { return storetest.CorruptFreelist(p, storetest.NotAFreelist) }, "freelist", true},
		{"freelist with a wild count", func(p string) error { return storetest.CorruptFreelist(p, storetest.HugeFreelist) }, "freelist", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "state")
			seedLifecycle(t, dir)
			path := filepath.Join(dir, agent.DBFile)
			if err := tc.damage(path); err != nil {
				t.Fatal(err)
			}
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			check := func(verb string, wantCode int, want string, args ...string) string {
				t.Helper()
				out, errs, code := runCLI(t, args...)
				if code != wantCode || !strings.Contains(errs+out, want) ||
					strings.Contains(errs, "goroutine ") || strings.Contains(errs, "SIGBUS") {
					t.Errorf("%s: exit %d, want %d saying %q\nstdout: %s\nstderr: %s", verb, code, wantCode, want, out, errs)
				}
				return out
			}
			check("log verify", exitCorrupt, tc.want, "log", "verify", "--state-dir", dir)
			if tc.readsOK {
				out := check("log inspect", exitCorrupt, tc.want, "log", "inspect", "--state-dir", dir)
				if !strings.Contains(out, "life1") {
					t.Errorf("inspect printed no domains:\n%s", out)
				}
				if out := check("log export", 0, `"seq":10`, "log", "export", "--state-dir", dir); strings.Count(out, "\n") != 10 {
					t.Errorf("export: %d lines", strings.Count(out, "\n"))
				}
			} else {
				check("log inspect", exitCorrupt, tc.want, "log", "inspect", "--state-dir", dir)
				check("log export", exitCorrupt, tc.want, "log", "export", "--state-dir", dir)
			}
			check("agent", exitCorrupt, tc.want, "agent", "--state-dir", dir, "--host", "h", "--accel", "none",
				"--nats-listen", "127.0.0.1:0")
			after, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(after) != string(before) {
				t.Errorf("the damaged file was changed (%d bytes, was %d)", len(after), len(before))
			}
		})
	}
}
